"""Each request that once hurt the server, against a live one: it now gets a clear 4xx (or the
right accounting) and disturbs no other request."""

from __future__ import annotations

import json
import logging
import socket
import threading
from urllib.parse import urlsplit

import httpx
import pytest

from tests.web.conftest import wait_for

from .conftest import API_KEY, OPERATOR_KEY

CHAT = [{"role": "user", "content": "hi"}]


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    return r.json()["error"]


def _long_stream(url: str, result: dict) -> None:
    body = {"prompt": "import os", "max_tokens": 150, "ignore_eos": True, "stream": True}
    with httpx.Client(base_url=url, timeout=60) as own, own.stream("POST", "/v1/completions", json=body) as r:
        result["lines"] = [line for line in r.iter_lines() if line.startswith("data: ")]


@pytest.mark.parametrize("route,body", [
    ("/v1/completions", {"prompt": "x", "max_tokens": 2, "seed": 2 ** 64}),
    ("/v1/completions", {"prompt": "x", "max_tokens": 2, "seed": -(2 ** 63) - 1}),
    ("/v1/chat/completions", {"messages": CHAT, "max_tokens": 2, "seed": 2 ** 63}),
    ("/infill", {"input_prefix": "x", "n_predict": 2, "seed": 2 ** 70}),
    ("/infill", {"input_prefix": "x", "n_predict": 2, "top_k": 2 ** 64}),
    ("/v1/completions", {"prompt": "x", "max_tokens": 2 ** 64}),
])
def test_an_out_of_range_number_is_a_400_and_other_streams_go_on(open_server, route, body):
    result: dict = {}
    worker = threading.Thread(target=_long_stream, args=(open_server.url, result))
    worker.start()
    assert wait_for(lambda: open_server.engine.requests)
    with httpx.Client(base_url=open_server.url, timeout=30) as http:
        assert _error(http.post(route, json=body), 400)["param"] in {"seed", "top_k", "max_tokens"}
    worker.join(timeout=60)
    events = [json.loads(line[len("data: "):]) for line in result["lines"][:-1]]
    assert result["lines"][-1] == "data: [DONE]" and not any("error" in e for e in events)  # (a token may read "error")
    assert events[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("route,body,param", [
    ("/v1/completions", {"prompt": "x", "stop": [str(i) for i in range(5)]}, "stop"),
    ("/v1/completions", {"prompt": "x", "stop": "y" * 257}, "stop"),
    ("/v1/chat/completions", {"messages": CHAT, "stop": ["a"] * 100_000}, "stop"),
    ("/infill", {"input_prefix": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ("/infill", {"input_prefix": "x", "stop": ["z" * 300]}, "stop[0]"),
])
def test_stop_lists_are_capped(open_server, route, body, param):
    with httpx.Client(base_url=open_server.url, timeout=30) as http:
        err = _error(http.post(route, json=body), 400)
    assert err["param"] == param and err["code"] == "invalid_value"


@pytest.mark.parametrize("route,body", [
    ("/v1/chat/completions", b'{"messages": [], "tool_choice": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("/infill", b'{"input_prefix": "x", "unknown": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}"),
    ("/tokenize", b'{"content": "x", "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
])
def test_deep_json_is_a_400_without_a_traceback(open_server, caplog, route, body):
    with caplog.at_level(logging.ERROR), httpx.Client(base_url=open_server.url, timeout=30) as http:
        err = _error(http.post(route, content=body, headers={"content-type": "application/json"}), 400)
    assert err["code"] == "invalid_json" and "nested too deeply" in err["message"]
    assert not [r for r in caplog.records if r.exc_info]


def _raw_request(url: str, request: bytes, read: bool = True) -> bytes:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(65536) if read else b""


def test_a_non_ascii_session_cookie_is_a_401(keyed_server):
    for path in ("/", "/admin", "/admin/live", "/metrics"):
        answer = _raw_request(keyed_server.url, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
                              + "Cookie: codellama_session=operator.99999999999.é☃\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_cut_uploads_and_dropped_streams_count_as_499(open_server):
    responses = open_server.serving.accounting.responses
    before = dict(responses)
    for _ in range(3):  # a body cut off mid-upload
        _raw_request(open_server.url, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                      b"Content-Length: 1000\r\n\r\n{\"prompt\": \"", read=False)
    body = b'{"prompt": "import os", "max_tokens": 200, "ignore_eos": true, "stream": true}'
    for _ in range(3):  # a stream dropped before its first byte
        _raw_request(open_server.url, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body), read=False)
    key = ("POST", "/v1/completions")
    assert wait_for(lambda: responses[(*key, 499)] - before.get((*key, 499), 0) == 6)
    assert responses[(*key, 500)] == before.get((*key, 500), 0) and responses[(*key, 200)] == before.get((*key, 200), 0)


def _login(http: httpx.Client, key: str, origin: str | None = None) -> httpx.Response:
    headers = {"origin": origin} if origin else {}
    return http.post("/login", data={"key": key, "next": "/admin"}, headers=headers, follow_redirects=False)


def test_logout_ends_the_session_on_the_server(keyed_server):
    with httpx.Client(base_url=keyed_server.url, timeout=30) as http:
        r = _login(http, OPERATOR_KEY, origin=keyed_server.url)
        assert r.status_code == 303
        session = r.cookies["codellama_session"]
        assert http.get("/admin/live").status_code == 200
        r = http.post("/logout", follow_redirects=False)
        assert r.status_code == 303 and "samesite=strict" in r.headers["set-cookie"].lower()
    with httpx.Client(base_url=keyed_server.url, timeout=30, cookies={"codellama_session": session}) as copied:
        assert copied.get("/admin/live").status_code == 401  # the copied cookie opens nothing any more


def test_a_cross_origin_login_is_refused(keyed_server):
    with httpx.Client(base_url=keyed_server.url, timeout=30) as http:
        r = _login(http, OPERATOR_KEY, origin="http://evil.example")
        assert r.status_code == 403 and "set-cookie" not in r.headers
        assert _login(http, OPERATOR_KEY).status_code == 303  # a script sends no Origin


def test_a_500_tells_a_request_id_and_logs_the_rest(open_server, monkeypatch, caplog):
    def broken():
        raise RuntimeError("secret detail /home/ops/key.txt")

    monkeypatch.setattr(open_server.serving, "model_card", broken)
    with caplog.at_level(logging.ERROR), httpx.Client(base_url=open_server.url, timeout=30) as http:
        r = http.get("/v1/models")
    err = _error(r, 500)
    request_id = r.headers["x-request-id"]
    assert request_id in err["message"] and "secret" not in r.text and "RuntimeError" not in r.text
    logged = [rec for rec in caplog.records if request_id in rec.getMessage()]
    assert logged and "secret detail" in str(logged[0].exc_info[1])


def test_docs_cannot_be_framed_and_run_only_their_own_script(open_server):
    csp = httpx.get(open_server.url + "/docs").headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self' 'sha256-" in csp and "unsafe-inline" not in \
        csp.split("script-src")[1].split(";")[0]


def test_the_admin_key_opens_the_api_as_it_opens_the_playground(keyed_server):
    for key in (API_KEY, OPERATOR_KEY):
        assert httpx.get(keyed_server.url + "/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 200


def test_a_completion_only_model_does_not_advertise_infill_pieces(random_server):
    card = httpx.get(random_server.url + "/v1/models").json()["data"][0]
    assert card["capabilities"] == ["completion"] and card["infill_token_ids"] is None
