"""Property-based requests generated from /api/v1/openapi.json (schemathesis): whatever the
input, valid by the schema or not, the API never answers with a server error, and every error
is JSON with a code.

Bounded: a few examples per operation and generation mode, on SQLite, with the DNS resolver on
a closed loopback port (DNS routes fail fast and never leave the machine). The operations are
driven from the loaded schema with Hypothesis directly (schemathesis' pytest plugin does not
follow the current pytest)."""

from __future__ import annotations

import pytest
import schemathesis
from admin_app import ADMIN, make_setup
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

EXAMPLES_PER_OPERATION = 5


@pytest.fixture
def api_setup(data_dir, monkeypatch):
    setup = make_setup(data_dir, f"sqlite:///{data_dir / 'courriel.db'}", monkeypatch)
    yield setup
    setup.db.dispose()


def check_operation(operation, mode: GenerationMode, token: str) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        response = case.call(headers={"Authorization": f"Bearer {token}"})
        case.validate_response(response, checks=[schemathesis.checks.not_a_server_error])
        assert "Traceback" not in response.text
        if response.status_code >= 400 and response.text.startswith("{"):
            assert {"code", "message"} <= set(response.json()), response.text

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_never_answers_a_server_error(api_setup, mode):
    signed_in = api_setup.client().post("/api/v1/session", json={"username": ADMIN[0], "password": ADMIN[1]})
    token = signed_in.json()["token"]
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", api_setup.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    checked = 0
    for operation in operations:
        if operation.method.upper() == "DELETE" and operation.path == "/api/v1/session":
            continue  # signing out would end the token the other operations use
        check_operation(operation, mode, token)
        checked += 1
    assert checked == len(operations) - 1
