"""Corporate actions: one security's (as known at `as_of`), and the feed of what was learned since."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import asyncpg
from litestar import Controller, get
from litestar.params import Parameter

from api.actions.schemas import ActionFeedResponse, SymbolActionsResponse, TickerOut, action_out
from api.errors import NotFound
from api.schemas import ErrorBody, documented
from api.state import Resources
from api.stocks.params import EARLIEST, ERRORS, AsOfQuery, SymbolPath, instant
from api.stocks.symbols import require_listed
from market_data.corporate_actions import StoredAction, known_actions, learned_since
from market_data.records import utcnow
from market_data.securities import TickerSpan, ticker_history

MAX_FEED = 1_000


class CorporateActionsController(Controller):
    path = "/"
    tags = ["corporate-actions"]

    @get(
        "/stocks/{symbol:str}/corporate-actions",
        operation_id="getSymbolCorporateActions",
        summary="A security's corporate actions, as known at `as_of`",
        description=(
            "Splits, cash dividends (ex, record and pay dates, currency), ticker changes and delistings "
            "of the symbol's security, each in the version known at `as_of` (default now) with the "
            "provider that reported it and when it was learned; the security's ticker history. "
            "The actions `/history?adjustment=` applies at the same `as_of`."
        ),
        responses={
            **ERRORS,
            404: documented(ErrorBody, description="Unknown symbol, or no security master entry"),
        },
    )
    async def symbol_actions(
        self,
        resources: Resources,
        symbol: SymbolPath,
        as_of: AsOfQuery = None,
        include_cancelled: Annotated[
            bool, Parameter(description="Also list actions whose known version cancels them")
        ] = False,
    ) -> SymbolActionsResponse:
        listed = await require_listed(resources, symbol)
        if listed.security_id is None:
            raise NotFound(f"symbol: {listed.symbol} has no security master entry", parameter="symbol")
        sid = listed.security_id
        at = instant(as_of, "as_of") if as_of is not None else utcnow()

        async def read(db: asyncpg.Pool) -> tuple[list[TickerSpan], list[StoredAction]]:
            return await ticker_history(db, sid), await known_actions(
                db, [sid], at, with_cancelled=include_cancelled
            )

        tickers, actions = await resources.reads.run(read)
        return SymbolActionsResponse(
            symbol=listed.symbol,
            security_id=sid,
            tickers=[
                TickerOut(ticker=t.ticker, valid_from=t.valid_from, valid_to=t.valid_to) for t in tickers
            ],
            as_of=at,
            actions=[action_out(a) for a in actions],
        )

    @get(
        "/corporate-actions",
        operation_id="getCorporateActionFeed",
        summary="Corporate actions learned since an instant, for every security",
        description=(
            "Every version of every action learned after `since` (exclusive) until now, oldest first, "
            f"at most `limit` (up to {MAX_FEED}); `next_since` and `next_after` continue. New, revised "
            "and cancelled actions alike (a cancellation has `cancelled: true`). WebSocket clients "
            "following a symbol get the same as a `corporate_action` message when it is learned."
        ),
        responses={400: ERRORS[400], 503: ERRORS[503]},
    )
    async def feed(
        self,
        resources: Resources,
        since: Annotated[
            datetime | None,
            Parameter(description="Exclusive lower bound of `learned_at` (default: the start)"),
        ] = None,
        after: Annotated[
            str | None,
            Parameter(
                max_length=80,
                description="`next_after` of the previous page (continues among the versions of `since`)",
            ),
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_FEED, description="Most versions returned")] = 100,
    ) -> ActionFeedResponse:
        lo = instant(since, "since") if since is not None else EARLIEST
        until = utcnow()
        rows = await resources.reads.run(lambda db: learned_since(db, lo, until, limit + 1, after_key=after))
        more = len(rows) > limit
        rows = rows[:limit]
        return ActionFeedResponse(
            since=lo,
            until=until,
            count=len(rows),
            actions=[action_out(a) for a in rows],
            next_since=rows[-1].as_of if more else None,
            next_after=rows[-1].action_key if more else None,
        )
