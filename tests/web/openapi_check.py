"""Real answers held against the OpenAPI document the server serves: the status must be
documented for the route, the content type among the status's, and the body (or each event's
data of a stream) valid under the documented schema (JSON Schema 2020-12, as OpenAPI 3.1 is)."""

from __future__ import annotations

import json

import httpx
import jsonschema_rs


class Document:
    def __init__(self, base_url: str):
        self.spec = httpx.get(base_url + "/docs/openapi.json", timeout=30).json()

    def _validator(self, schema: dict) -> jsonschema_rs.Draft202012Validator:
        return jsonschema_rs.Draft202012Validator({**schema, "components": self.spec["components"]})

    def check(self, route: str, r: httpx.Response) -> list:
        """Validate `r`, an answer of `route` (the documented path, e.g. /v1/models/{model});
        returns the JSON body, or a stream's events."""
        documented = self.spec["paths"][route][r.request.method.lower()]["responses"]
        status = str(r.status_code)
        assert status in documented, f"{route}: {status} is not documented ({sorted(documented)})"
        media_type = r.headers["content-type"].split(";")[0].strip()
        content = documented[status].get("content", {})
        assert media_type in content, f"{route} {status}: {media_type} is not documented ({sorted(content)})"
        schema = content[media_type]["schema"]
        if media_type == "text/event-stream":  # each event's data: JSON under `contentSchema`, or [DONE]
            data = schema["properties"]["data"]
            sentinel = "else" in data
            payload = self._validator((data["else"] if sentinel else data)["contentSchema"])
            lines = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
            assert (lines[-1] == "[DONE]") == sentinel and "[DONE]" not in lines[:-1]
            events = [json.loads(line) for line in lines[:-1 if sentinel else None]]
            for event in events:
                payload.validate(event)
            return events
        validator = self._validator(schema)
        if media_type == "application/json":
            validator.validate(r.json())
            return [r.json()]
        return [r.text]
