"""Model output on a page, always escaped: as HTML text for a stream's events, and split at
its ``` fences into prose and code blocks for the finished answer."""

from __future__ import annotations

import re
from dataclasses import dataclass

from markupsafe import Markup, escape

_LANGUAGE = re.compile(r"[\w+#.-]*")


def verbatim(text: str) -> Markup:
    """`text` as HTML that shows it exactly, on one line: line breaks become character references,
    because an SSE event's data ends at a line break (the page shows them with pre-wrap)."""
    return Markup(str(escape(text)).replace("\r", "&#13;").replace("\n", "&#10;"))


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    code: bool = False
    language: str = ""


def segments(text: str) -> list[Segment]:
    """Prose and fenced code blocks in order; a word on the opening fence's line names the
    language; an unclosed fence runs to the end (an answer cut short)."""
    out = []
    for i, part in enumerate(text.split("```")):
        if i % 2 == 0:
            if part:
                out.append(Segment(part))
            continue
        first, newline, rest = part.partition("\n")
        if newline and _LANGUAGE.fullmatch(first.strip()):
            out.append(Segment(rest.removesuffix("\n"), True, first.strip()))
        else:
            out.append(Segment(part.strip("\n"), True))
    return out
