"""Every error path answers with OpenAI's error object and the right status, and disturbs no
other request."""

from __future__ import annotations

import json
import logging
import threading

import httpx
import openai
import pytest

from inference import LLMEngine
from web.settings import ServerSettings

from .conftest import LiveServer, pool_full, wait_for


@pytest.fixture(scope="module")
def http(random_server):
    with httpx.Client(base_url=random_server.url, timeout=30) as client:
        yield client


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_oversized_body_is_413(http):
    prompt = "x" * (1 << 20)  # the test server takes 1 MiB bodies at most
    assert "too large" in _error(http.post("/v1/completions", json={"prompt": prompt}), 413)["message"].lower()


def test_malformed_json_and_missing_body_are_400(http):
    err = _error(http.post("/v1/completions", content=b'{"prompt": "x",', headers={"content-type": "application/json"}),
                 400)
    assert err["code"] == "invalid_json" and "could not parse the JSON body" in err["message"]
    assert _error(http.post("/v1/completions"), 400)["code"] == "missing_body"


@pytest.mark.parametrize("path,body,param", [
    ("/v1/completions", {"prompt": "x", "max_tokens": "5"}, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 2.5}, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "temperature": "hot"}, "temperature"),
    ("/v1/completions", {"prompt": "x", "stream": "yes"}, "stream"),
    ("/v1/completions", {"prompt": 5}, "prompt"),
    ("/v1/completions", {"prompt": ["a", 3]}, "prompt"),
    ("/v1/chat/completions", {"messages": "hello"}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
])
def test_wrong_types_are_400_naming_the_parameter(http, path, body, param):
    assert _error(http.post(path, json=body), 400)["param"] == param


@pytest.mark.parametrize("path,body,param", [
    ("/v1/completions", {"prompt": "x", "foo": 1}, "foo"),
    ("/v1/completions", {"prompt": "x", "stream_options": {"include_usage": True, "bar": 2}}, "stream_options.bar"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi", "mood": "?"}]}, "messages[0].mood"),
])
def test_unknown_fields_are_refused_as_openai_does(http, path, body, param):
    err = _error(http.post(path, json=body), 400)
    assert err["message"] == f"Unrecognized request argument supplied: {param}" and err["param"] == param


def test_missing_required_parameter(http):
    err = _error(http.post("/v1/chat/completions", json={"model": "x"}), 400)
    assert err["param"] == "messages" and err["code"] == "missing_required_parameter"


@pytest.mark.parametrize("body,param,words", [
    ({"prompt": "x", "temperature": -1}, "temperature", "temperature must be"),
    ({"prompt": "x", "n": 0}, "n", "n must be"),
    ({"prompt": "x", "max_tokens": -1}, "max_tokens", "max_tokens must be"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens", "needs echo"),
    ({"prompt": "x", "logprobs": 50}, "logprobs", "logprobs must be"),
    ({"prompt": "x " * 1100}, None, "context window"),
    ({"prompt": [1, 5, 999999]}, None, "outside the vocabulary"),
    ({"prompt": ""}, "prompt", "empty"),
    ({"prompt": "x", "suffix": "y"}, "suffix", "infilling"),
    ({"prompt": "x", "logit_bias": {"5": 10}}, "logit_bias", "not supported"),
    ({"prompt": "x", "best_of": 3}, "best_of", "not supported"),
    ({"prompt": "x", "stream_options": {"include_usage": True}}, "stream_options", "only allowed when stream"),
])
def test_invalid_completion_requests_are_400(http, body, param, words):
    err = _error(http.post("/v1/completions", json=body), 400)
    assert words in err["message"] and err["param"] == param and err["type"] == "invalid_request_error"


@pytest.mark.parametrize("body,words", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "chat"),  # a completion-only model
    ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}, "tools is not supported"),
    ({"messages": [{"role": "tool", "content": "hi"}]}, "role 'tool' is not supported"),
    ({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}, "needs logprobs"),
])
def test_invalid_chat_requests_are_400(http, body, words):
    assert words in _error(http.post("/v1/chat/completions", json=body), 400)["message"]


def test_unknown_model_route_and_method(http):
    err = _error(http.post("/v1/completions", json={"prompt": "x", "model": "gpt-4o"}), 404)
    assert err["code"] == "model_not_found" and err["param"] == "model"
    assert _error(http.get("/v1/engines"), 404)["message"] == "Invalid URL (GET /v1/engines)"
    _error(http.get("/v1/completions"), 405)


def test_the_sdk_sees_a_bad_streamed_request_as_an_http_error(random_server):
    with openai.OpenAI(base_url=random_server.url + "/v1", api_key="-", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError, match="temperature"):
            client.completions.create(model=random_server.serving.model_id, prompt="x", temperature=9000,
                                      stream=True)


