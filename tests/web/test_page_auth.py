"""Keys on the pages: with API keys set the playground needs one, /admin and /metrics the
operator key; a browser logs in once and keeps a session cookie; the API takes Bearer keys (the operator key too)."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from tests.web.conftest import page_engine
from web.app import create_app
from web.auth import COOKIE
from web.settings import ServerSettings

HTML = {"accept": "text/html,application/xhtml+xml"}


@pytest.fixture
def client(page_model):
    app = create_app(page_engine(page_model[1]), ServerSettings(api_keys=("user-key", "other-key"),
                                                                admin_key="operator-key"))
    with TestClient(app) as client:
        yield client


def login(client, key: str, next_path: str = "/"):
    return client.post("/login", data={"key": key, "next": next_path}, follow_redirects=False)


def test_without_a_key_browsers_are_sent_to_the_login_page(client):
    for path, need in (("/", "user"), ("/admin", "operator")):
        r = client.get(path, headers=HTML, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"/login?next=%2F{path[1:]}&need={need}"
    page = client.get("/login?next=/admin&need=operator")
    assert page.status_code == 200 and "admin key" in page.text and 'value="/admin"' in page.text
    for path in ("/metrics", "/playground/stream/abc", "/admin/live"):
        r = client.get(path)
        assert r.status_code == 401 and r.json()["error"]["code"] == "login_required"
    page = "http://testserver.local/?x=1"
    r = client.post("/playground/chat", data={"message": "hi"}, headers={"hx-request": "true", "hx-current-url": page})
    assert r.status_code == 401 and r.headers["hx-redirect"] == "/login?next=%2F%3Fx%3D1&need=user"
    assert client.app.state.serving.accounting.requests["chat"] == 0


def test_an_api_key_logs_into_the_playground_with_a_session_cookie(client):
    r = login(client, "other-key", "/?tab=chat")
    assert r.status_code == 303 and r.headers["location"] == "/?tab=chat"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert "Max-Age=43200" in cookie and "Path=/" in cookie
    assert client.get("/").status_code == 200
    assert "Log out" in client.get("/").text
    assert client.post("/playground/complete", data={"prompt": "x", "max_tokens": "1"}).status_code == 200
    # a user's key is not the operator's
    r = client.get("/admin", headers=HTML, follow_redirects=False)
    assert r.status_code == 303 and "need=operator" in r.headers["location"]
    assert client.get("/metrics").status_code == 401
    r = client.post("/logout", follow_redirects=False)
    assert r.status_code == 303 and f'{COOKIE}=""' in r.headers["set-cookie"]
    assert "Max-Age=0" in r.headers["set-cookie"] and "samesite=strict" in r.headers["set-cookie"].lower()
    client.cookies.clear()
    assert client.get("/", headers=HTML, follow_redirects=False).status_code == 303


def test_the_operator_key_opens_admin_and_metrics(client):
    assert login(client, "operator-key", "/admin").headers["location"] == "/admin"
    assert client.get("/admin").status_code == 200 and client.get("/metrics").status_code == 200
    assert client.get("/").status_code == 200  # operators may use the playground too


def test_wrong_keys_forged_cookies_and_foreign_redirects_are_refused(client):
    r = login(client, "user-key-not")
    assert r.status_code == 401 and "not valid" in r.text and "set-cookie" not in r.headers
    session = login(client, "user-key").headers["set-cookie"].split(";")[0].split("=", 1)[1]
    client.cookies.clear()
    for forged in (session[:-1], session + "x", "operator", "user.99999999999.00", ""):
        client.cookies.set(COOKIE, forged)
        assert client.get("/admin/live").status_code == 401 and client.get("/").status_code == 401
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        assert login(client, "user-key", target).headers["location"] == "/"


def test_scripts_use_bearer_keys_and_the_operator_key_opens_the_api_too(client):
    assert client.get("/metrics", headers={"authorization": "Bearer operator-key"}).status_code == 200
    assert client.get("/metrics", headers={"authorization": "Bearer user-key"}).status_code == 401
    assert client.get("/", headers={"authorization": "Bearer user-key"}).status_code == 200
    assert client.get("/v1/models").status_code == 401
    # one rule: the operator key opens everything an API key opens
    assert client.get("/v1/models", headers={"authorization": "Bearer operator-key"}).status_code == 200
    assert client.get("/v1/models", headers={"authorization": "Bearer user-key"}).status_code == 200
    assert client.get("/health").status_code == 200 and client.get("/static/htmx.min.js").status_code == 200


def test_the_operator_key_defaults_to_the_first_api_key(page_model):
    assert ServerSettings(api_keys=("a", "b")).operator_key == "a"
    assert ServerSettings(admin_key="op").operator_key == "op" and ServerSettings().operator_key is None
    with pytest.raises(ValueError, match="admin key"):
        ServerSettings(admin_key="")
    with TestClient(create_app(page_engine(page_model[1]), ServerSettings(api_keys=("a", "b")))) as client:
        assert client.get("/metrics", headers={"authorization": "Bearer a"}).status_code == 200
        assert client.get("/metrics", headers={"authorization": "Bearer b"}).status_code == 401
    with TestClient(create_app(page_engine(page_model[1]), ServerSettings(admin_key="op"))) as client:
        assert client.get("/").status_code == 200  # no API keys: the playground is open, as the API is
        assert client.get("/admin/live").status_code == 401
