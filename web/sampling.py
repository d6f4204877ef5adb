"""Request fields -> SamplingParams, with the engine's own validation answered as a 400."""

from __future__ import annotations

from dataclasses import fields

from inference import SamplingParams

from .errors import APIError

_FIELDS = {f.name for f in fields(SamplingParams)}


def sampling_params(max_tokens: int | None, **optional) -> SamplingParams:
    """`max_tokens` is passed as given (None: up to the context window); the other fields only
    when set, so that SamplingParams' defaults apply to what the client left out."""
    try:
        return SamplingParams(max_tokens=max_tokens, **{k: v for k, v in optional.items() if v is not None})
    except ValueError as e:
        name = str(e).split(" ", 1)[0]  # SamplingParams' messages start with the field's name
        raise APIError(400, str(e), param=name if name in _FIELDS else None) from None


def stop_list(stop: str | list[str] | None) -> list[str] | None:
    return [stop] if isinstance(stop, str) else stop
