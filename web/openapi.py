"""What /docs says about a route beyond its Structs: OpenAI's error object under every error
status the route can answer, server-sent events beside the JSON answer of a route that streams,
and a request example the server accepts (Swagger UI would otherwise fill in every field,
refused ones such as `tools` included). Litestar builds the document from the msgspec Structs
and these route arguments (`responses=`, `operation_class=`); tests/web/test_openapi.py holds
real answers against it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIHeader, OpenAPIMediaType, OpenAPIType, Operation, Reference, Schema


class ErrorDetail(msgspec.Struct):
    message: str
    type: str  # invalid_request_error, rate_limit_error, server_error
    param: str | None  # the request field at fault
    code: str | None  # e.g. invalid_json, invalid_api_key, model_not_found, queue_full


class ErrorBody(msgspec.Struct):
    """Every error, as OpenAI sends it."""

    error: ErrorDetail


WHY = {
    400: "Invalid request: malformed JSON, a wrong type, an unknown field, a value out of range, a prompt "
         "longer than the context window, or an ability the model lacks",
    401: "Missing or wrong API key (only when the server was given keys)",
    404: "No such model",
    413: "Request body over the server's size limit",
    429: "The queue is full: retry after Retry-After seconds",
    500: "Server error: the body gives a request id; the server's log has the details",
    503: "The server is shutting down, or its engine has failed",
}
GENERATION_ERRORS = (400, 401, 404, 413, 429, 500, 503)
_STREAM = 299  # where the stream's answer waits: litestar documents one media type per status


def sse_event(chunk: Schema | Reference, sentinel: bool) -> Schema:
    """One server-sent event (OpenAPI 3.1 describes a stream by its events): its data is a chunk
    as JSON, or an error object (a stream that fails after it began), or the `[DONE]` sentinel."""
    payload = Schema(type=OpenAPIType.STRING, content_media_type="application/json",
                     content_schema=Schema(one_of=[chunk, Reference(ref="#/components/schemas/ErrorBody")]))
    data = Schema(schema_if=Schema(const="[DONE]"), then=Schema(), schema_else=payload) if sentinel else payload
    return Schema(type=OpenAPIType.OBJECT, required=["data"], properties={"data": data})


def _operation(example: dict[str, Any] | None, sentinel: bool) -> type[Operation]:
    @dataclass
    class Documented(Operation):
        def __post_init__(self) -> None:
            responses = self.responses or {}
            stream = responses.pop(str(_STREAM), None)
            if stream is not None:
                chunk = stream.content["text/event-stream"].schema
                responses["200"].content["text/event-stream"] = OpenAPIMediaType(schema=sse_event(chunk, sentinel))
                responses["200"].description += f"; with `stream: true`, server-sent events: {stream.description}"
            if "429" in responses:
                responses["429"].headers = {"Retry-After": OpenAPIHeader(
                    schema=Schema(type=OpenAPIType.STRING), description="Seconds to wait", required=True)}
            if example is not None and self.request_body is not None:
                self.request_body.content["application/json"].example = example

    return Documented


def documented(errors: tuple[int, ...], example: dict[str, Any] | None = None, stream: type | None = None,
               stream_note: str = "", sentinel: bool = True) -> dict[str, Any]:
    """Route arguments: the error statuses, a request example, and if the route streams, the type
    of each event's data (and whether the stream ends with `data: [DONE]`)."""
    responses = {status: ResponseSpec(ErrorBody, description=WHY[status], generate_examples=False)
                 for status in errors}
    if stream is not None:
        responses[_STREAM] = ResponseSpec(stream, media_type="text/event-stream", generate_examples=False,
                                          description=f"Each event's data is one of these as JSON{stream_note}")
    return {"responses": responses, "operation_class": _operation(example, sentinel)}
