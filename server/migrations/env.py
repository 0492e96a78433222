"""Alembic environment: runs migrations on the connection handed over by `courriel.schema`."""

from alembic import context

from courriel.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through courriel.schema.upgrade()")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
