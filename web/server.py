"""Running the app under uvicorn: the listening socket (taken before the model loads, so that a
port in use is said at once), the startup banner (with the address actually bound, so port 0
works) and the shutdown sequence. On SIGINT / SIGTERM uvicorn stops accepting connections; the
app then admits nothing new (503) and gives in-flight requests `shutdown_grace` seconds before
ending them cleanly (a stream gets an error event and [DONE]); then the engine stops. Both steps
are announced on stdout."""

from __future__ import annotations

import errno
import socket

import uvicorn
from litestar import Litestar

from .state import ServerState


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (uvicorn listens on it once the model has loaded); the usual
    failures as one clear ValueError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ValueError(f"port {port} on {host} is already in use (another server?): stop it, or choose "
                             f"another port (--port N; 0 picks a free one)") from None
        if e.errno == errno.EACCES:
            raise ValueError(f"no permission to bind port {port} on {host}: ports below 1024 need root; "
                             f"choose --port 1024 or above") from None
        raise ValueError(f"cannot bind {host}:{port}: {e.strerror} (is {host} an address of this machine?)") from None
    except socket.gaierror as e:
        sock.close()
        raise ValueError(f"cannot bind {host}:{port}: {e.strerror}") from None
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):  # every interface: show the one that works from this machine
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def banner(app: Litestar, url: str) -> str:
    serving: ServerState = app.state.serving
    config = serving.front.info.config
    lines = [f"codellama serve: {serving.model_id} ({', '.join(serving.model_info.capabilities)}; weights "
             f"{config.weights_label}, KV cache {config.kv_cache_label}, speculation {config.speculate}) at {url}",
             f"  API    {url}/v1  (OpenAI); {url}/infill  (llama.cpp)",
             f"  docs   {url}/docs"]
    if any(route.path == "/" for route in app.routes):
        lines.append(f"  pages  {url}/  (playground); {url}/admin  (operators); {url}/metrics  (Prometheus)")
    return "\n".join(lines)


def _requests(n: int) -> str:
    return f"{n} request{'' if n == 1 else 's'}"


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, playground_first: bool = False):
        super().__init__(config)
        self.app: Litestar = config.app
        self.url: str | None = None
        self.playground_first = playground_first  # `serve gradio`: the playground is what was asked for
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
            if self.playground_first:
                print(f"codellama serve: the playground (LMDeploy's gradio UI) is at {self.url}/", flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        serving: ServerState = self.app.state.serving
        in_flight, grace = len(serving.generations), serving.settings.shutdown_grace
        cut_before = serving.accounting.ended_early["shutting_down"]
        print("codellama serve: shutting down: " + (f"waiting up to {grace:g} s for {_requests(in_flight)}"
                                                    if in_flight else "no requests in flight"), flush=True)
        serving.begin_shutdown()
        await super().shutdown(sockets)
        cut = serving.accounting.ended_early["shutting_down"] - cut_before
        print("codellama serve: stopped" + (f" ({_requests(cut)} cut off after {grace:g} s)" if cut else ""),
              flush=True)


def make_server(app: Litestar, host: str, port: int, log_level: str = "info", playground_first: bool = False) -> Server:
    grace = app.state.serving.settings.shutdown_grace
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=grace + 5)  # a backstop: the app ends its streams first
    return Server(config, playground_first)


def serve(app: Litestar, sock: socket.socket, playground_first: bool = False) -> int:
    host, port = sock.getsockname()[:2]
    server = make_server(app, host, port, playground_first=playground_first)
    server.run(sockets=[sock])
    return server.exit_code if server.started else 1
