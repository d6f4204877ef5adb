"""Soak test, run by hand: starts `codellama serve` (the embedded model unless a workspace is
given), drives it with N clients for T minutes over every generating route (whole and streamed,
some clients leaving mid-stream), samples the resident memory of the server's process and of its
engine process, and prints per minute: requests, errors, p50 / p99 latency, and both RSS.

    python scripts/soak.py --clients 16 --minutes 10 [--workspace DIR] [-- extra serve flags]

Only 127.0.0.1 is used. The last result is recorded in BENCHMARKS.md."""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx

# Run from the repository root (python scripts/soak.py): the server is started as `codellama serve`.

CHAT = [{"role": "user", "content": "Write a function that reverses a list"}]
REQUESTS = [
    ("/v1/completions", {"prompt": "def fib(n):", "max_tokens": 64}),
    ("/v1/completions", {"prompt": "import os\n", "max_tokens": 64, "stream": True}),
    ("/v1/completions", {"prompt": "def f(x):\n    ", "suffix": "\n    return y\n", "max_tokens": 32}),
    ("/v1/chat/completions", {"messages": CHAT, "max_tokens": 64, "stream": True}),
    ("/infill", {"input_prefix": "def add(a, b):\n    ", "input_suffix": "\n", "n_predict": 32, "stream": True}),
    ("/tokenize", {"content": "def fib(n):\n    return n"}),
]


def rss_mib(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def start_server(workspace: str | None, extra: list[str], log: Path,
                 cwd: str | None = None) -> tuple[subprocess.Popen, str]:
    """`codellama serve` on a free port of 127.0.0.1, its output in `log`; returns it and its URL.
    `cwd`: the source tree to run it from (default: this one)."""
    command = [sys.executable, "-m", "inference.cli", "serve", *([workspace] if workspace else []),
               "--host", "127.0.0.1", "--port", "0", *extra]
    server = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=cwd)
    while server.poll() is None:
        match = re.search(r" at (http://\S+)$", log.read_text(), re.M)
        if match:
            return server, match.group(1)
        time.sleep(0.5)
    raise SystemExit(f"the server did not start (exit code {server.returncode}); see {log}")


def requests_for(url: str) -> list[tuple[str, dict]]:
    """The requests the served model can answer (by its abilities)."""
    abilities = set(httpx.get(url + "/v1/models", timeout=30).json()["data"][0]["capabilities"])

    def ability(path: str, body: dict) -> str:
        if path in ("/v1/chat/completions", "/infill"):
            return "chat" if path.endswith("completions") else "infilling"
        return "infilling" if "suffix" in body else "completion"

    return [(path, body) for path, body in REQUESTS if ability(path, body) in abilities]


class Tally:
    def __init__(self, start: float):
        self.start = start
        self.latencies: dict[int, list[float]] = defaultdict(list)
        self.statuses: dict[int, Counter] = defaultdict(Counter)
        self.rss: dict[int, list[tuple[float, float]]] = defaultdict(list)

    def minute(self) -> int:
        return int((time.monotonic() - self.start) // 60)

    def record(self, status: int | str, seconds: float) -> None:
        minute = self.minute()
        self.statuses[minute][status] += 1
        if status == 200:
            self.latencies[minute].append(seconds)


async def client(http: httpx.AsyncClient, requests: list, rng: random.Random, tally: Tally, until: float) -> None:
    while time.monotonic() < until:
        path, body = rng.choice(requests)
        leave_early = body.get("stream") and rng.random() < 0.1
        began = time.monotonic()
        try:
            async with http.stream("POST", path, json=body) as r:
                async for line in r.aiter_lines():
                    if leave_early and line.startswith("data: "):
                        break
                tally.record("left" if leave_early else r.status_code, time.monotonic() - began)
        except httpx.HTTPError as e:
            tally.record(type(e).__name__, time.monotonic() - began)


async def sample_rss(server_pid: int, tally: Tally, until: float) -> None:
    while time.monotonic() < until:
        engine = sum(rss_mib(pid) for pid in children(server_pid))
        tally.rss[tally.minute()].append((rss_mib(server_pid), engine))
        await asyncio.sleep(5)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _peak(samples: list[tuple[float, float]] | None, which: int) -> str:
    return f"{max(s[which] for s in samples):.0f}" if samples else "-"  # the last minute's stragglers: none


def report(tally: Tally, clients: int) -> str:
    rows = [f"soak: {clients} clients; latency of whole answers (streams: to their last event)", "",
            "| minute | requests | errors | left early | p50 s | p99 s | server RSS MiB | engine RSS MiB |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for minute in sorted(tally.statuses):
        counts, rss = tally.statuses[minute], tally.rss.get(minute)
        errors = sum(n for status, n in counts.items() if status not in (200, "left"))
        lat = tally.latencies[minute]
        rows.append(f"| {minute + 1} | {sum(counts.values())} | {errors} | {counts['left']} | {quantile(lat, 0.5):.3f} "
                    f"| {quantile(lat, 0.99):.3f} | {_peak(rss, 0)} | {_peak(rss, 1)} |")
    other = Counter()
    for counts in tally.statuses.values():
        other.update({k: v for k, v in counts.items() if k not in (200, "left")})
    rows += ["", f"errors by kind: {dict(other) or 'none'}"]
    return "\n".join(rows)


async def soak(url: str, server_pid: int, clients: int, minutes: float, seed: int) -> Tally:
    tally = Tally(time.monotonic())
    until = tally.start + 60 * minutes
    rng, requests = random.Random(seed), requests_for(url)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)) as http:
        await asyncio.gather(sample_rss(server_pid, tally, until),
                             *(client(http, requests, random.Random(rng.random()), tally, until)
                               for _ in range(clients)))
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workspace", help="a model directory or workspace (default: the embedded model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("serve_flags", nargs="*", help="after --: more `codellama serve` flags")
    args = parser.parse_args()
    log = Path(tempfile.mkdtemp(prefix="soak-")) / "server.log"
    server, url = start_server(args.workspace, args.serve_flags, log)
    try:
        tally = asyncio.run(soak(url, server.pid, args.clients, args.minutes, args.seed))
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    print(report(tally, args.clients))
    print(f"server log: {log}")


if __name__ == "__main__":
    main()
