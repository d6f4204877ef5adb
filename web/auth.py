"""API keys: `Authorization: Bearer KEY` on the API routes when the server was given keys."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from .errors import APIError

Guard = Callable[[ASGIConnection, BaseRouteHandler], None]


def api_key_guard(keys: tuple[str, ...]) -> Guard:
    encoded = [k.encode() for k in keys]

    def require_api_key(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        scheme, _, given = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise APIError(401, "You didn't provide an API key. Send it in an Authorization header with "
                                "Bearer auth (Authorization: Bearer YOUR_KEY).", code="missing_api_key")
        # compare with every key, in constant time, so timing tells nothing about any key
        matches = [hmac.compare_digest(given.strip().encode(), k) for k in encoded]
        if not any(matches):
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")

    return require_api_key
