"""Markup sent in every field a page or an error echoes comes back as text: in the fragments
the forms answer with, in each event of an answer's stream, in the login page, and in the API's
errors (JSON, never HTML)."""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx
import pytest

from tests.web.sse_events import parse_events

PAYLOAD = "\"'><script>alert(1)</script><img src=x onerror=alert(1)><svg/onload=alert(1)>"
LIVE_MARKUP = ("<script>alert", "<img src=x", "<svg/onload")


def _inert(html: str) -> bool:
    return not any(m in html for m in LIVE_MARKUP)


@pytest.fixture(scope="module")
def http(open_server):
    with httpx.Client(base_url=open_server.url, timeout=30) as client:
        yield client


@pytest.mark.parametrize("path,form", [
    ("/playground/complete", {"prompt": PAYLOAD, "max_tokens": "4"}),
    ("/playground/infill", {"code": f"{PAYLOAD}<FILL>{PAYLOAD}", "max_tokens": "4"}),
    ("/playground/chat", {"message": PAYLOAD, "system": PAYLOAD, "user_turn": PAYLOAD, "assistant_turn": PAYLOAD,
                          "max_tokens": "4"}),
])
def test_form_fields_come_back_as_text_in_the_fragment_and_every_event(http, path, form):
    r = http.post(path, data=form)
    assert r.status_code == 200 and _inert(r.text) and "&lt;script&gt;" in r.text
    key = re.search(r"/playground/stream/(\w+)", r.text).group(1)
    events = parse_events(http.get(f"/playground/stream/{key}").text)
    assert events[-1][0] == "done" and all(_inert(data) for _, data in events)
    assert "&lt;script&gt;" in events[-1][1] or path == "/playground/chat"


@pytest.mark.parametrize("form", [
    {"prompt": "x", "max_tokens": PAYLOAD}, {"prompt": "x", "temperature": PAYLOAD}, {"code": PAYLOAD},
])
def test_error_fragments_escape_the_value_they_quote(http, form):
    r = http.post("/playground/infill" if "code" in form else "/playground/complete", data=form)
    assert r.status_code == 400 and _inert(r.text)


def test_the_login_page_escapes_its_parameters(http):
    r = http.get(f"/login?next={quote('/' + PAYLOAD)}&need={quote(PAYLOAD)}")
    assert r.status_code == 200 and _inert(r.text)
    r = http.post("/login", data={"key": PAYLOAD, "next": "/" + PAYLOAD}, follow_redirects=False)
    assert _inert(r.text) and _inert(r.headers.get("location", ""))


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/" + quote(PAYLOAD), None), ("POST", "/v1/completions", {"prompt": "x", "model": PAYLOAD}),
    ("POST", "/v1/chat/completions", {"messages": [{"role": PAYLOAD, "content": "x"}]}),
    ("POST", "/v1/completions", {"prompt": "x", PAYLOAD: 1}),
])
def test_api_errors_that_quote_the_request_are_json(http, method, path, body):
    r = http.request(method, path, json=body)
    assert r.status_code in (400, 404) and r.headers["content-type"].startswith("application/json")
    assert r.headers.get("x-content-type-options") in (None, "nosniff")
