"""The web page in a real headless Chromium (Debian's, driven by Playwright): the leaderboard rows appear, sort
on a click, a live event arrives over the WebSocket, a trader's detail opens. A screenshot is saved under
tests/output/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from sqlalchemy import Engine, text
from support.api_server import ApiServer, EventProducer, address, event_message

from hyperfollow.core.db.models import Base
from hyperfollow.core.keys import RedisKeys, purge_namespace

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OUTPUT = Path(__file__).resolve().parents[1] / "output"
TRADERS = 25


@pytest.fixture(scope="module")
def api(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, engine: Engine, redis_url: str,
        redis_namespace: str) -> Iterator[ApiServer]:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    state = {"assetPositions": [
        {"type": "oneWay", "position": {"coin": "BTC", "szi": "0.75", "entryPx": "61000", "positionValue": "46500",
                                        "unrealizedPnl": "750", "returnOnEquity": "0.16",
                                        "leverage": {"type": "cross", "value": 10}, "liquidationPx": "52000"}},
        {"type": "oneWay", "position": {"coin": "ETH", "szi": "-4", "entryPx": "3100", "positionValue": "12200",
                                        "unrealizedPnl": "-120", "leverage": {"type": "isolated", "value": 5}}}]}
    client = redis.Redis.from_url(redis_url)
    purge_namespace(client, redis_namespace)  # event ids restart with the tables: forget published ones
    client.close()
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        conn.execute(text("INSERT INTO traders (address, slot) SELECT '0x' || lpad(to_hex(n), 40, '0'), n "
                          "FROM generate_series(1, :n) AS n"), {"n": TRADERS})
        # trader n: win rate n/100, volume (n * 7919) % 100000 (so the two orders differ), trader 25 low sample
        conn.execute(text(
            'INSERT INTO leaderboard_metrics (trader_id, "window", win_rate, total_volume_usd, realized_pnl_usd, '
            "roi, trade_count, win_count, account_age_days, low_sample) SELECT id, 'all', id / 100.0, "
            "(id * 7919) % 100000, id * 1000 - 9000, id / 50.0, id * 3, id, id * 10, id = :n FROM traders"),
            {"n": TRADERS})
        conn.execute(text("INSERT INTO user_state_history (trader_id, state_data, account_value, total_notional) "
                          "VALUES (24, CAST(:s AS jsonb), 125000, 58700)"), {"s": orjson.dumps(state).decode()})
    log = tmp_path_factory.mktemp("web") / "api.log"
    with ApiServer(service_env, log) as server:
        yield server


def test_the_page_shows_the_leaderboard_and_live_events(api: ApiServer, redis_url: str, keys: RedisKeys) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (`make browser` installs it)")
    from playwright.sync_api import expect, sync_playwright

    producer = EventProducer(redis_url, keys)
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
            page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
            page.goto(api.url + "/")  # a browser asks for HTML: `/` gives it the page

            rows = page.locator("#leaderboard tbody tr")
            expect(rows).to_have_count(TRADERS)
            # win rate desc, the low-sample trader last whatever its win rate
            expect(rows.first).to_have_attribute("data-trader", address(24))
            expect(rows.last).to_have_attribute("data-trader", address(TRADERS))
            expect(rows.last.locator(".badge")).to_have_text(f"{TRADERS * 3} trades")
            expect(rows.first.locator("td").nth(2)).to_have_text("24.0%")

            page.click("#leaderboard th[data-sort=total_volume_usd]")
            best_volume = max(range(1, TRADERS), key=lambda n: (n * 7919) % 100000)
            expect(rows.first).to_have_attribute("data-trader", address(best_volume))

            expect(page.locator("#feed-status")).to_have_text("live")
            stream_id = producer.publish(event_message(24, address(24), coin="SOL", event_type="position_increased",
                                                       size=250.0))
            arrived = page.locator(f'#events li[data-stream-id="{stream_id}"]')
            expect(arrived).to_be_visible()
            expect(arrived.locator(".coin")).to_have_text("SOL")
            expect(arrived.locator(".kind")).to_have_text("increased")

            arrived.click()  # the trader's detail: positions from the newest snapshot, metrics
            expect(page.locator("#detail")).to_be_visible()
            expect(page.locator("#detail-title")).to_have_text(address(24))
            expect(page.locator("#positions tbody tr")).to_have_count(2)
            expect(page.locator("#positions tbody tr").first.locator("td").first).to_have_text("BTC")
            expect(page.locator("#metrics tbody tr")).to_have_count(1)
            expect(page.locator("#stat-traders")).to_have_text(str(TRADERS))

            OUTPUT.mkdir(exist_ok=True)
            shot = OUTPUT / "web_page.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
        finally:
            browser.close()
            producer.close()
    assert shot.stat().st_size > 10_000
    assert problems == []
