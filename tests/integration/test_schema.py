"""Migrations build exactly the models' schema, go down cleanly, and the database enforces the rules itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DataError, IntegrityError

from hyperfollow.core.db.engine import make_engine
from hyperfollow.core.db.migrate import current_revision, downgrade, head_revision, upgrade
from hyperfollow.core.db.models import Base

GOOD = "0x" + "ab" * 20


@pytest.fixture()
def empty_database(server_urls: tuple[str, str]) -> Iterator[str]:
    server = server_urls[0].rsplit("/", 1)[0]
    name = f"hf_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{server}/{name}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_to_head_and_back_down(empty_database: str) -> None:
    assert current_revision(empty_database) is None
    upgrade(empty_database)
    assert current_revision(empty_database) == head_revision()
    engine = make_engine(empty_database)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"traders", "user_state_history", "trade_events", "leaderboard_metrics", "tape_fills"} <= tables
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("traders")}
        assert "idx_traders_last_tracked_batching" in indexes
        assert indexes["idx_traders_last_tracked_batching"]["dialect_options"]["postgresql_where"] == "is_active"
    finally:
        engine.dispose()
    downgrade(empty_database, "base")
    engine = make_engine(empty_database)
    try:
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    finally:
        engine.dispose()
    upgrade(empty_database)  # and up again from base
    assert current_revision(empty_database) == head_revision()


def _insert_trader(conn, address: str, slot: int = 1) -> int:  # type: ignore[no-untyped-def]
    return conn.execute(text("INSERT INTO traders (address, slot) VALUES (:a, :s) RETURNING id"),
                        {"a": address, "s": slot}).scalar_one()


@pytest.mark.parametrize("address", [GOOD.upper().replace("0X", "0x"), "0x123", "ab" * 21, GOOD + "0"])
def test_database_rejects_bad_addresses(db: Engine, address: str) -> None:
    with pytest.raises((IntegrityError, DataError), match=r"ck_traders_address_lowercase_hex|value too long"), \
            db.begin() as conn:
        _insert_trader(conn, address)


@pytest.mark.parametrize("slot", [-1, 16384])
def test_database_rejects_slots_out_of_range(db: Engine, slot: int) -> None:
    with pytest.raises(IntegrityError, match="ck_traders_slot_in_range"), db.begin() as conn:
        _insert_trader(conn, GOOD, slot)


def test_trader_defaults_and_unique_address(db: Engine) -> None:
    with db.begin() as conn:
        trader_id = _insert_trader(conn, GOOD)
        row = conn.execute(text("SELECT first_seen_at, is_active, last_tracked_at FROM traders WHERE id = :i"),
                           {"i": trader_id}).one()
        assert row.first_seen_at.tzinfo is not None and row.is_active and row.last_tracked_at is None
    with pytest.raises(IntegrityError, match="uq_traders_address"), db.begin() as conn:
        _insert_trader(conn, GOOD)


def test_events_have_known_types_and_a_unique_idempotency_key(db: Engine) -> None:
    insert = text("INSERT INTO trade_events (trader_id, timestamp, event_type, coin, details, idempotency_key) "
                  "VALUES (:t, now(), :e, 'BTC', '{}'::jsonb, :k)")
    with db.begin() as conn:
        trader_id = _insert_trader(conn, GOOD)
        conn.execute(insert, {"t": trader_id, "e": "position_opened", "k": "k1"})
    with pytest.raises(IntegrityError, match="uq_trade_events_idempotency_key"), db.begin() as conn:
        conn.execute(insert, {"t": trader_id, "e": "position_closed", "k": "k1"})
    with pytest.raises(IntegrityError, match="ck_trade_events_event_type_known"), db.begin() as conn:
        conn.execute(insert, {"t": trader_id, "e": "OPEN_POSITION", "k": "k2"})


def test_metrics_window_and_ratios_are_checked(db: Engine) -> None:
    insert = text('INSERT INTO leaderboard_metrics (trader_id, "window", win_rate) VALUES (:t, :w, :r)')
    with db.begin() as conn:
        trader_id = _insert_trader(conn, GOOD)
        conn.execute(insert, {"t": trader_id, "w": "7d", "r": 0.5})
    with pytest.raises(IntegrityError, match="ck_leaderboard_metrics_window_known"), db.begin() as conn:
        conn.execute(insert, {"t": trader_id, "w": "1y", "r": 0.5})
    with pytest.raises(IntegrityError, match="ck_leaderboard_metrics_win_rate_ratio"), db.begin() as conn:
        conn.execute(insert, {"t": trader_id, "w": "30d", "r": 1.5})


def test_deleting_a_trader_removes_its_rows(db: Engine) -> None:
    with db.begin() as conn:
        trader_id = _insert_trader(conn, GOOD)
        conn.execute(text("INSERT INTO user_state_history (trader_id, state_data) VALUES (:t, '{}'::jsonb)"),
                     {"t": trader_id})
        conn.execute(text("DELETE FROM traders WHERE id = :t"), {"t": trader_id})
        assert conn.execute(text("SELECT count(*) FROM user_state_history")).scalar_one() == 0
