"""The processes of a replicated server: `codellama serve` replicas on loopback and the gateway
(smg, the SGLang Model Gateway) in front of them.

Each child runs in a session of its own, so a terminal's Ctrl-C reaches only the supervisor,
which then stops the children in order; on Linux a child is also killed should the supervisor
die without stopping it. A child's output is forwarded line by line under its name,
and its last lines are kept for the error that says why it did not start."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from functools import partial

import httpx

from inference.process_guard import die_with_parent

STOP_BACKSTOP = 30.0  # seconds a child may take beyond its grace period before it is killed


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ChildFailed(RuntimeError):
    pass


class Child:
    """One child process: started, forwarded (unless `echo` is off: the tail is kept all the same),
    awaited, stopped."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None, echo: bool = True):
        self.name, self.argv, self.echo = name, argv, echo
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.tail: deque[str] = deque(maxlen=40)
        self.url: str | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace",
                                     start_new_session=True, preexec_fn=partial(die_with_parent, os.getpid()))
        threading.Thread(target=self._forward, name=f"{self.name}-output", daemon=True).start()

    def _forward(self) -> None:
        for line in self.proc.stdout:
            self.tail.append(line)
            self.on_line(line)
            if self.echo:
                sys.stdout.write(f"[{self.name}] {line}")
                sys.stdout.flush()

    def on_line(self, line: str) -> None:
        """What a subclass learns from its child's output."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exit_code(self) -> int | None:
        """None while running."""
        return self.proc.poll()

    def failure(self, why: str) -> ChildFailed:
        return ChildFailed(f"{self.name} {why}; its last lines:\n{''.join(self.tail)}")

    def is_ready(self, http: httpx.Client) -> bool:
        raise NotImplementedError

    def wait_ready(self, timeout: float, give_up: threading.Event | None = None) -> None:
        """Until `is_ready`; a child that exits, takes longer than `timeout`, or is given up on
        (a stop signal during startup) is an error."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5.0) as http:
            while True:
                if self.exit_code() is not None:
                    raise self.failure(f"exited with code {self.exit_code()} before it was ready")
                if give_up is not None and give_up.is_set():
                    raise self.failure("was stopped before it was ready")
                if time.monotonic() > deadline:
                    raise self.failure(f"was not ready after {timeout:.0f} s")
                try:
                    if self.url and self.is_ready(http):
                        return
                except httpx.HTTPError:
                    pass  # not listening yet
                time.sleep(0.2)

    def signal_stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, grace: float) -> int:
        """The exit code, after SIGTERM and `grace` (+ a backstop) seconds at most; then SIGKILL."""
        try:
            return self.proc.wait(timeout=grace + STOP_BACKSTOP)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class Replica(Child):
    """A `codellama serve` child on loopback (port 0: its startup line says which port it got);
    ready once its /health answers 200."""

    _LISTENING = re.compile(r"^codellama serve: .* at (http://\S+)")

    def __init__(self, index: int, serve_args: list[str], devices: str | None, echo: bool = True):
        env = {"CUDA_VISIBLE_DEVICES": devices} if devices is not None else None
        argv = [sys.executable, "-m", "inference.cli", "serve", *serve_args, "--host", "127.0.0.1", "--port", "0"]
        super().__init__(f"replica {index}", argv, env, echo)
        self.devices = devices

    def on_line(self, line: str) -> None:
        found = self._LISTENING.match(line)
        if found and self.url is None:
            self.url = found.group(1)

    def is_ready(self, http: httpx.Client) -> bool:
        return http.get(f"{self.url}/health").status_code == 200


class Gateway(Child):
    """The SGLang Model Gateway (`smg launch`) in front of `worker_urls`; ready once it has
    registered every worker and found each healthy. Its own Prometheus listener goes on a free
    port of the same host.

    cache_aware keeps a request on the replica holding its prefix unless that replica looks
    overloaded. By smg's default a replica with 8 requests waiting is left out; here prompts
    waiting for their chunked prefill are normal (the queue drains in a few steps), so only a
    replica with `max_num_seqs` waiting is (BENCHMARKS.md, "Replicas behind the gateway": at 32
    streams the default undid cache-aware routing)."""

    HEALTH_CHECK_SECONDS = 5  # how often it asks each worker's /health; 2 failures mark one unhealthy

    def __init__(self, worker_urls: list[str], host: str, port: int, policy: str, *, max_num_seqs: int,
                 api_key: str | None = None, shutdown_grace: float = 10.0, cors_origins: tuple[str, ...] = (),
                 name: str = "gateway", echo: bool = True):
        if importlib.util.find_spec("smg") is None:
            raise ValueError("--dp runs the SGLang Model Gateway in front of the replicas: "
                             "pip install 'codellama-serve[cluster]'")
        self.worker_urls, self.policy, self.api_key = worker_urls, policy, api_key
        self.metrics_port = free_port(host)
        argv = [sys.executable, "-m", "smg", "launch", "--worker-urls", *worker_urls, "--policy", policy,
                "--host", host, "--port", str(port), "--prometheus-host", host,
                "--prometheus-port", str(self.metrics_port),
                "--health-check-interval-secs", str(self.HEALTH_CHECK_SECONDS), "--health-failure-threshold", "2",
                "--shutdown-grace-period-secs", str(max(1, round(shutdown_grace))), "--log-level", "warn",
                "--worker-overload-waiting-requests", str(max_num_seqs)]
        if api_key:  # clients must send it, and the gateway sends it to the workers
            argv += ["--api-key", api_key]
        if cors_origins:
            argv += ["--cors-allowed-origins", *cors_origins]
        super().__init__(name, argv, echo=echo)
        reach = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # every interface: this machine's
        reach = f"[{reach}]" if ":" in reach else reach
        self.url = f"http://{reach}:{port}"
        self.metrics_url = f"http://{reach}:{self.metrics_port}/metrics"

    def workers(self, http: httpx.Client) -> list[dict]:
        """The gateway's view of its workers: url, is_healthy, status, load (`GET /workers`)."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        r = http.get(f"{self.url}/workers", headers=headers)
        r.raise_for_status()
        return r.json()["workers"]

    def is_ready(self, http: httpx.Client) -> bool:
        workers = {w["url"]: w["is_healthy"] for w in self.workers(http)}
        return all(workers.get(url) for url in self.worker_urls)
