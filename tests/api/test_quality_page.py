"""/ui/{symbol}: the data-quality page, rendered by a real headless Chromium against a live API.

Debian's `chromium` (installed by `./dev test` when absent) is driven by Playwright's Python
package; the page reads the live server's public endpoints and its /ws feed, on the run's
database. `MD_UI_SCREENSHOT=docs/quality-page.png` makes the gap test save the README's picture.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from playwright.async_api import Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

from market_data.corporate_actions import ActionKind, CorporateAction, record_actions
from market_data.ingest.pit_write import write_bars
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Bar, Interval
from tests.api.stocks_data import MON_OPEN, session_bars
from tests.api.ws_harness import LiveServer, live_server

CHROMIUM = Path("/usr/bin/chromium")
T0 = int(MON_OPEN.timestamp())
"""The first bar's time, in the chart's seconds."""


def minute(i: int) -> int:
    return T0 + 60 * i


@pytest.fixture(autouse=True)
def chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `./dev test` installs Debian's chromium package")


@asynccontextmanager
async def quality_page(server: LiveServer, path: str = "/ui/AAPL") -> AsyncIterator[Page]:
    """The page opened in headless Chromium, its first load finished; no script error allowed."""
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(server.http(path))
            assert await page.evaluate("window.mdQualityPage.ready") is True, await page.inner_text("#error")
            yield page
        finally:
            await browser.close()
    assert errors == []


async def js(page: Page, expression: str, arg: Any = None) -> Any:
    return await page.evaluate(expression, arg)


async def candle_times(page: Page) -> list[int]:
    return list(await js(page, "window.mdQualityPage.candles.data().map((b) => b.time)"))


async def quality_marks(page: Page) -> dict[int, str]:
    """Chart slot -> the state drawn on it (missing, queued, confirmed_empty)."""
    points = await js(page, "window.mdQualityPage.state.quality.map((p) => [p.time, p.state])")
    return {t: s for t, s in points}


async def hover_bar(page: Page, time: int, tries: int = 20) -> tuple[float, float]:
    """Move the mouse onto the chart bar of `time` until its tooltip names it; returns the point.

    The chart may still be sizing itself to the page when a test starts (its width follows the
    page's layout): a coordinate taken a moment before can then point at another bar, so the
    point is taken again until the tooltip shows `time`.
    """
    label = datetime.fromtimestamp(time, UTC).strftime("%Y-%m-%d %H:%M UTC")
    for _ in range(tries):
        x = await js(page, "(t) => window.mdQualityPage.chart.timeScale().timeToCoordinate(t)", time)
        box = await page.locator("#chart").bounding_box()
        assert box is not None and x is not None
        point = (box["x"] + x, box["y"] + box["height"] / 2)
        await page.mouse.move(*point)
        try:
            await page.wait_for_function(
                "(label) => { const t = document.getElementById('tooltip');"
                " return !t.hidden && t.innerText.startsWith(label); }",
                arg=label,
                timeout=500,
            )
            return point
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"the tooltip never named {label}: {await page.inner_text('#tooltip')!r}")


async def until_following(page: Page, interval: str) -> None:
    await page.wait_for_function(f"window.mdQualityPage.state.live === {interval!r}")


async def seed_gaps(conn: Any, bars: list[Bar]) -> list[Bar]:
    """Store `bars` but for a gap: 10-12 missing, 20-21 confirmed empty, 30-32 queued for backfill;
    and a running backfill job over the stored bars 40-44 (a re-fetch)."""
    gone = {10, 11, 12, 20, 21, 30, 31, 32}
    await write_bars(
        conn, [b for i, b in enumerate(bars) if i not in gone], policy_version=1, advance_cursors=False
    )
    await conn.execute(
        """INSERT INTO confirmed_empty_ranges (symbol, interval, start_ts, end_ts, provider)
           VALUES ('AAPL', '1m', $1, $2, 'synthetic')""",
        MON_OPEN + timedelta(minutes=20),
        MON_OPEN + timedelta(minutes=22),
    )
    await conn.execute(
        """INSERT INTO backfill_jobs (symbol, interval, start_ts, end_ts, tier, priority, source, status)
           VALUES ('AAPL', '1m', $1, $2, 'T0', 1, 'gap', 'queued')""",
        MON_OPEN + timedelta(minutes=30),
        MON_OPEN + timedelta(minutes=33),
    )
    await conn.execute(
        """INSERT INTO backfill_jobs (symbol, interval, start_ts, end_ts, tier, priority, source, status)
           VALUES ('AAPL', '1m', $1, $2, 'T0', 0, 'api', 'running')""",
        MON_OPEN + timedelta(minutes=40),
        MON_OPEN + timedelta(minutes=45),
    )
    return bars


async def test_the_page_draws_the_stored_bars_of_a_symbol(conn) -> None:
    await write_bars(conn, session_bars(minutes=30), policy_version=1, advance_cursors=False)
    async with live_server() as server, quality_page(server) as page:
        assert await candle_times(page) == [minute(i) for i in range(30)]
        assert await page.locator("#bars-table tbody tr").count() == 30
        summary = await page.inner_text("#summary")
        assert "30 1m bars from 2026-11-23 14:30 to 2026-11-23 14:59 UTC" in summary
        assert "synthetic (30 bars)" in summary
        assert await page.locator("#summary [data-count=missing]").inner_text() == "0"
        assert await quality_marks(page) == {}
        # the interval selector is labelled and offers the stored and built timeframes
        options = await page.locator("label[for=interval] + select option").all_inner_texts()
        assert "1m (stored)" in options and "1h (built)" in options
        # every control has a label or text a screen reader can announce
        unlabelled = await js(
            page,
            """() => [...document.querySelectorAll('input, select, button')]
                .filter((el) => !(el.labels?.length || el.textContent.trim() || el.ariaLabel))
                .map((el) => el.outerHTML)""",
        )
        assert unlabelled == []
        assert await page.get_attribute("#chart", "aria-describedby") == "summary"


async def test_a_bar_written_while_the_page_is_open_appears_live(conn) -> None:
    bars = session_bars(minutes=40)
    await write_bars(conn, bars[:10] + bars[11:30], policy_version=1, advance_cursors=False)
    async with live_server() as server, quality_page(server) as page:
        await until_following(page, "1m")
        assert await quality_marks(page) == {minute(10): "missing"}
        # the write path's NOTIFY reaches the page over /ws: a new bar, then the gap filled
        await write_bars(conn, [bars[30]], policy_version=1, advance_cursors=False)
        await page.wait_for_function("window.mdQualityPage.candles.data().length === 30")
        assert (await candle_times(page))[-1] == minute(30)
        await write_bars(conn, [bars[10]], policy_version=1, advance_cursors=False)
        await page.wait_for_function("window.mdQualityPage.candles.data().length === 31")
        assert await quality_marks(page) == {}
        assert "New bar 2026-11-23 14:40 from synthetic" in await page.inner_text("#connection")
        # a correction arrives as a revision and is marked at once
        await write_bars(
            conn,
            [msgspec.structs.replace(bars[5], close=bars[5].close + 2)],
            policy_version=1,
            advance_cursors=False,
        )
        await page.wait_for_function(f"window.mdQualityPage.state.revised.has({minute(5)})")
        assert await page.locator("#revised button").all_inner_texts() == ["2026-11-23 14:35 UTC: 2 versions"]


async def test_an_injected_gap_is_marked(conn) -> None:
    await seed_gaps(conn, session_bars(minutes=60))
    async with live_server() as server, quality_page(server) as page:
        marks = await quality_marks(page)
        assert marks == {
            **{minute(i): "missing" for i in (10, 11, 12)},
            **{minute(i): "confirmed_empty" for i in (20, 21)},
            **{minute(i): "queued" for i in (30, 31, 32)},
        }
        assert minute(10) not in await candle_times(page)
        counts = {
            k: await page.locator(f"#summary [data-count={k}]").inner_text()
            for k in ("missing", "queued", "confirmed_empty")
        }
        assert counts == {"missing": "3", "queued": "3", "confirmed_empty": "2"}
        assert await page.locator("#ranges li").all_inner_texts() == [
            "2026-11-23 14:40 to 2026-11-23 14:43 UTC: 3 1m bars missing",
            "2026-11-23 14:50 to 2026-11-23 14:52 UTC: 2 1m bars confirmed empty",
            "2026-11-23 15:00 to 2026-11-23 15:03 UTC: 3 1m bars missing, queued for backfill",
        ]
        # the jobs themselves, along the top: the queued one over the gap, the running re-fetch
        jobs = await js(page, "window.mdQualityPage.state.jobs.map((p) => [p.time, p.status])")
        assert jobs == [[minute(i), "queued"] for i in (30, 31, 32)] + [
            [minute(i), "running"] for i in range(40, 45)
        ]
        assert await page.locator("#backfills li").all_inner_texts() == [
            "2026-11-23 15:00 to 2026-11-23 15:03 UTC: queued (gap)",
            "2026-11-23 15:10 to 2026-11-23 15:15 UTC: running (api)",
        ]
        bar = session_bars(minutes=60)[45]
        await write_bars(
            conn,
            [msgspec.structs.replace(bar, close=bar.close + 0.25, high=max(bar.high, bar.close + 0.25))],
            policy_version=1,
            advance_cursors=False,
        )
        if os.environ.get("MD_UI_SCREENSHOT"):
            await page.reload()
            await page.evaluate("window.mdQualityPage.ready")
            await page.wait_for_function(f"window.mdQualityPage.state.revised.has({minute(45)})")
            await hover_bar(page, minute(45))  # its tooltip in the picture
            await page.screenshot(path=os.environ["MD_UI_SCREENSHOT"])
        # a built interval marks the built bar that holds the gap, worst state first
        await page.select_option("#interval", "15m")
        await page.click("#controls button[type=submit]")
        await page.wait_for_function("window.mdQualityPage.candles.data().length === 4")
        assert await quality_marks(page) == {
            minute(0): "missing",
            minute(15): "confirmed_empty",
            minute(30): "queued",
        }
        await until_following(page, "1m")  # built bars follow the stored interval they are built from
        # the missing 1m bars arrive: the page re-reads the built bars and the red mark goes
        bars = session_bars(minutes=60)
        await write_bars(conn, bars[10:13], policy_version=1, advance_cursors=False)
        await page.wait_for_function(
            f"!window.mdQualityPage.state.quality.some((p) => p.time === {minute(0)})"
        )
        assert await quality_marks(page) == {minute(15): "confirmed_empty", minute(30): "queued"}


async def test_a_built_bar_without_any_stored_bar_is_marked_where_it_would_stand(conn) -> None:
    bars = session_bars(minutes=180)  # 14:30-17:30; the 1h bars start at the open, 14:30
    await write_bars(conn, bars[:60] + bars[120:], policy_version=1, advance_cursors=False)
    async with live_server() as server, quality_page(server, "/ui/AAPL?interval=1h") as page:
        assert await candle_times(page) == [minute(0), minute(120)]
        assert await quality_marks(page) == {minute(60): "missing"}
        assert await page.input_value("#interval") == "1h"


async def test_a_revised_bar_shows_its_versions_on_click(conn) -> None:
    bars = session_bars(minutes=30)
    await write_bars(conn, bars, policy_version=1, advance_cursors=False)
    await write_bars(
        conn, [msgspec.structs.replace(bars[12], close=99.5)], policy_version=2, advance_cursors=False
    )
    async with live_server() as server, quality_page(server) as page:
        await page.mouse.click(*await hover_bar(page, minute(12)))
        tooltip = await page.inner_text("#tooltip")
        assert "2026-11-23 14:42 UTC" in tooltip and "provider synthetic" in tooltip and "revised" in tooltip
        await page.wait_for_selector("#versions:not([hidden])")
        closes = await page.locator("#versions-table tbody tr td:nth-child(7)").all_inner_texts()
        assert closes == [str(bars[12].close), "99.5"]
        assert "2026-11-23T14:42:00Z" in await page.inner_text("#versions-table caption")
        # the same from the keyboard: the list of revised bars holds focusable buttons
        await page.click("#versions-close")
        await page.wait_for_selector("#versions", state="hidden")
        await page.focus("#revised button")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#versions:not([hidden])")
        assert await js(page, "document.activeElement.id") == "versions"


async def test_prices_can_be_read_split_adjusted_with_the_split_marked(conn) -> None:
    start, end = datetime(2020, 8, 24, tzinfo=UTC), datetime(2020, 9, 5, tzinfo=UTC)
    daily = SyntheticProvider().bars_for("AAPL", "XNAS", Interval.D1, start, end, end + timedelta(days=1))
    await write_bars(conn, daily, policy_version=1, advance_cursors=False)
    split = CorporateAction(
        symbol="AAPL",
        kind=ActionKind.SPLIT,
        ex_date=date(2020, 8, 31),
        provider="synthetic",
        split_from=1,
        split_to=4,
    )
    await record_actions(conn, [split], await conn.fetchval("SELECT max(as_of) FROM bars"))
    path = "/ui/AAPL?interval=1d&end=2020-09-05T00:00:00Z"
    async with live_server() as server, quality_page(server, path) as page:
        raw = await js(page, "window.mdQualityPage.candles.data().map((b) => b.close)")
        assert raw == [b.close for b in daily] and "Prices raw, as traded." in await page.inner_text(
            "#summary"
        )
        await page.select_option("#adjustment", "split")
        await page.click("#controls button[type=submit]")
        await page.wait_for_function("window.mdQualityPage.markers.markers().length === 1")  # drawn
        adjusted = await js(page, "window.mdQualityPage.candles.data().map((b) => b.close)")
        ex = date(2020, 8, 31)
        assert adjusted == [pytest.approx(b.close / 4) if b.ts.date() < ex else b.close for b in daily]
        assert await page.locator("#summary [data-count=actions]").inner_text() == "1"
        assert (await page.locator("#actions li").all_inner_texts())[0].startswith("2020-08-31: split 4:1")
        marks = await js(page, "window.mdQualityPage.markers.markers().map((m) => [m.time, m.text])")
        assert marks == [[int(datetime(2020, 8, 31, tzinfo=UTC).timestamp()), "split 4:1"]]
        assert "adjustment=split" in page.url


@pytest.mark.parametrize("interval", ["60m", "soon"])
async def test_an_interval_the_api_refuses_is_shown_with_its_reason(conn, interval) -> None:
    async with live_server() as server, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(server.http(f"/ui/AAPL?interval={interval}"))
            assert await page.evaluate("window.mdQualityPage.ready") is False
            assert (await page.inner_text("#error")).startswith("interval: ")
            assert errors == []
        finally:
            await browser.close()


@pytest.mark.parametrize(
    ("path", "status", "parameter"), [("/ui/ZZZZZ", 404, "symbol"), ("/ui/-AAPL", 400, "symbol")]
)
async def test_the_page_of_an_unknown_or_malformed_symbol_is_refused(conn, path, status, parameter) -> None:
    async with live_server() as server, httpx.AsyncClient() as http:
        r = await http.get(server.http(path))
        assert r.status_code == status and r.json()["parameter"] == parameter


async def test_the_page_and_its_chart_library_come_from_the_api(conn) -> None:
    async with live_server() as server, httpx.AsyncClient() as http:
        page = await http.get(server.http("/ui/aapl"))
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'data-symbol="AAPL"' in page.text and 'data-stored="1m"' in page.text
        assert "http" not in page.text.split("<footer>")[0]  # nothing from elsewhere
        licence = await http.get(server.http("/ui/static/vendor/lightweight-charts/LICENSE"))
        assert licence.status_code == 200 and "Apache License" in licence.text
        lib = await http.get(
            server.http("/ui/static/vendor/lightweight-charts/lightweight-charts.standalone.production.mjs")
        )
        assert lib.status_code == 200 and "Lightweight Charts™ v5.2.1" in lib.text
