"""Strict JSON request bodies. Litestar's own decoding coerces ("5" -> 5); the OpenAI API refuses
wrong types and unrecognized arguments, so bodies are decoded here with msgspec in strict mode and
its errors are rewritten as OpenAI's messages. The DTO keeps the body's schema in the OpenAPI docs."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import msgspec
from litestar.dto import MsgspecDTO
from litestar.typing import FieldDefinition

from .errors import APIError

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.openapi.spec import Reference, Schema

_AT = re.compile(r" - at `\$\.?(?P<path>.*)`$")
_FIELD = re.compile(r"`(?P<name>[^`]*)`")
_OUT_OF_RANGE = re.compile(r"^Number out of range$|^Expected `\w+` (of length )?[<>]=? ")


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
    if _OUT_OF_RANGE.search(text):
        return APIError(400, f"Invalid value for '{path}': {text}", param=path, code="invalid_value")
    if not path:
        return APIError(400, f"Invalid request body: {text}", code="invalid_type")
    return APIError(400, f"Invalid type for '{path}': {text}", param=path, code="invalid_type")


class StrictJSON(MsgspecDTO):
    """Use as `dto=StrictJSON[Model], return_dto=None`."""

    @classmethod
    def create_openapi_schema(cls, field_definition: FieldDefinition, handler_id: str,
                              schema_creator: SchemaCreator) -> Reference | Schema:
        """The body's schema is the Struct's own (its name, its fields' limits), not that of the
        copy a DTO makes of it."""
        return schema_creator.for_field_definition(FieldDefinition.from_annotation(cls.model_type))

    def decode_bytes(self, value: bytes):
        try:
            return msgspec.json.decode(value, type=self.model_type, strict=True)
        except msgspec.MsgspecError as e:
            raise decode_error(e) from None
        except RecursionError:
            raise APIError(400, "We could not parse the JSON body of your request: it is nested too deeply",
                           code="invalid_json") from None
