"""The OpenAPI document at /docs/openapi.json is true: real answers of every route, success,
each error status and a stream's events, validate against it (see openapi_check.py)."""

from __future__ import annotations

import httpx
import pytest

from inference import LLMEngine
from web.settings import ServerSettings

from .conftest import LiveServer
from .openapi_check import Document

CHAT = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def http(scripted_server):
    with httpx.Client(base_url=scripted_server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def document(scripted_server) -> Document:
    return Document(scripted_server.url)


@pytest.mark.parametrize("route,body", [
    ("/v1/completions", {"prompt": "def add(a, b):", "max_tokens": 4, "logprobs": 2, "echo": True}),
    ("/v1/completions", {"prompt": ["a", "b"], "max_tokens": 2, "n": 2, "stream": True,
                         "stream_options": {"include_usage": True}, "logprobs": 1}),
    ("/v1/completions", {"prompt": "x = ", "suffix": "\nprint(x)", "max_tokens": 4}),
    ("/v1/chat/completions", {"messages": CHAT, "max_tokens": 4, "logprobs": True, "top_logprobs": 2}),
    ("/v1/chat/completions", {"messages": CHAT, "max_tokens": 4, "stream": True, "logprobs": True,
                              "stream_options": {"include_usage": True}}),
    ("/infill", {"input_prefix": "def f(x):\n", "input_suffix": "\n", "n_predict": 4}),
    ("/infill", {"input_prefix": "def f(x):\n", "input_suffix": "\n", "n_predict": 4, "stream": True}),
    ("/tokenize", {"content": "中 def", "with_pieces": True, "add_special": True}),
    ("/detokenize", {"tokens": [1, 100, 200]}),
])
def test_answers_validate(http, document, route, body):
    r = http.post(route, json=body)
    assert r.status_code == 200, r.text
    assert document.check(route, r)


def test_the_request_examples_are_accepted(http, document):
    for route, item in document.spec["paths"].items():
        operation = item.get("post")
        if operation and "requestBody" in operation:
            example = operation["requestBody"]["content"]["application/json"]["example"]
            r = http.post(route, json={**example, **({"max_tokens": 2} if "max_tokens" in example else {}),
                                       **({"n_predict": 2} if "n_predict" in example else {})})
            assert r.status_code == 200, (route, r.text)
            document.check(route, r)


def test_reads_and_errors_validate(http, document):
    for route, path in (("/v1/models", "/v1/models"), ("/v1/models/{model}", "/v1/models/nope"),
                        ("/health", "/health"), ("/metrics", "/metrics")):
        document.check(route, http.get(path))
    for route, body in (("/v1/completions", {"prompt": "x", "max_tokens": "5"}),
                        ("/v1/completions", {"prompt": "x", "model": "gpt-4o"}),
                        ("/v1/completions", {"prompt": "x", "stop": ["a"] * 5}),
                        ("/v1/chat/completions", {"messages": CHAT, "tools": [{"type": "function"}]}),
                        ("/infill", {"input_prefix": "x", "seed": 2 ** 64}),
                        ("/tokenize", {"content": 3}), ("/detokenize", {"tokens": [10 ** 9]})):
        r = http.post(route, json=body)
        assert r.status_code in (400, 404) and document.check(route, r)[0]["error"]["message"]
    r = http.post("/v1/completions", content=b"{" * 10, headers={"content-type": "application/json"})
    assert r.status_code == 400 and document.check("/v1/completions", r)


def test_auth_overload_size_and_shutdown_errors_validate(script_model):
    engine = LLMEngine(script_model[1], num_kv_blocks=64, max_model_len=512, max_num_seqs=1,
                       capabilities=["completion", "infilling", "chat"])
    server = LiveServer(engine, ServerSettings(api_keys=("k",), max_queue=0, max_body_bytes=4096)).start()
    try:
        document = Document(server.url)
        with httpx.Client(base_url=server.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
            document.check("/v1/models", httpx.get(server.url + "/v1/models"))  # 401
            document.check("/v1/completions", http.post("/v1/completions", json={"prompt": "x" * 5000}))  # 413
            body = {"prompt": "import os", "max_tokens": 400, "ignore_eos": True, "stream": True}
            with http.stream("POST", "/v1/completions", json=body) as running:
                assert running.status_code == 200
                for route, request in (("/v1/completions", {"prompt": "x"}), ("/v1/chat/completions",
                                                                                {"messages": CHAT}),
                                       ("/infill", {"input_prefix": "x"})):
                    r = http.post(route, json=request)
                    assert r.status_code == 429 and document.check(route, r)
            server.serving.admission.closed = True  # what shutdown's first step does
            r = http.post("/v1/completions", json={"prompt": "x"})
            assert r.status_code == 503 and document.check("/v1/completions", r)
            r = http.get("/health")
            assert r.status_code == 503 and document.check("/health", r)
    finally:
        server.stop()
