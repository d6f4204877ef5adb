"""`codellama serve [WORKSPACE] [HOST] [PORT]`: the OpenAI-compatible API server.

Host and port may be given positionally, as LMDeploy's api_server takes them, or as --host /
--port. The default 127.0.0.1:23333 serves this machine only; binding every interface
(0.0.0.0) is the user's explicit choice."""

from __future__ import annotations

import argparse

from inference.commands.options import add_engine_options, add_model_identity_options, engine_kwargs

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 23333


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace", nargs="?", metavar="WORKSPACE",
                        help="a workspace or Hugging Face model directory (default: the embedded model)")
    parser.add_argument("host_arg", nargs="?", metavar="HOST", help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("port_arg", nargs="?", type=int, metavar="PORT", help=f"port (default {DEFAULT_PORT})")
    g = parser.add_argument_group("server")
    g.add_argument("--host", help="same as HOST")
    g.add_argument("--port", type=int, help="same as PORT (0: any free port)")
    g.add_argument("--instance-num", dest="max_num_seqs", type=int, metavar="N",
                   help="sequences generated at once (LMDeploy's name for --max-num-seqs; default 32)")
    g.add_argument("--max-queue", type=int, default=256, metavar="N",
                   help="sequences that may wait beyond those; more get 429 (default 256)")
    g.add_argument("--tp", type=int, default=1, metavar="N", help="tensor-parallel GPUs (default 1)")
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
    g.add_argument("--cors-origins", nargs="+", default=[], metavar="ORIGIN",
                   help="origins browsers may call the API from (e.g. http://localhost:3000, or *)")
    g.add_argument("--shutdown-grace", type=float, default=10.0, metavar="SECONDS",
                   help="after SIGINT/SIGTERM, how long in-flight requests may finish (default 10)")
    g.add_argument("--keep-serving-on-engine-failure", action="store_true",
                   help="if the engine dies, keep answering (503) instead of exiting with code 1 for a "
                        "supervisor to restart the server")
    add_model_identity_options(parser)
    add_engine_options(parser)
    parser.set_defaults(max_num_seqs=32, _serve_parser=parser)  # --dp rebuilds each replica's arguments from it


def _pick(name: str, positional, option, default):
    if positional is not None and option is not None and positional != option:
        raise ValueError(f"{name} given twice: {positional} and --{name} {option}")
    return positional if positional is not None else option if option is not None else default


def run(args: argparse.Namespace) -> int:
    host = _pick("host", args.host_arg, args.host, DEFAULT_HOST)
    port = _pick("port", args.port_arg, args.port, DEFAULT_PORT)
    if args.dp < 1:
        raise ValueError(f"--dp must be >= 1, got {args.dp}")
    if args.dp > 1:
        from web.replicas.supervisor import serve_replicas
        return serve_replicas(args._serve_parser, args, host, port)
    if args.router_policy is not None:
        raise ValueError("--router-policy chooses between replicas: give --dp 2 or more")
    from inference import EngineProcess
    from web.app import create_app
    from web.server import serve
    from web.settings import ServerSettings

    settings = ServerSettings(api_keys=tuple(args.api_keys), admin_key=args.admin_key, max_queue=args.max_queue,
                              cors_origins=tuple(args.cors_origins), shutdown_grace=args.shutdown_grace,
                              keep_serving_on_engine_failure=args.keep_serving_on_engine_failure)
    # the engine in a process of its own: HTTP work on this one never slows the GPU's feeding
    engine = EngineProcess(args.workspace, model_name=args.model_name, capabilities=args.capabilities,
                       tensor_parallel_size=args.tp, **engine_kwargs(args))
    return serve(create_app(engine, settings), host, port)