def test_bad_requests_do_not_disturb_a_running_stream(random_server, http):
    model = random_server.serving.model_id
    result = {}

    def stream() -> None:
        with httpx.Client(base_url=random_server.url, timeout=30) as own:
            body = {"model": model, "prompt": "import sys", "max_tokens": 120, "ignore_eos": True, "stream": True,
                    "stream_options": {"include_usage": True}}
            with own.stream("POST", "/v1/completions", json=body) as r:
                result["lines"] = [line for line in r.iter_lines() if line.startswith("data: ")]

    worker = threading.Thread(target=stream)
    worker.start()
    wait_for(lambda: random_server.engine.requests)
    for body in ({"prompt": "x", "foo": 1}, {"prompt": [1, 99999]}, {"prompt": "x " * 1100}, {"prompt": 3}):
        assert http.post("/v1/completions", json=body).status_code == 400
    http.post("/v1/completions", content=b"{{{", headers={"content-type": "application/json"})
    worker.join(timeout=60)
    assert result["lines"][-1] == "data: [DONE]"
    assert '"completion_tokens":120' in result["lines"][-2]


@pytest.fixture(scope="module")
def guarded_server(random_model):
    """API keys, and room for two sequences: one running, one queued."""
    engine = LLMEngine(random_model, num_kv_blocks=256, max_model_len=1024, max_num_seqs=1)
    server = LiveServer(engine, ServerSettings(api_keys=("sk-one", "sk-two"), max_queue=1, retry_after=2)).start()
    yield server
    server.stop()


def test_api_keys(guarded_server):
    model = guarded_server.serving.model_id
    with httpx.Client(base_url=guarded_server.url) as http:
        assert _error(http.get("/v1/models"), 401)["code"] == "missing_api_key"
        assert _error(http.get("/v1/models", headers={"Authorization": "Bearer sk-three"}), 401)["code"] == \
            "invalid_api_key"
        err = _error(http.post("/infill", json={}, headers={"Authorization": "Basic sk-one"}), 401)
        assert err["code"] == "missing_api_key"
        assert http.get("/health").status_code == 200  # for load balancers, no key
    for key in ("sk-one", "sk-two"):
        with openai.OpenAI(base_url=guarded_server.url + "/v1", api_key=key, max_retries=0) as client:
            assert client.models.list().data[0].id == model
    with openai.OpenAI(base_url=guarded_server.url + "/v1", api_key="wrong", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            client.completions.create(model=model, prompt="x")


def test_a_full_queue_is_429_with_retry_after(guarded_server):
    headers = {"Authorization": "Bearer sk-one"}
    body = {"prompt": "import os", "max_tokens": 1000, "ignore_eos": True, "stream": True}
    with httpx.Client(base_url=guarded_server.url, headers=headers, timeout=30) as http:
        with http.stream("POST", "/v1/completions", json=body) as running, \
                http.stream("POST", "/v1/completions", json={**body, "prompt": "import re"}) as queued:
            assert running.status_code == 200
            assert guarded_server.serving.admission.in_flight == 2 and queued is not None
            r = http.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
            err = _error(r, 429)
            assert err["code"] == "queue_full" and r.headers["retry-after"] == "2"
            assert "n" == _error(http.post("/v1/completions", json={"prompt": "x", "n": 3}), 400)["param"]
    assert wait_for(lambda: pool_full(guarded_server.engine))
    assert guarded_server.serving.admission.in_flight == 0
    with httpx.Client(base_url=guarded_server.url, headers=headers, timeout=30) as http:
        assert http.post("/v1/completions", json={"prompt": "x", "max_tokens": 2}).status_code == 200


def test_a_failed_engine_step_is_logged_and_its_streams_get_no_internals(random_model):
    """A step that fails cannot be pinned on one request: its traceback goes to the log, the
    requests in it end with an error event that quotes a request id and nothing of the exception,
    and the engine serves the next request."""
    engine = LLMEngine(random_model, num_kv_blocks=64, max_model_len=256)
    launch = engine.runner.launch

    def failing_launch(batch):  # a fault injected into the device work
        raise RuntimeError("secret detail of the device")

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("codellama").addHandler(handler)  # (the app's logging setup replaces pytest's)
    server = LiveServer(engine).start()
    try:
        engine.runner.launch = failing_launch
        with httpx.Client(base_url=server.url, timeout=30) as http:
            r = http.post("/v1/completions", json={"prompt": "x = 1", "max_tokens": 4, "stream": True})
            events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
            error = json.loads(events[-2])["error"]
            assert error["code"] == "engine_error" and "request id req_" in error["message"]
            assert "secret" not in r.text
            engine.runner.launch = launch
            assert http.post("/v1/completions", json={"prompt": "x = 1", "max_tokens": 4}).status_code == 200
    finally:
        server.stop()
        logging.getLogger("codellama").removeHandler(handler)
    step = next(r for r in records if r.name == "codellama.engine" and "engine step failed" in r.getMessage())
    assert "secret detail" in str(step.exc_info[1])  # the traceback is in the log
