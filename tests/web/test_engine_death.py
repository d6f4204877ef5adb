"""An engine process that dies is loud: the server logs it, zeroes the engine's gauges, and by
default exits with code 1 so that a supervisor restarts it; `--keep-serving-on-engine-failure`
keeps it answering 503 instead."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from .conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def engine_pid(server_pid: int) -> int:
    """The server's child that runs the engine (not multiprocessing's resource tracker)."""
    for pid in children(server_pid):
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    raise AssertionError("no engine process")


def start_serve(model: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "inference.cli", "serve", str(model), "127.0.0.1", "0",
                             "--num-kv-blocks", "64", "--max-model-len", "256", *flags],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if found := re.search(r" at (http://127\.0\.0\.1:\d+)", line):
            return proc, found.group(1)
    raise AssertionError(f"the server did not start (code {proc.wait()})")


def test_the_server_exits_with_code_1_when_its_engine_dies(random_model):
    proc, url = start_serve(random_model)
    try:
        assert httpx.get(url + "/health").status_code == 200
        os.kill(engine_pid(proc.pid), signal.SIGKILL)
        assert proc.wait(timeout=60) == 1
        log = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert re.search(r"engine process exited \(code -9\); 0 requests end with an error", log), log
    assert "Traceback" not in log


def test_keep_serving_answers_503_with_idle_gauges(random_model):
    proc, url = start_serve(random_model, "--keep-serving-on-engine-failure")
    try:
        with httpx.Client(base_url=url) as http:
            assert http.post("/v1/completions", json={"prompt": "x = 1", "max_tokens": 4}).status_code == 200
            os.kill(engine_pid(proc.pid), signal.SIGKILL)
            assert wait_for(lambda: http.get("/health").status_code == 503)
            assert "engine process exited" in http.get("/health").json()["reason"]
            r = http.post("/v1/completions", json={"prompt": "x = 1", "max_tokens": 4})
            assert r.status_code == 503 and r.json()["error"]["code"] == "engine_unavailable"
            metrics = http.get("/metrics").text
            assert re.search(r"^codellama:kv_cache_usage_perc 0\.0$", metrics, re.M)
            assert re.search(r"^codellama:num_requests_running 0\.0$", metrics, re.M)
            generated = re.search(r"^codellama:generation_tokens_total (\S+)$", metrics, re.M).group(1)
            assert float(generated) >= 4  # counters keep their totals
        assert proc.poll() is None  # still serving
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)  # (uvicorn re-raises the signal it handled)
    finally:
        if proc.poll() is None:
            proc.kill()
