"""Strict JSON request bodies. Litestar's own decoding coerces ("5" -> 5); the OpenAI API refuses
wrong types and unrecognized arguments, so bodies are decoded here with msgspec in strict mode and
its errors are rewritten as OpenAI's messages. The DTO keeps the body's schema in the OpenAPI docs."""

from __future__ import annotations

import re

import msgspec
from litestar.dto import MsgspecDTO

from .errors import APIError

_AT = re.compile(r" - at `\$\.?(?P<path>.*)`$")
_FIELD = re.compile(r"`(?P<name>[^`]*)`")


def decode_error(e: msgspec.MsgspecError) -> APIError:
    text = str(e)
    if not isinstance(e, msgspec.ValidationError):
        return APIError(400, f"We could not parse the JSON body of your request: {text}", code="invalid_json")
    at = _AT.search(text)
    path = at.group("path") if at else ""
    text = text[:at.start()] if at else text
    if text.startswith(("Object contains unknown field", "Object missing required field")):
        name = _FIELD.search(text).group("name")
        param = f"{path}.{name}" if path else name
        if text.startswith("Object contains"):
            return APIError(400, f"Unrecognized request argument supplied: {param}", param=param)
        return APIError(400, f"Missing required parameter: '{param}'.", param=param,
                        code="missing_required_parameter")
    if not path:
        return APIError(400, f"Invalid request body: {text}", code="invalid_type")
    return APIError(400, f"Invalid type for '{path}': {text}", param=path, code="invalid_type")


class StrictJSON(MsgspecDTO):
    """Use as `dto=StrictJSON[Model], return_dto=None`."""

    def decode_bytes(self, value: bytes):
        try:
            return msgspec.json.decode(value, type=self.model_type, strict=True)
        except msgspec.MsgspecError as e:
            raise decode_error(e) from None
