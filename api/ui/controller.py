"""GET /ui/{symbol}: the data-quality page; its script, styles and chart library under /ui/static.

The page is static HTML; its script reads the public read endpoints (/stocks/{symbol}/history,
/coverage, /versions) and the `/ws` feed, so it needs no ops token. Every asset is served from
this package (the chart library is vendored from the npm registry by `./dev ui-vendor`): the
page loads nothing from elsewhere.
"""

from __future__ import annotations

import html
from pathlib import Path

from litestar import Controller, MediaType, Response, get
from litestar.static_files import create_static_files_router

from api.schemas import ErrorBody, documented
from api.state import Resources
from api.stocks.params import ERRORS, SymbolPath
from api.stocks.symbols import require_listed, stored_intervals
from market_data.adjustment import Adjustment

STATIC_DIR = Path(__file__).parent / "static"
PAGE = STATIC_DIR / "quality.html"

ui_static_files = create_static_files_router(
    path="/ui/static", directories=[STATIC_DIR], include_in_schema=False, name="ui-static"
)
"""The page's script, styles and the vendored chart library."""


class QualityPageController(Controller):
    path = "/ui"
    tags = ["ui"]

    @get(
        "/{symbol:str}",
        operation_id="getQualityPage",
        summary="Data-quality page of a symbol (HTML)",
        description=(
            "A candlestick chart of any stored or built interval with the data's quality drawn on "
            "it: missing bars, confirmed-empty ranges, bars queued for backfill, revised bars (click "
            "for their versions) and the provider of each bar; raw or adjusted prices; live over /ws. "
            "Read-only: no token."
        ),
        media_type=MediaType.HTML,
        responses={
            **ERRORS,
            404: documented(ErrorBody, description="Unknown symbol"),
        },
    )
    async def page(self, resources: Resources, symbol: SymbolPath) -> Response[str]:
        listed = await require_listed(resources, symbol)
        stored = (await stored_intervals(resources, [listed]))[listed.symbol]
        return Response(
            render_page(
                listed.symbol,
                listed.exchange_mic,
                [iv.value for iv in sorted(stored, key=lambda iv: iv.seconds)],
            ),
            media_type=MediaType.HTML,
        )


def render_page(symbol: str, exchange_mic: str, stored: list[str]) -> str:
    """The page with the symbol, its exchange and its stored intervals filled in."""
    fields = {
        "symbol": symbol,
        "exchange": exchange_mic,
        "stored": ",".join(stored),
        "adjustments": ",".join(a.value for a in Adjustment),
    }
    page = PAGE.read_text()
    for name, value in fields.items():
        page = page.replace("{{" + name + "}}", html.escape(value))
    return page
