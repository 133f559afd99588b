"""Settings: the seed's names, our HYPERFOLLOW_* names, .env files, and one clear line per bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hyperfollow.core.settings import ConfigError, Settings, load_settings

ENV_NAMES = ("DATABASE_URL", "REDIS_URL", "HYPERLIQUID_API_URL", "WEBSOCKET_URL", "POPULAR_COINS", "BATCH_SIZE",
             "DEBUG", "SECRET_KEY", "LOG_LEVEL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name in ENV_NAMES or name.startswith("HYPERFOLLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_point_at_mainnet_and_embedded_servers() -> None:
    settings = load_settings()
    assert settings.hyperliquid_api_url == "https://api.hyperliquid.xyz/info"
    assert settings.websocket_url == "wss://api.hyperliquid.xyz/ws"
    assert settings.uses_embedded_database and settings.uses_embedded_redis
    assert settings.popular_coins == ()
    assert settings.batch_size == 50
    assert settings.weight_budget_per_minute == 1080  # 90 % of 1200
    assert settings.secret_key is None and settings.admin_token is None


def test_seed_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db.example:5432/hf")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("POPULAR_COINS", " BTC, ETH ,kPEPE,xyz:TSLA ")
    monkeypatch.setenv("BATCH_SIZE", "25")
    monkeypatch.setenv("DEBUG", "true")
    monkeypatch.setenv("SECRET_KEY", "s3cr3t-value")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.setenv("HYPERFOLLOW_ADMIN_TOKEN", "admin-token-value")
    monkeypatch.setenv("HYPERFOLLOW_BUDGET_TARGET", "0.5")
    settings = load_settings()
    assert settings.database_url == "postgresql://u:p@db.example:5432/hf"
    assert settings.redis_url == "redis://cache:6379/2"
    assert settings.popular_coins == ("BTC", "ETH", "kPEPE", "xyz:TSLA")
    assert settings.batch_size == 25 and settings.debug is True and settings.log_level == "WARNING"
    assert settings.secret_key is not None and settings.secret_key.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(settings) and "admin-token-value" not in repr(settings)
    assert settings.weight_budget_per_minute == 600


def test_fields_read_only_their_own_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/somewhere/else")
    monkeypatch.setenv("API_PORT", "tcp://10.0.0.1:8000")
    settings = load_settings()
    assert str(settings.home) == ".hyperfollow"
    assert settings.api_port == 8000


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BATCH_SIZE=7\nPOPULAR_COINS=SOL\n")
    settings = load_settings()
    assert settings.batch_size == 7
    assert settings.popular_coins == ("SOL",)


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("BATCH_SIZE", "-1", "BATCH_SIZE: Input should be greater than 0"),
    ("BATCH_SIZE", "ten", "BATCH_SIZE: Input should be a valid integer"),
    ("DATABASE_URL", "mysql://localhost/x", "DATABASE_URL: scheme must be one of"),
    ("DATABASE_URL", "postgresql://host:99999/x", "DATABASE_URL: has an invalid port"),
    ("REDIS_URL", "not a url", "REDIS_URL: scheme must be one of"),
    ("HYPERLIQUID_API_URL", "ftp://x/info", "HYPERLIQUID_API_URL: scheme must be one of"),
    ("WEBSOCKET_URL", "https://x/ws", "WEBSOCKET_URL: scheme must be one of"),
    ("POPULAR_COINS", "BTC,E$TH", "POPULAR_COINS: not a perp coin name: 'E$TH'"),
    ("POPULAR_COINS", "BTC,BTC", "POPULAR_COINS: lists a coin twice"),
    ("LOG_LEVEL", "LOUD", "LOG_LEVEL: Input should be"),
    ("HYPERFOLLOW_BUDGET_TARGET", "1.5", "HYPERFOLLOW_BUDGET_TARGET: Input should be less than or equal to 1"),
    ("HYPERFOLLOW_BUDGET_GROUP", "Bad Group", "HYPERFOLLOW_BUDGET_GROUP: String should match pattern"),
])
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_every_bad_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_SIZE", "0")
    monkeypatch.setenv("REDIS_URL", "http://x")
    with pytest.raises(ConfigError, match=r"REDIS_URL: .*; BATCH_SIZE: |BATCH_SIZE: .*; REDIS_URL: "):
        load_settings()


def test_cli_prints_one_line_and_exits_2_on_bad_config(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES and not k.startswith("HYPERFOLLOW_")}
    env["BATCH_SIZE"] = "-5"
    done = subprocess.run([sys.executable, "-m", "hyperfollow.core", "db", "current"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hyperfollow: invalid configuration: BATCH_SIZE: Input should be greater than 0"]
    assert "Traceback" not in done.stderr + done.stdout


def test_settings_subclass_adds_component_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import AliasChoices, Field

    class ComponentSettings(Settings):
        flush_ms: int = Field(200, gt=0, validation_alias=AliasChoices("HYPERFOLLOW_TEST_FLUSH_MS"))

    monkeypatch.setenv("HYPERFOLLOW_TEST_FLUSH_MS", "0")
    with pytest.raises(ConfigError, match="HYPERFOLLOW_TEST_FLUSH_MS"):
        load_settings(ComponentSettings)


def test_readme_documents_every_variable() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for field in Settings.model_fields.values():
        for name in field.validation_alias.choices:  # type: ignore[union-attr]
            assert f"| `{name}` |" in readme, f"{name} is missing from the README's configuration table"
