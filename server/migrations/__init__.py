"""Alembic migrations of the Courriel schema (`courriel.models`)."""
