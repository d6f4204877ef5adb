"""Request fields -> SamplingParams, with the engine's own validation answered as a 400."""

from __future__ import annotations

from dataclasses import fields

from inference import SamplingParams

from .errors import APIError
from .protocol.common import SamplingFields

_FIELDS = {f.name for f in fields(SamplingParams)}


def sampling_params(max_tokens: int | None, **optional) -> SamplingParams:
    """`max_tokens` is passed as given (None: up to the context window); the other fields only
    when set, so that SamplingParams' defaults apply to what the client left out."""
    try:
        return SamplingParams(max_tokens=max_tokens, **{k: v for k, v in optional.items() if v is not None})
    except ValueError as e:
        name = str(e).split(" ", 1)[0]  # SamplingParams' messages start with the field's name
        raise APIError(400, str(e), param=name if name in _FIELDS else None) from None


def openai_sampling_params(req: SamplingFields, max_tokens: int | None, logprobs: int | None,
                           prompt_logprobs: int | None = None) -> SamplingParams:
    """The sampling fields completions and chat share, plus their own max_tokens and logprobs
    (after the checks OpenAI makes of the shared fields)."""
    if req.stream_options is not None and not req.stream:
        raise APIError(400, "stream_options is only allowed when stream is true", param="stream_options")
    if req.logit_bias:
        raise APIError(400, "logit_bias is not supported by this server", param="logit_bias")
    return sampling_params(
        max_tokens, n=req.n, temperature=req.temperature, top_p=req.top_p, top_k=req.top_k, min_p=req.min_p,
        seed=req.seed, stop=[req.stop] if isinstance(req.stop, str) else req.stop, logprobs=logprobs,
        prompt_logprobs=prompt_logprobs,
        presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
        repetition_penalty=req.repetition_penalty, ignore_eos=req.ignore_eos)
