"""A very long text is refused before it is tokenized when it cannot fit the context window, and
tokenizing never stalls the server: other requests are answered meanwhile."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from inference import LLMEngine

from .conftest import LiveServer

BIG = "def f(x):\n    return x + 1\n" * 220_000  # about 6 MB


@pytest.fixture(scope="module")
def server(random_model):
    server = LiveServer(LLMEngine(random_model, num_kv_blocks=64, max_model_len=1024,
                                  capabilities=["completion", "infilling", "chat"])).start()
    yield server
    server.stop()


@pytest.mark.parametrize("route,body", [
    ("/v1/completions", {"prompt": BIG, "max_tokens": 4}),
    ("/v1/completions", {"prompt": "def f():", "suffix": BIG, "max_tokens": 4}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": BIG}], "max_tokens": 4}),
    ("/infill", {"input_prefix": BIG, "input_suffix": "", "n_predict": 4}),
])
def test_a_text_too_long_for_the_window_is_refused_untokenized(server, route, body):
    r = httpx.post(server.url + route, json=body, timeout=60)
    assert r.status_code == 400
    message = r.json()["error"]["message"] if "error" in r.json() else r.text
    assert "at least" in message and "the context window is 1024 tokens" in message


def test_tokenizing_a_long_text_leaves_the_server_answering(server):
    answered_at: list[float] = []  # when the tokenized text's response began

    def tokenize() -> None:
        with httpx.stream("POST", server.url + "/tokenize", json={"content": BIG}, timeout=120) as r:
            answered_at.append(time.monotonic())
            assert r.status_code == 200 and len(json.loads(r.read())["tokens"]) > 100_000

    worker = threading.Thread(target=tokenize)
    worker.start()
    time.sleep(1)  # the text is uploaded and being tokenized (that takes seconds)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        answers = [http.get("/health").status_code for _ in range(3)]
        short = http.post("/v1/completions", json={"prompt": "x = 1", "max_tokens": 4})
        others_done_at = time.monotonic()
    worker.join()
    assert answers == [200] * 3 and short.status_code == 200
    assert others_done_at < answered_at[0]  # answered while the long text was still being tokenized
