"""create_app(): the Litestar application (run with `uvicorn --factory api.app:create_app`)."""

from __future__ import annotations

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from api.errors import EXCEPTION_HANDLERS
from api.ops.audit import OpsAuditMiddleware
from api.ops.auth import require_ops_token
from api.ops.policy import PolicyOpsController
from api.state import AppResources, lifespan
from api.stats.cadence import CadenceController
from api.stats.providers import ProvidersController
from api.stocks.controller import StocksController
from api.system.controller import VERSION, SystemController
from market_data.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> Litestar:
    resources = AppResources(settings or get_settings())

    def provide_resources() -> AppResources:
        return resources

    ops = Router(
        path="/",
        route_handlers=[PolicyOpsController],
        guards=[require_ops_token],
        middleware=[OpsAuditMiddleware()],
        security=[{"BearerToken": []}],
    )
    app = Litestar(
        route_handlers=[SystemController, StocksController, CadenceController, ProvidersController, ops],
        dependencies={"resources": Provide(provide_resources, sync_to_thread=False)},
        lifespan=[lifespan],
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
    return app
