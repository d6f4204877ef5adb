"""Streams stay alive and bounded: `: ping` comments while a request waits in the queue (a proxy's
read timeout would cut it otherwise), and a client that reads nothing is dropped and its request
aborted (it would otherwise hold its admission slot and its KV blocks for ever)."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from inference import LLMEngine
from tests.models import tiny_llama
from web.server import bind
from web.settings import ServerSettings

from .conftest import LiveServer, pool_full, wait_for


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = tiny_llama(tmp_path_factory.mktemp("keepalive") / "tiny", max_pos=8192)[0]
    engine = LLMEngine(model, num_kv_blocks=1024, max_model_len=8192, max_num_seqs=1)  # one at a time: others wait
    step = engine.step

    def paced_step():  # 2 ms a token: the first request lasts long enough to queue another behind it
        time.sleep(0.002)
        return step()

    engine.step = paced_step
    sock = bind("127.0.0.1", 0)
    # a small send buffer (accepted sockets inherit it): a client that reads nothing blocks the
    # server's sends after tens of kilobytes, not after the megabytes Linux would otherwise buffer
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    server = LiveServer(engine, ServerSettings(sse_ping=0.2, sse_send_timeout=1.0), sock).start()
    yield server
    server.stop()


def _long_request(max_tokens: int) -> bytes:
    return json.dumps({"prompt": "import os", "max_tokens": max_tokens, "ignore_eos": True, "stream": True,
                       "logprobs": 5}).encode()  # about 1 kB an event


def test_a_queued_stream_gets_pings_until_its_first_token(server):
    with httpx.Client(base_url=server.url, timeout=60) as http, \
            http.stream("POST", "/v1/completions", content=_long_request(1500),
                        headers={"content-type": "application/json"}) as first:
        first_lines = first.iter_lines()
        next(first_lines)  # the first stream holds the engine's one sequence (kept open: its iterator is kept)
        with http.stream("POST", "/v1/completions", json={"prompt": "x", "max_tokens": 2, "stream": True}) as queued:
            lines = []
            for line in queued.iter_lines():
                lines.append(line)
                if line.startswith("data:"):
                    break
    pings = [line for line in lines if line == ": ping"]
    assert pings and lines[-1].startswith("data: {"), lines  # pinged while waiting, then its answer
    assert wait_for(lambda: pool_full(server.engine))


def test_a_client_that_reads_nothing_is_dropped_and_its_request_aborted(server):
    serving = server.serving
    ended_early = sum(serving.accounting.ended_early.values())
    host, port = server.url.removeprefix("http://").split(":")
    body = _long_request(7000)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a few kilobytes
    try:
        sock.connect((host, int(port)))
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n" % len(body) + body)
        assert wait_for(lambda: serving.admission.in_flight == 1)
        # never read: once the buffers are full a send waits, and after the timeout the server gives up
        assert wait_for(lambda: serving.admission.in_flight == 0, timeout=60)
        assert wait_for(lambda: pool_full(server.engine))
        assert sum(serving.accounting.ended_early.values()) == ended_early + 1  # cut short, not finished
    finally:
        sock.close()
