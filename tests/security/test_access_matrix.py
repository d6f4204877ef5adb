"""Every route of the app x every kind of credential, on a server with API keys and an operator
key. The table below says who may use each route; a route missing from it fails the test, so a
new route must be classified before it ships."""

from __future__ import annotations

import re

import httpx
import pytest
from litestar.routes import HTTPRoute

from .conftest import API_KEY, OPERATOR_KEY

OPEN, USER, OPERATOR = "open", "user", "operator"
# (method, path template) -> who may use it; USER routes take a key or a session cookie, the
# API's a key only (it is called by programs, not browsers)
WHO = {
    ("GET", "/health"): OPEN, ("GET", "/login"): OPEN, ("POST", "/login"): OPEN, ("POST", "/logout"): OPEN,
    ("GET", "/v1/models"): USER, ("GET", "/v1/models/{model:str}"): USER, ("POST", "/v1/completions"): USER,
    ("POST", "/v1/chat/completions"): USER, ("POST", "/infill"): USER, ("POST", "/tokenize"): USER,
    ("POST", "/detokenize"): USER, ("GET", "/v1/loads"): USER,  # the gateway polls it with its key
    ("GET", "/"): USER, ("POST", "/playground/chat"): USER, ("POST", "/playground/infill"): USER,
    ("POST", "/playground/complete"): USER, ("POST", "/playground/python"): USER,
    ("GET", "/playground/stream/{key:str}"): USER,
    ("POST", "/playground/stop/{key:str}"): USER, ("GET", "/playground/reset"): USER,
    ("GET", "/admin"): OPERATOR, ("GET", "/admin/live"): OPERATOR, ("GET", "/metrics"): OPERATOR,
}
OPEN_PREFIXES = ("/docs", "/static")  # the API's documentation and the pages' assets
API = ("/v1/", "/infill", "/tokenize", "/detokenize")
CREDENTIALS = {
    "none": {}, "wrong key": {"authorization": "Bearer sk-wrong"}, "api key": {"authorization": f"Bearer {API_KEY}"},
    "operator key": {"authorization": f"Bearer {OPERATOR_KEY}"}, "basic auth": {"authorization": f"Basic {API_KEY}"},
    "forged cookie": {"cookie": "codellama_session=operator.99999999999.deadbeef"},
    "user session": "cookie:" + API_KEY, "operator session": "cookie:" + OPERATOR_KEY,
}
GRANTS = {"api key": USER, "operator key": OPERATOR, "user session": USER, "operator session": OPERATOR}


def _routes(app) -> list[tuple[str, str]]:
    """The app's routes; /logout last, since it ends the session the others are tried with."""
    return sorted(((method, route.path) for route in app.routes if isinstance(route, HTTPRoute)
                   for method in route.methods - {"HEAD", "OPTIONS"}), key=lambda r: (r[1] == "/logout", r))


def _allowed(who: str, credential: str, path: str) -> bool:
    granted = GRANTS.get(credential)
    if who == OPEN:
        return True
    if credential.endswith("session") and path.startswith(API):
        return False  # the API takes keys, not cookies
    return granted == OPERATOR or (granted == USER and who == USER)


def _headers(http: httpx.Client, credential: str) -> dict:
    value = CREDENTIALS[credential]
    if isinstance(value, dict):
        return value
    r = http.post("/login", data={"key": value.removeprefix("cookie:"), "next": "/"}, follow_redirects=False)
    return {"cookie": f"codellama_session={r.cookies['codellama_session']}"}


def test_every_route_is_classified(keyed_server):
    unclassified = [r for r in _routes(keyed_server.app) if r not in WHO and not r[1].startswith(OPEN_PREFIXES)]
    assert not unclassified


@pytest.mark.parametrize("credential", list(CREDENTIALS))
def test_access_matrix(keyed_server, credential):
    mistakes = []
    with httpx.Client(base_url=keyed_server.url, timeout=30) as http:
        headers = _headers(http, credential)
        for method, template in _routes(keyed_server.app):
            path = re.sub(r"\{\w+:\w+\}", "x", template)
            who = WHO.get((method, template), OPEN)
            kwargs = {"json": {}} if method == "POST" and path.startswith(API) else \
                {"data": {"key": API_KEY}} if path == "/login" else {}
            r = http.request(method, path, headers=headers, follow_redirects=False, **kwargs)
            http.cookies.clear()  # only the credential under test: not the cookie POST /login just gave
            refused = r.status_code in (401, 403)
            if refused == _allowed(who, credential, path) or r.status_code >= 500:
                mistakes.append((method, path, r.status_code))
    assert not mistakes, f"{credential}: {mistakes}"
