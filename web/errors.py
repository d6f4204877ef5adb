"""Errors as the OpenAI API shapes them: `{"error": {"message", "type", "param", "code"}}` with the
matching HTTP status, for the API's own errors and for Litestar's (404, 405, 413, ...)."""

from __future__ import annotations

import logging
import uuid
from contextlib import contextmanager

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException

log = logging.getLogger("codellama.web")

_TYPES = {401: "invalid_request_error", 429: "rate_limit_error", 500: "server_error", 503: "server_error"}


class APIError(HTTPException):
    """An error the client should see, with OpenAI's fields."""

    def __init__(self, status_code: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail=message, status_code=status_code, headers=headers)
        self.param = param
        self.code = code

    @property
    def type(self) -> str:
        return _TYPES.get(self.status_code, "invalid_request_error" if self.status_code < 500 else "server_error")

    def body(self) -> dict:
        return {"error": {"message": self.detail, "type": self.type, "param": self.param, "code": self.code}}


@contextmanager
def bad_request(param: str | None = None):
    """Turn a ValueError (the engine's and the prompt builders' messages are written for the user)
    into a 400 naming the parameter at fault."""
    try:
        yield
    except ValueError as e:
        raise APIError(400, str(e), param=param) from None


def _from_litestar(request: Request, exc: HTTPException) -> APIError:
    if isinstance(exc, ValidationException) and any(e.get("key") == "data" for e in exc.extra or []):
        return APIError(400, "the request has no body: send a JSON object", code="missing_body")
    if isinstance(exc, NotFoundException):
        return APIError(404, f"Invalid URL ({request.method} {request.url.path})", code="unknown_url")
    return APIError(exc.status_code, exc.detail, headers=exc.headers)


def handle_http_exception(request: Request, exc: HTTPException) -> Response:
    err = exc if isinstance(exc, APIError) else _from_litestar(request, exc)
    return Response(err.body(), status_code=err.status_code, headers=err.headers)


def internal_error(what: str, exc: BaseException, code: str = "internal_error") -> APIError:
    """A failure the client cannot mend: the details go to the log only, under an id the client
    is given to quote."""
    request_id = f"req_{uuid.uuid4().hex}"
    log.error("%s (request id %s)", what, request_id, exc_info=exc)
    return APIError(500, f"The server had an error while processing your request (request id {request_id}); "
                         "its log has the details.", code=code, headers={"X-Request-Id": request_id})


def handle_unexpected(request: Request, exc: Exception) -> Response:
    """A bug."""
    return handle_http_exception(request, internal_error(f"{request.method} {request.url.path} failed", exc))


EXCEPTION_HANDLERS = {HTTPException: handle_http_exception, Exception: handle_unexpected}
