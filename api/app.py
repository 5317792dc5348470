"""create_app(): the Litestar application (run with `uvicorn --factory api.app:create_app`)."""

from __future__ import annotations

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from api.errors import EXCEPTION_HANDLERS
from api.state import AppResources, lifespan
from api.stocks.controller import StocksController
from api.system.controller import VERSION, SystemController
from market_data.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> Litestar:
    resources = AppResources(settings or get_settings())

    def provide_resources() -> AppResources:
        return resources

    app = Litestar(
        route_handlers=[SystemController, StocksController],
        dependencies={"resources": Provide(provide_resources, sync_to_thread=False)},
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        openapi_config=OpenAPIConfig(
            title="Market data API",
            version=VERSION,
            description="Prices, history, intraday bars, WebSockets, stats and ops over Postgres.",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        # Closed by default: no cross-origin browser access unless an operator opens it.
        cors_config=CORSConfig(allow_origins=[]),
        request_max_body_size=1_048_576,
    )
    app.state.resources = resources
    return app
