"""The Litestar application factory.

    create_app(engine, settings)
      /v1/models, /v1/completions, /v1/chat/completions     OpenAI (routes/*)
      /infill, /tokenize, /detokenize                        llama.cpp (routes/llamacpp.py)
      /health, /docs (Swagger UI, assets served locally)

The engine is started and stopped in the lifespan; routes get the ServerState with `Provide`.
`/`, `/admin`, `/metrics` and `/static` are left for the pages and the metrics."""

from __future__ import annotations

from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

from inference import AsyncEngine, LLMEngine

from .accounting import AccountingMiddleware
from .auth import api_key_guard
from .errors import EXCEPTION_HANDLERS
from .routes.chat import ChatController
from .routes.completions import CompletionsController
from .routes.health import health
from .routes.llamacpp import LlamaCppController
from .routes.models import ModelsController
from .settings import ServerSettings
from .state import ServerState

DOCS_ASSETS = "/docs/assets"


def _openapi() -> OpenAPIConfig:
    swagger = SwaggerRenderPlugin(path="/", js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                  css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                  standalone_preset_js_url=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
                                  favicon=f"<link rel='icon' type='image/png' href='{DOCS_ASSETS}/favicon-32x32.png'>")
    return OpenAPIConfig(title="codellama-serve", version="1", path="/docs", render_plugins=[swagger],
                         description="An OpenAI-compatible (and llama.cpp-compatible) Code Llama server.")


def create_app(engine: LLMEngine | AsyncEngine, settings: ServerSettings | None = None) -> Litestar:
    settings = settings or ServerSettings()
    serving = ServerState(engine if isinstance(engine, AsyncEngine) else AsyncEngine(engine), settings)

    @asynccontextmanager
    async def run_engine(_: Litestar):
        await serving.start()
        try:
            yield
        finally:
            await serving.stop()

    guards = [api_key_guard(settings.api_keys)] if settings.api_keys else []
    api = Router("/", route_handlers=[ModelsController, CompletionsController, ChatController, LlamaCppController],
                 guards=guards)
    docs_assets = create_static_files_router(DOCS_ASSETS, directories=[swagger_ui_path], include_in_schema=False)
    return Litestar(
        route_handlers=[api, health, docs_assets],
        dependencies={"serving": Provide(lambda: serving, sync_to_thread=False)},
        lifespan=[run_engine],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[AccountingMiddleware(serving.accounting)],
        openapi_config=_openapi(),
        cors_config=CORSConfig(allow_origins=list(settings.cors_origins)) if settings.cors_origins else None,
        request_max_body_size=settings.max_body_bytes,
        state=State({"serving": serving}),
    )
