"""The Litestar application factory.

    create_app(engine, settings)
      /v1/models, /v1/completions, /v1/chat/completions     OpenAI (routes/*)
      /infill, /tokenize, /detokenize                        llama.cpp (routes/llamacpp.py)
      /health, /metrics (Prometheus), /docs (Swagger UI, assets served locally)
      /v1/loads                                              the engine's load, for the gateway (routes/loads.py)
      /, /playground/*, /admin, /login                       pages (pages/*, templates/)
      /static                                                htmx, its SSE extension, CSS (static/)

The engine and the admin page's sampler are started and stopped in the lifespan; routes get the
ServerState, the History and the PageStreams with `Provide`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from contextlib import asynccontextmanager, suppress

from litestar import Litestar, Response, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.plugins.htmx import HTMXPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig
from swagger_ui_bundle import swagger_ui_path

from inference import AsyncEngine, LLMEngine
from inference.engine_front import EngineFront

from .accounting import AccountingMiddleware
from .assets import asset_dir
from .auth import COOKIE, LoginRequired, PageAuth, api_key_guard, login_required
from .errors import EXCEPTION_HANDLERS
from .history import History
from .pages.admin import AdminController
from .pages.login import LoginController
from .pages.playground import PlaygroundController
from .pages.render import verbatim
from .pages.streams import PageStreams
from .routes.chat import ChatController
from .routes.completions import CompletionsController
from .routes.health import health
from .routes.llamacpp import LlamaCppController
from .routes.loads import loads
from .routes.metrics import metrics
from .routes.models import ModelsController
from .settings import ServerSettings
from .state import ServerState

DOCS_ASSETS = "/docs/assets"
_INLINE_SCRIPT = re.compile(rb"<script[^>]*>(.*?)</script>", re.S)
# Pages run no script but ours (model output is escaped; this is the second line of defence).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


async def _docs_headers(response: Response) -> Response:
    """/docs runs Swagger UI: its assets are ours, its one inline script (the page's set-up, the
    schema in it) is allowed by its hash; nothing may frame the page."""
    page = response.content if isinstance(response.content, bytes) else b""
    inline = [script for script in _INLINE_SCRIPT.findall(page) if script.strip()]
    hashes = "".join(f" 'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in inline)
    response.headers.update({
        "Content-Security-Policy": f"default-src 'self'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; "
                                   "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                                   "base-uri 'none'; form-action 'self'",
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"})
    return response


def _openapi() -> OpenAPIConfig:
    swagger = SwaggerRenderPlugin(path="/", js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                  css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                  standalone_preset_js_url=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
                                  favicon=f"<link rel='icon' type='image/png' href='{DOCS_ASSETS}/favicon-32x32.png'>")
    router = Router("/docs", route_handlers=[], include_in_schema=False, after_request=_docs_headers)
    return OpenAPIConfig(title="codellama-serve", version="1", path="/docs", render_plugins=[swagger],
                         openapi_router=router,
                         description="An OpenAI-compatible (and llama.cpp-compatible) Code Llama server.")


def _templates() -> TemplateConfig:
    def helpers(jinja: JinjaTemplateEngine) -> None:
        jinja.engine.filters["verbatim"] = verbatim
        jinja.register_template_callable("session_active", lambda context: COOKIE in context["request"].cookies)

    return TemplateConfig(directory=asset_dir("templates"), engine=JinjaTemplateEngine, engine_callback=helpers)


def create_app(engine: LLMEngine | EngineFront, settings: ServerSettings | None = None) -> Litestar:
    """The app over an engine: an `LLMEngine` runs on a thread of this process; a server under
    load passes an `EngineProcess`."""
    settings = settings or ServerSettings()
    serving = ServerState(engine if isinstance(engine, EngineFront) else AsyncEngine(engine), settings)
    history = History(serving.front)
    streams = PageStreams()

    @asynccontextmanager
    async def run_engine(_: Litestar):
        await serving.start()
        sampling = asyncio.create_task(history.run(), name="admin-history")
        try:
            yield
        finally:
            sampling.cancel()
            with suppress(asyncio.CancelledError):
                await sampling
            await serving.stop()

    guards = [api_key_guard(settings)] if settings.api_keys else []
    api = Router("/", route_handlers=[ModelsController, CompletionsController, ChatController, LlamaCppController, loads],
                 guards=guards)
    pages = Router("/", route_handlers=[PlaygroundController, AdminController, LoginController],
                   response_headers=PAGE_HEADERS)
    docs_assets = create_static_files_router(DOCS_ASSETS, directories=[swagger_ui_path], include_in_schema=False)
    static = create_static_files_router("/static", directories=[asset_dir("static")], include_in_schema=False)
    return Litestar(
        route_handlers=[api, health, metrics, pages, docs_assets, static],
        dependencies={"serving": Provide(lambda: serving, sync_to_thread=False),
                      "history": Provide(lambda: history, sync_to_thread=False),
                      "streams": Provide(lambda: streams, sync_to_thread=False)},
        lifespan=[run_engine],
        exception_handlers={**EXCEPTION_HANDLERS, LoginRequired: login_required},
        middleware=[AccountingMiddleware(serving.accounting)],
        plugins=[HTMXPlugin()],
        template_config=_templates(),
        openapi_config=_openapi(),
        cors_config=CORSConfig(allow_origins=list(settings.cors_origins)) if settings.cors_origins else None,
        request_max_body_size=settings.max_body_bytes,
        state=State({"serving": serving, "history": history, "streams": streams, "page_auth": PageAuth(settings)}),
    )
