"""Keys. The API routes want `Authorization: Bearer KEY` when the server was given keys.

The pages: with API keys set, the playground needs one of them (it generates, as the API does)
and /admin and /metrics need the operator key (`--admin-key`, by default the first API key);
without keys everything is open, as the API is. One rule for the operator key: it opens
everything an API key opens (the API and the playground) and the operator's pages besides. A
browser gives its key once, on /login, and gets a session cookie (a random id the server
remembers, see web/sessions.py; HttpOnly, SameSite=Strict, 12 hours); scripts and Prometheus
send the Bearer header instead."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.response import Redirect

from .errors import APIError, handle_http_exception
from .sessions import Sessions
from .settings import ServerSettings

Guard = Callable[[ASGIConnection, BaseRouteHandler], None]
COOKIE = "codellama_session"
USER, OPERATOR = "user", "operator"


def _bearer(connection: ASGIConnection) -> str | None:
    scheme, _, given = connection.headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


def api_key_guard(settings: ServerSettings) -> Guard:
    """The API's guard: any API key, or the operator key."""
    encoded = [k.encode() for k in (*settings.api_keys, settings.operator_key) if k is not None]

    def require_api_key(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        given = _bearer(connection)
        if given is None:
            raise APIError(401, "You didn't provide an API key. Send it in an Authorization header with "
                                "Bearer auth (Authorization: Bearer YOUR_KEY).", code="missing_api_key")
        # compare with every key, in constant time, so timing tells nothing about any key
        matches = [hmac.compare_digest(given.encode(), k) for k in encoded]
        if not any(matches):
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")

    return require_api_key


class LoginRequired(APIError):
    def __init__(self, need: str):
        what = "the operator key" if need == OPERATOR else "an API key"
        super().__init__(401, f"this page needs {what}: log in at /login or send Authorization: Bearer KEY",
                         code="login_required")
        self.need = need


class PageAuth:
    def __init__(self, settings: ServerSettings):
        self._user_keys = [k.encode() for k in settings.api_keys]
        operator = settings.operator_key
        self._operator_key = operator.encode() if operator is not None else None
        self.sessions = Sessions()

    def is_open(self, need: str) -> bool:
        return not self._user_keys if need == USER else self._operator_key is None

    def role_of_key(self, key: str) -> str | None:
        """OPERATOR, USER or None; every key is compared, in constant time."""
        given = key.encode()
        operator = self._operator_key is not None and hmac.compare_digest(given, self._operator_key)
        user = any([hmac.compare_digest(given, k) for k in self._user_keys])
        return OPERATOR if operator else USER if user else None

    def role(self, connection: ASGIConnection) -> str | None:
        key = _bearer(connection)
        if key is not None:
            return self.role_of_key(key)
        cookie = connection.cookies.get(COOKIE)
        return self.sessions.role(cookie) if cookie else None

    def allows(self, connection: ASGIConnection, need: str) -> bool:
        if self.is_open(need):
            return True
        role = self.role(connection)
        return role == OPERATOR or (role == USER and need == USER)


def requires(need: str) -> Guard:
    """A guard for the pages of `need` (USER or OPERATOR); the app keeps its PageAuth in state."""

    def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        if not connection.app.state.page_auth.allows(connection, need):
            raise LoginRequired(need)

    return guard


def same_origin(request: Request) -> bool:
    """Whether a browser's POST comes from a page of this server: a cross-site form posts with
    its site's Origin (browsers send one on every POST); a script that sends none is no browser.
    Hosts are compared, not schemes, so that a proxy that ends TLS in front changes nothing."""
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


def safe_next(path: str | None) -> str:
    """Where to go after logging in: a path on this server only (no open redirect)."""
    if not path or not path.startswith("/") or path.startswith(("//", "/\\")):
        return "/"
    return path


def _login_url(need: str, url: str) -> str:
    parts = urlsplit(url)
    return "/login?" + urlencode({"next": parts.path + (f"?{parts.query}" if parts.query else ""), "need": need})


def login_required(request: Request, exc: LoginRequired) -> Response:
    """A browser goes to the login page and then back to the page it was on (htmx follows
    HX-Redirect); anything else gets the 401."""
    if request.headers.get("hx-request") == "true":
        page = request.headers.get("hx-current-url", "/")
        return Response(None, status_code=401, headers={"HX-Redirect": _login_url(exc.need, page)})
    if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        return Redirect(_login_url(exc.need, str(request.url)), status_code=303)
    return handle_http_exception(request, exc)
