"""`codellama serve --dp N`: N replicas and the gateway in front of them, started, watched and
stopped together.

    start  the replicas, each a `codellama serve` on loopback with its own GPUs -> each /health 200
           then the gateway on the public host and port  -> it has found every replica healthy
    watch  a replica that exits is reported (the gateway routes around it); the gateway's exit,
           or every replica's, stops the rest
    stop   SIGINT / SIGTERM (Ctrl-C): the gateway first (in-flight requests get the grace period),
           then the replicas (each with the grace period); a child past its backstop is killed"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version

from .children import ChildFailed, Gateway, Replica, free_port
from .plan import gateway_key, replica_argv, replica_devices

REPLICA_START_SECONDS = 3600.0  # loading a large checkpoint from a slow disk takes long
GATEWAY_START_SECONDS = 120.0


@dataclass
class Cluster:
    replicas: list[Replica]
    gateway: Gateway | None = None
    reported: set[int] = field(default_factory=set)  # indexes of replicas whose exit was reported

    def start(self, make_gateway: Callable[[list[str]], Gateway], give_up: threading.Event) -> None:
        for replica in self.replicas:  # all load at once
            replica.start()
        for replica in self.replicas:
            replica.wait_ready(REPLICA_START_SECONDS, give_up)
        self.gateway = make_gateway([r.url for r in self.replicas])
        self.gateway.start()
        self.gateway.wait_ready(GATEWAY_START_SECONDS, give_up)

    def stop(self, grace: float) -> None:
        if self.gateway is not None and self.gateway.proc is not None:
            self.gateway.signal_stop()
            self.gateway.wait_stopped(grace)
        started = [r for r in self.replicas if r.proc is not None]
        for replica in started:
            replica.signal_stop()
        for replica in started:
            replica.wait_stopped(grace)

    def check(self) -> str | None:
        """Report replicas that exited since the last call; why the server must stop, if it must."""
        if self.gateway.exit_code() is not None:
            return f"the gateway exited with code {self.gateway.exit_code()}"
        for i, replica in enumerate(self.replicas):
            if i not in self.reported and replica.exit_code() is not None:
                self.reported.add(i)
                print(f"codellama serve: {replica.name} ({replica.url}, pid {replica.pid}) exited with code "
                      f"{replica.exit_code()}; the gateway sends requests to the others", file=sys.stderr, flush=True)
        if len(self.reported) == len(self.replicas):
            return "every replica has exited"
        return None

    def banner(self) -> str:
        gateway = self.gateway
        lines = [f"codellama serve --dp {len(self.replicas)}: gateway (smg {version('smg')}, {gateway.policy}) "
                 f"at {gateway.url}",
                 f"  API      {gateway.url}/v1  (OpenAI)",
                 f"  gateway  {gateway.url}/workers  (replicas seen by the gateway); {gateway.metrics_url}  "
                 f"(pid {gateway.pid})"]
        for i, replica in enumerate(self.replicas):
            where = f"GPU {replica.devices}" if replica.devices is not None else "CPU"
            lines.append(f"  replica {i}  {replica.url}  ({where}, pid {replica.pid}; its /metrics, pages, /infill)")
        return "\n".join(lines)


def serve_replicas(parser: argparse.ArgumentParser, args: argparse.Namespace, host: str, port: int) -> int:
    import torch

    devices = replica_devices(args.dp, args.tp, args.device, torch.cuda.is_available())
    key = gateway_key(args.api_keys)
    serve_args = replica_argv(parser, args)
    port = port or free_port(host)  # the gateway takes no port 0

    def make_gateway(urls: list[str]) -> Gateway:
        return Gateway(urls, host, port, args.router_policy or "cache_aware", max_num_seqs=args.max_num_seqs,
                       api_key=key, shutdown_grace=args.shutdown_grace, cors_origins=tuple(args.cors_origins))

    cluster = Cluster([Replica(i, serve_args, d) for i, d in enumerate(devices)])
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        cluster.start(make_gateway, give_up=stop)
        print(cluster.banner(), flush=True)
        why = None
        while why is None and not stop.wait(0.5):
            why = cluster.check()
        if why is not None:
            print(f"codellama serve: {why}; stopping", file=sys.stderr, flush=True)
        return 1 if why else 0
    except ChildFailed as e:
        if stop.is_set():
            return 0
        print(f"codellama serve: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        cluster.stop(args.shutdown_grace)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
