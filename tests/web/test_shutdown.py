"""Shutdown: nothing new is admitted, in-flight streams finish (or end cleanly after the grace
period), the engine stops, the process exits."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient

from inference import LLMEngine
from web.app import create_app
from web.settings import ServerSettings

from .conftest import LiveServer, pool_full, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _stream_in_background(url: str, max_tokens: int) -> tuple[threading.Thread, list[str]]:
    events: list[str] = []

    def run() -> None:
        body = {"prompt": "import os", "max_tokens": max_tokens, "ignore_eos": True, "stream": True}
        with httpx.Client(base_url=url, timeout=60) as http, http.stream("POST", "/v1/completions", json=body) as r:
            events.extend(line[6:] for line in r.iter_lines() if line.startswith("data: "))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, events


def _engine(model) -> LLMEngine:
    return LLMEngine(model, num_kv_blocks=256, max_model_len=1024)


def _shut_down_mid_stream(model, grace: float, max_tokens: int) -> tuple[LiveServer, list[str]]:
    """A server shut down while one stream runs; the events that stream received."""
    server = LiveServer(_engine(model), ServerSettings(shutdown_grace=grace)).start()
    thread, events = _stream_in_background(server.url, max_tokens)
    assert wait_for(lambda: server.engine.requests)
    server.stop()
    thread.join(timeout=30)
    return server, events


def test_in_flight_streams_finish_during_the_grace_period(random_model):
    _, events = _shut_down_mid_stream(random_model, grace=30, max_tokens=60)
    assert events[-1] == "[DONE]" and json.loads(events[-2])["choices"][0]["finish_reason"] == "length"


def test_streams_still_running_after_the_grace_period_end_with_an_error_event(random_model):
    server, events = _shut_down_mid_stream(random_model, grace=0.2, max_tokens=1000)
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "shutting_down" and "shutting down" in error["message"]
    assert pool_full(server.engine)


async def test_requests_after_shutdown_began_get_503(random_model):
    app = create_app(_engine(random_model))
    async with AsyncTestClient(app) as client:  # in-process: uvicorn would have closed the socket already
        assert (await client.get("/health")).status_code == 200
        app.state.serving.begin_shutdown()
        r = await client.post("/v1/completions", json={"prompt": "x"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "shutting_down"
        assert (await client.get("/health")).status_code == 503


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_a_signal_stops_the_serve_command_after_its_streams(random_model, how):
    """SIGTERM goes to the server process; Ctrl-C in a terminal, SIGINT, to its whole process group
    (the engine's process too, which leaves stopping to the server)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "inference.cli", "serve", str(random_model), "127.0.0.1", "0",
                             "--num-kv-blocks", "128", "--max-model-len", "1024", "--shutdown-grace", "30"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        banner = []
        for line in proc.stdout:
            banner.append(line)
            if "docs" in line:
                break
        url = re.search(r"at (http://127\.0\.0\.1:\d+)", "".join(banner)).group(1)
        assert f"docs   {url}/docs" in "".join(banner)
        thread, events = _stream_in_background(url, 1000)  # long enough to be running when a loaded machine signals
        with httpx.Client(base_url=url) as http:  # the stream is running once the server counts it
            assert wait_for(lambda: http.get("/health").json()["sequences_in_flight"] == 1)
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        thread.join(timeout=60)
        assert proc.wait(timeout=60) in (0, 130, -signal.SIGTERM)
        log = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in log, log
    assert "codellama serve: shutting down: waiting up to 30 s for 1 request\n" in log, log  # said, then done
    assert log.index("Application shutdown complete") < log.index("codellama serve: stopped\n"), log  # engine stopped
    assert events[-1] == "[DONE]" and json.loads(events[-2])["choices"][0]["finish_reason"] == "length"
    assert "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1])
