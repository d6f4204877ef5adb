"""The console client's conversation with a running server: chat (history kept until `reset`),
completion, Python (completion up to a new top-level statement) or infilling (a <FILL> marker
in the input), each answer streamed as it comes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TextIO

import httpx

from inference.output_processor import find_stop, partial_stop_length
from inference.prompts import TOP_LEVEL_STOPS, split_fill

DEFAULT_SYSTEM = "Provide answers in Python"


class ServerError(Exception):
    """An error the server answered (shown to the user as one line)."""


class ConsoleClient:
    def __init__(self, url: str, out: TextIO, api_key: str | None = None, sampling: dict | None = None):
        base = (url if "://" in url else f"http://{url}").rstrip("/")  # "127.0.0.1:23333" works too
        base = base[:-3] if base.endswith("/v1") else base
        self.url = base
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base, headers=headers, timeout=httpx.Timeout(10.0, read=None))
        self.out = out
        self.sampling = {k: v for k, v in (sampling or {}).items() if v is not None}
        self.history: list[dict] = []

    def close(self) -> None:
        self.http.close()

    def model(self) -> dict:
        """The served model's card (GET /v1/models)."""
        r = self.http.get("/v1/models")
        if r.status_code != 200:
            raise ServerError(_error_message(r.status_code, r.text))
        return r.json()["data"][0]

    def reset(self) -> None:
        self.history = []

    # --- one turn per ability -----------------------------------------------------------------------

    def chat(self, text: str, system: str | None) -> None:
        messages = ([{"role": "system", "content": system}] if system else []) + self.history
        messages.append({"role": "user", "content": text})
        answer = self._print_stream("/v1/chat/completions", {"messages": messages},
                                    lambda c: c["choices"][0]["delta"].get("content") or "")
        self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]

    def complete(self, text: str) -> None:
        self._print_stream("/v1/completions", {"prompt": text}, lambda c: c["choices"][0]["text"])

    def python(self, text: str) -> None:
        """As the console's Python ability: the completion ends at a new top-level statement.
        The stop strings are matched here (OpenAI's API takes at most four); leaving the stream
        there makes the server abort the rest."""
        self._print_stream("/v1/completions", {"prompt": text}, lambda c: c["choices"][0]["text"],
                           stops=TOP_LEVEL_STOPS)

    def infill(self, text: str) -> None:
        prefix, suffix = split_fill(text)
        middle = self._print_stream("/v1/completions", {"prompt": prefix, "suffix": suffix},
                                    lambda c: c["choices"][0]["text"])
        self.out.write(f"--- filled ---\n{prefix}{middle}{suffix}\n")

    # --- streaming ----------------------------------------------------------------------------------

    def _print_stream(self, path: str, body: dict, text_of, stops: list[str] = ()) -> str:
        """Stream a request's text to the console, up to the first of `stops` (text that could
        still become one is held back); returns it. Leaving early (a stop, Ctrl-C) closes the
        connection, which makes the server abort the request."""
        text, shown = "", 0
        for chunk in self._events(path, {**self.sampling, **body, "stream": True}):
            if not chunk["choices"]:
                continue
            new_from = len(text)
            text += text_of(chunk)
            stop_at = find_stop(text, new_from, stops) if stops else -1
            end = stop_at if stop_at >= 0 else len(text) - partial_stop_length(text, stops)
            self.out.write(text[shown:end])
            self.out.flush()
            shown = end
            if stop_at >= 0:
                text = text[:stop_at]
                break
        self.out.write(text[shown:] + "\n")
        return text

    def _events(self, path: str, body: dict) -> Iterator[dict]:
        with self.http.stream("POST", path, json=body) as r:
            if r.status_code != 200:
                raise ServerError(_error_message(r.status_code, r.read().decode(errors="replace")))
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if "error" in event:
                    raise ServerError(event["error"].get("message", "error"))
                yield event


def _error_message(status: int, body: str) -> str:
    try:
        return f"{status}: {json.loads(body)['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{status}: {body[:200]}"
