"""create_app(): the Litestar application (run with `uvicorn --factory api.app:create_app`)."""

from __future__ import annotations

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from api.actions.controller import CorporateActionsController
from api.errors import EXCEPTION_HANDLERS, AcceptHeaderGuard
from api.exports.controller import ExportsController
from api.instants import refuse_numeric_instants
from api.observability.controller import MetricsController
from api.observability.http import RequestLatencyMiddleware
from api.observability.metrics import ReplicaCollector, build_api_metrics, metrics_lifespan
from api.observability.scrape import scrape_source
from api.openapi import StrictStructSchemaPlugin
from api.ops.audit import OpsAuditMiddleware
from api.ops.auth import require_ops_token
from api.ops.backfill import BackfillOpsController
from api.ops.policy import PolicyOpsController
from api.ops.wakeup import BackfillWakeup
from api.state import AppResources, lifespan
from api.stats.cadence import CadenceController
from api.stats.providers import ProvidersController
from api.stats.slo import SloController
from api.stocks.controller import StocksController
from api.system.controller import VERSION, SystemController
from api.ui.controller import QualityPageController, ui_static_files
from api.ws.feed import LiveFeed
from market_data.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> Litestar:
    resources = AppResources(settings or get_settings())
    metrics = build_api_metrics(scrape_source(resources))  # one registry per app
    if resources.replica is not None:
        metrics.register(ReplicaCollector(resources.replica))
    feed = LiveFeed(resources, metrics)

    def provide_resources() -> AppResources:
        return resources

    ops = Router(
        path="/",
        route_handlers=[PolicyOpsController, BackfillOpsController],
        guards=[require_ops_token],
        middleware=[OpsAuditMiddleware()],
        security=[{"BearerToken": []}],
    )
    app = Litestar(
        route_handlers=[
            SystemController,
            MetricsController,
            StocksController,
            CorporateActionsController,
            ExportsController,
            CadenceController,
            ProvidersController,
            SloController,
            QualityPageController,
            ui_static_files,
            ops,
        ],
        plugins=[feed.channels, feed, StrictStructSchemaPlugin()],
        middleware=[RequestLatencyMiddleware(metrics), AcceptHeaderGuard()],
        before_request=refuse_numeric_instants,
        dependencies={"resources": Provide(provide_resources, sync_to_thread=False)},
        lifespan=[lifespan, metrics_lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        openapi_config=OpenAPIConfig(
            title="Market data API",
            version=VERSION,
            description="Prices, history, intraday bars, WebSockets, stats and ops over Postgres.",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="MARKET_DATA_OPS_TOKEN (printed by ./dev up)",
                    )
                }
            ),
        ),
        # Closed by default: no cross-origin browser access unless an operator opens it.
        cors_config=CORSConfig(allow_origins=[]),
        request_max_body_size=1_048_576,
    )
    app.state.resources = resources
    app.state.api_metrics = metrics
    app.state.backfill_wakeup = BackfillWakeup(resources, metrics.backfill_wakeups)
    return app
