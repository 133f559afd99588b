"""Schemathesis fuzzes every operation of the served OpenAPI schema, with valid and invalid inputs: no 5xx,
and every answer conforms to the schema (status codes, content types, bodies).

Driven through `schemathesis.openapi.from_url` and Hypothesis directly (the pytest plugin's lazy loader does
not run under pytest 9). Examples are bounded per operation so the module takes well under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from sqlalchemy import Engine, text
from support.api_server import ApiServer

from hyperfollow.core.db.models import Base

EXAMPLES = 25
WITHOUT_PARAMETERS = {"GET /", "GET /health", "GET /leaderboard", "GET /api/v1/stats"}


@pytest.fixture(scope="module")
def api(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[ApiServer]:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        conn.execute(text("INSERT INTO traders (address, slot) SELECT '0x' || lpad(to_hex(n), 40, '0'), n "
                          "FROM generate_series(1, 30) AS n"))
        conn.execute(text('INSERT INTO leaderboard_metrics (trader_id, "window", win_rate, trade_count, low_sample) '
                          "SELECT id, w, (id % 10) / 10.0, id, id < 5 FROM traders, "
                          "unnest(ARRAY['7d', '30d', 'all']) AS w"))
        conn.execute(text("INSERT INTO trade_events (trader_id, timestamp, event_type, coin, details, idempotency_key) "
                          "SELECT 1, now() - n * interval '1 minute', 'position_opened', 'BTC', "
                          "jsonb_build_object('coin', 'BTC', 'previous_size', 0, 'current_size', n, "
                          "'size_change', n), 'k' || n FROM generate_series(1, 20) AS n"))
        conn.execute(text("INSERT INTO user_state_history (trader_id, state_data) VALUES (1, "
                          "'{\"assetPositions\": [{\"position\": {\"coin\": \"BTC\", \"szi\": \"1\"}}]}')"))
    log = tmp_path_factory.mktemp("schema") / "api.log"
    with ApiServer(service_env, log, HYPERFOLLOW_ADMIN_TOKEN="schema-test-token") as server:
        yield server
        assert "Traceback" not in server.logs(), server.logs()[-3000:]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_every_operation_answers_without_server_errors(api: ApiServer, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    failures: dict[str, str] = {}
    skipped: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate()

        try:
            check()
        except Unsatisfiable:
            # an operation without parameters has no invalid input to send
            assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no valid request could be generated"
            skipped.append(operation.label)
        except Exception as exc:  # collect them all: one report names every failing operation
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
    assert set(skipped) <= WITHOUT_PARAMETERS
