"""`codellama serve [WORKSPACE] [HOST] [PORT]`: the OpenAI-compatible API server and its pages.

Host and port may be given positionally, as LMDeploy's api_server takes them (also without a
workspace: `serve 127.0.0.1 24200`), or as --host / --port (LMDeploy's --server-name /
--server-port). The default 127.0.0.1:23333 serves this machine only; binding every interface
(0.0.0.0) is the user's explicit choice. `serve gradio WORKSPACE` (LMDeploy's web UI) starts
the same server and points at its playground; `serve gradio URL` points at a running one's."""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from pathlib import Path

from inference.commands.options import (add_engine_options, add_model_identity_options, engine_cpu_threads,
                                        engine_kwargs)

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 23333


def register(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("LMDeploy's spellings work too: serve api_server WORKSPACE [HOST PORT] --instance_num N --tp N; "
                     "serve gradio WORKSPACE|URL; serve api_client URL (= codellama client URL).")
    parser.add_argument("workspace", nargs="?", metavar="WORKSPACE",
                        help="a workspace or Hugging Face model directory (default: the embedded model)")
    parser.add_argument("host_arg", nargs="?", metavar="HOST", help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("port_arg", nargs="?", metavar="PORT", help=f"port (default {DEFAULT_PORT})")
    g = parser.add_argument_group("server")
    g.add_argument("--host", "--server-name", help="same as HOST")
    g.add_argument("--port", "--server-port", type=int, help="same as PORT (0: any free port)")
    g.add_argument("--max-queue", type=int, default=256, metavar="N",
                   help="sequences that may wait beyond --instance-num; more get 429 (default 256)")
    g.add_argument("--dp", type=int, default=1, metavar="N",
                   help="data parallelism: N replicas (each on --tp GPUs of its own) behind the SGLang Model "
                        "Gateway on HOST:PORT (default 1: one server, no gateway)")
    g.add_argument("--router-policy", choices=["cache_aware", "round_robin"],
                   help="--dp: how the gateway picks a replica (default cache_aware: the one holding the "
                        "longest prefix of the prompt, unless the load is uneven)")
    g.add_argument("--api-keys", nargs="+", default=[], metavar="KEY",
                   help="accept only requests with `Authorization: Bearer KEY` (the pages ask for one once)")
    g.add_argument("--admin-key", metavar="KEY",
                   help="the key for /admin and /metrics (default: the first API key; without keys they are open)")
    g.add_argument("--cors-origins", "--allow-origins", nargs="+", default=[], metavar="ORIGIN",
                   help="origins browsers may call the API from (e.g. http://localhost:3000, or *)")
    g.add_argument("--shutdown-grace", type=float, default=10.0, metavar="SECONDS",
                   help="after SIGINT/SIGTERM, how long in-flight requests may finish (default 10)")
    g.add_argument("--keep-serving-on-engine-failure", action="store_true",
                   help="if the engine dies, keep answering (503) instead of exiting with code 1 for a "
                        "supervisor to restart the server")
    g.add_argument("--sse-ping", type=float, default=15.0, metavar="SECONDS",
                   help="a keep-alive comment on a stream that has sent nothing for this long (default 15; 0: none)")
    g.add_argument("--sse-send-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="drop a client that takes no stream data for this long (default 30; 0: never)")
    g.add_argument("--gradio", action="store_true", help=argparse.SUPPRESS)  # `serve gradio`
    add_model_identity_options(parser)
    add_engine_options(parser, max_num_seqs=32, max_num_seqs_names=("--instance-num", "--max-num-seqs", "--max-batch-size"),
                       max_num_seqs_help="sequences generated at once (LMDeploy's --instance_num; the engine's "
                                         "--max-num-seqs)")
    parser.set_defaults(_serve_parser=parser)  # --dp rebuilds each replica's arguments from it


def _pick(name: str, positional, option, default):
    if positional is not None and option is not None and positional != option:
        raise ValueError(f"{name} given twice: {positional} and --{name} {option}")
    return positional if positional is not None else option if option is not None else default


def _is_host(text: str) -> bool:
    if text == "localhost":
        return True
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_url(text: str) -> bool:
    return "://" in text or (not Path(text).exists() and re.fullmatch(r"[\w.-]+:\d+", text) is not None)


def where(args: argparse.Namespace) -> tuple[str | None, str, int]:
    """(workspace, host, port) from up to three positionals: a trailing number is the port, and a
    first one that is an IP address or localhost (and no directory) is the host."""
    given = [a for a in (args.workspace, args.host_arg, args.port_arg) if a is not None]
    port = int(given.pop()) if given and given[-1].isdigit() else None
    workspace = given.pop(0) if given and not (_is_host(given[0]) and not Path(given[0]).is_dir()) else None
    if len(given) > 1:
        raise ValueError(f"expected [WORKSPACE] [HOST] [PORT], got {' '.join(given)} after the workspace; "
                         f"the port is a number")
    host = given[0] if given else None
    return workspace, _pick("host", host, args.host, DEFAULT_HOST), _pick("port", port, args.port, DEFAULT_PORT)


def run(args: argparse.Namespace) -> int:
    if args.gradio and args.workspace and _is_url(args.workspace):
        return _point_at_playground(args.workspace)
    workspace, host, port = where(args)
    kwargs = engine_kwargs(args, workspace)  # --tp checked against the workspace before anything starts
    if args.dp < 1:
        raise ValueError(f"--dp must be >= 1, got {args.dp}")
    if args.dp > 1:
        from web.replicas.supervisor import serve_replicas

        args.workspace, args.tp = workspace, kwargs["tensor_parallel_size"]
        return serve_replicas(args._serve_parser, args, host, port)
    if args.router_policy is not None:
        raise ValueError("--router-policy chooses between replicas: give --dp 2 or more")
    from web.server import bind, serve

    sock = bind(host, port)  # a port in use is said now, not after loading the model
    threads = engine_cpu_threads(args)
    if threads is not None:
        # the engine process reads it as it starts (spawned: torch is imported afresh there); this
        # process only does HTTP work and tokenizing, so its own torch keeps one thread
        os.environ["OMP_NUM_THREADS"] = str(threads)
    from inference import EngineProcess
    from inference.commands.options import use_cpu_threads
    from web.app import create_app
    from web.settings import ServerSettings

    use_cpu_threads(1 if threads is not None else None)
    settings = ServerSettings(api_keys=tuple(args.api_keys), admin_key=args.admin_key, max_queue=args.max_queue,
                              cors_origins=tuple(args.cors_origins), shutdown_grace=args.shutdown_grace,
                              keep_serving_on_engine_failure=args.keep_serving_on_engine_failure,
                              sse_ping=args.sse_ping, sse_send_timeout=args.sse_send_timeout)
    # the engine in a process of its own: HTTP work on this one never slows the GPU's feeding
    engine = EngineProcess(workspace, model_name=args.model_name, capabilities=args.capabilities, **kwargs)
    return serve(create_app(engine, settings), sock, playground_first=args.gradio)


def _point_at_playground(url: str) -> int:
    """`serve gradio URL`: LMDeploy starts a web UI for a running api_server; here the server
    serves its own playground, so there is nothing to start."""
    import httpx

    base = url.rstrip("/") if "://" in url else f"http://{url.rstrip('/')}"
    try:
        httpx.get(f"{base}/health", timeout=5)
    except httpx.HTTPError as e:
        raise ValueError(f"cannot reach a server at {url}: {e}") from None
    print(f"the playground (LMDeploy's gradio UI) is served by the API server itself: {base}/")
    return 0
