"""Running the app under uvicorn: the startup banner (with the address actually bound, so port 0
works) and the shutdown sequence. On SIGINT / SIGTERM uvicorn stops accepting connections; the
app then admits nothing new (503) and gives in-flight requests `shutdown_grace` seconds before
ending them cleanly (a stream gets an error event and [DONE]); then the engine stops."""

from __future__ import annotations

import socket

import uvicorn
from litestar import Litestar

from .state import ServerState


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):  # every interface: show the one that works from this machine
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def banner(app: Litestar, url: str) -> str:
    serving: ServerState = app.state.serving
    config = serving.front.info.config
    lines = [f"codellama serve: {serving.model_id} ({', '.join(serving.model_info.capabilities)}; weights "
             f"{config.weights_label}, KV cache {config.kv_cache_label}) at {url}",
             f"  API    {url}/v1  (OpenAI); {url}/infill  (llama.cpp)",
             f"  docs   {url}/docs"]
    if any(route.path == "/" for route in app.routes):
        lines.append(f"  pages  {url}/  (playground); {url}/admin  (operators); {url}/metrics  (Prometheus)")
    return "\n".join(lines)


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.app: Litestar = config.app
        self.url: str | None = None
        self.exit_code = 0
        self.app.state.serving.request_exit = self.request_exit

    def request_exit(self, code: int) -> None:
        """Shut down as after SIGTERM, then exit with `code` (an engine that died: 1)."""
        self.exit_code = code
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.servers:
            self.url = base_url(self.servers[0].sockets[0])
            print(banner(self.app, self.url), flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.app.state.serving.begin_shutdown()
        await super().shutdown(sockets)


def make_server(app: Litestar, host: str, port: int, log_level: str = "info") -> Server:
    grace = app.state.serving.settings.shutdown_grace
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=grace + 5)  # a backstop: the app ends its streams first
    return Server(config)


def serve(app: Litestar, host: str, port: int) -> int:
    server = make_server(app, host, port)
    server.run()
    return server.exit_code if server.started else 1
