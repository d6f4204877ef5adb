"""Server-sent events read as a browser's EventSource reads them (the WHATWG parsing rules)."""

from __future__ import annotations

import re


def parse_events(text: str) -> list[tuple[str, str]]:
    """(event name, data) of each event in a complete stream; data lines joined with newlines."""
    events, name, data = [], "message", []
    for line in re.split(r"\r\n|\r|\n", text):
        if not line:
            if data:
                events.append((name, "\n".join(data)))
            name, data = "message", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    return events
