"""Wiring of the live feed into the app: channels plugin, hub, routes, lifespan.

    feed = LiveFeed(resources, metrics)
    Litestar(..., plugins=[feed.channels, feed])

`feed.channels` is Litestar's ChannelsPlugin over `ListenerBackend` (AsyncPgChannelsBackend:
LISTEN on md_bars, md_quotes and md_corporate_actions through the app's DSN), so every API
process receives every notification and several processes can serve clients. The hub
subscribes to the channels once and fans messages out in-process.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.config.app import AppConfig
from litestar.plugins import InitPlugin

from api.observability.metrics import ApiMetrics
from api.state import AppResources
from api.ws.backend import ListenerBackend
from api.ws.controller import ws_multiplex, ws_symbol
from api.ws.hub import Hub
from api.ws.limits import WsLimits
from market_data.notifications import ACTION_CHANNEL, BAR_CHANNEL, QUOTE_CHANNEL

FEED_BACKLOG = 100_000
"""Notifications the hub may fall behind by before the oldest are dropped (process overload;
the hub then resynchronises its clients and the latest-value cache, `Hub.watch_feed_backlog`)."""


GC_THRESHOLDS = (50_000, 20, 10)
"""`gc.set_threshold` of an API process: a young collection per 50,000 new objects, not 700."""

_heap_frozen = False


def freeze_startup_heap() -> None:
    """Keep the objects alive after startup (modules, pandas, calendars, the app) out of the
    cyclic GC's full collections, and make full collections rare; once per process.

    With a thousand clients, a full collection over every object the process holds stalls the
    event loop for 100 ms and more, which shows as the p99 of `ws_publish_latency_ms`;
    `gc.freeze()` moves what exists now into a generation the collector never scans.

    The connections' own objects come later, so the thresholds matter too. With CPython's
    default (a young collection per 700 new objects), 10,000 messages/s run young collections
    many times a second, each promoting whatever is in flight at that instant (pending futures,
    messages being sent) to the old generation; every half minute or so the promoted count
    passes the full-collection trigger (a quarter of the old generation) and a full collection
    over every connection's objects stops the loop, finding nothing to free. A young collection
    per 50,000 objects keeps that from happening under the `./dev bench ws` load (README,
    Performance). Cyclic garbage (rare here: reference counting frees the rest) waits a little
    longer to be collected.
    """
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)


class LiveFeed(InitPlugin):
    def __init__(self, resources: AppResources, metrics: ApiMetrics, limits: WsLimits | None = None) -> None:
        self.backend = ListenerBackend(resources.settings.database_url)
        self.backlog_max = FEED_BACKLOG
        self.channels = ChannelsPlugin(
            backend=self.backend,
            channels=[BAR_CHANNEL, QUOTE_CHANNEL, ACTION_CHANNEL],
            subscriber_max_backlog=self.backlog_max,
            subscriber_backlog_strategy="dropleft",
        )
        self.hub = Hub(resources, metrics, limits or WsLimits.from_env())
        self.hub.backend = self.backend
        # the latest-value cache serves only while LISTEN is up, and starts over after a loss
        latest = resources.latest
        latest.follow(lambda: self.backend.listening and not self.hub.feed_overflowing)
        self.backend.on_lost = latest.invalidate

        def restored() -> None:
            latest.invalidate()  # before the sessions' resync snapshots read it
            self.hub.resync_all()

        self.backend.on_restored = restored

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.extend([ws_multiplex, ws_symbol])
        # after the channels plugin's own lifespan (listed before this plugin), before shutdown
        app_config.lifespan.append(self._lifespan)
        app_config.state["ws_hub"] = self.hub
        return app_config

    @asynccontextmanager
    async def _lifespan(self, _: Litestar) -> AsyncIterator[None]:
        subscriber = await self.channels.subscribe([BAR_CHANNEL, QUOTE_CHANNEL, ACTION_CHANNEL])
        self.hub.start(subscriber.iter_events(), lambda: subscriber.qsize, self.backlog_max)
        freeze_startup_heap()
        try:
            yield
        finally:
            await self.hub.stop()
            await self.channels.unsubscribe(subscriber)
