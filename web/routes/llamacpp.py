"""llama.cpp-compatible routes: POST /infill, /tokenize, /detokenize."""

from __future__ import annotations

from collections.abc import AsyncIterator

from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from inference import EngineOutput, RequestOutput
from inference.prompts import infill_prompt

from ..body import StrictJSON
from ..errors import APIError, bad_request
from ..generation import Generation, SampledPrompt
from ..logprobs import token_bytes
from ..openapi import GENERATION_ERRORS, documented
from ..protocol.common import Usage
from ..protocol.llamacpp import (DetokenizeRequest, DetokenizeResponse, InfillRequest, InfillResult, InfillTimings,
                                 TokenizeRequest, TokenizeResponse, TokenPiece)
from ..sampling import sampling_params
from ..state import ServerState

_TOKENIZER_ERRORS = (400, 401, 413, 500)
SNIPPET_SEPARATOR = "\n\n--- snippet ---\n\n"  # llama.cpp's, for models without file-separator tokens


def _piece(tok, token_id: int) -> str | list[int]:
    """A token's text, or (as llama.cpp gives a piece that is not valid UTF-8 alone) its bytes."""
    raw = token_bytes(tok, token_id)
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return list(raw)


def _last_chunk(serving: ServerState, out: EngineOutput, text: str, usage: Usage) -> InfillResult:
    m = out.metrics
    predicted_ms = 1000 * (m.last_token_time - m.first_token_time) if m.last_token_time else 0.0
    predicted = usage.completion_tokens
    timings = InfillTimings(
        prompt_n=usage.prompt_tokens - usage.prompt_tokens_details.cached_tokens,
        prompt_ms=1000 * (m.first_token_time - m.arrival_time) if m.first_token_time else 0.0,
        predicted_n=predicted, predicted_ms=predicted_ms,
        predicted_per_second=1 / per_token if (per_token := m.time_per_output_token(predicted)) else None)
    return InfillResult(content=text, stop=True, model=serving.model_id,
                        stop_type="limit" if out.outputs[0].finish_reason == "length" else "eos",
                        tokens_predicted=predicted, tokens_evaluated=usage.prompt_tokens,
                        tokens_cached=usage.prompt_tokens_details.cached_tokens, truncated=False, timings=timings)


class LlamaCppController(Controller):
    path = "/"
    tags = ["llama.cpp"]

    @post("/infill", dto=StrictJSON[InfillRequest], return_dto=None, status_code=200,
          summary="Fill in the middle (llama.cpp's /infill)",
          description="The code between input_prefix (+ prompt) and input_suffix; `stream: true` sends "
                      "server-sent events without a [DONE] sentinel, as llama.cpp does.",
          **documented(tuple(s for s in GENERATION_ERRORS if s != 404),
                       {"input_prefix": "def fib(n):\n    ", "input_suffix": "\n    return a\n", "n_predict": 64},
                       stream=InfillResult, stream_note=" (the last has stop true and the totals); no [DONE]",
                       sentinel=False))
    async def infill(self, data: JSONBody[InfillRequest], request: Request,
                     serving: NamedDependency[ServerState]) -> Response[InfillResult]:
        extra = "".join(SNIPPET_SEPARATOR + chunk.text for chunk in data.input_extra)

        def build():
            with bad_request("input_prefix"):
                serving.model_info.require("infilling")
                return infill_prompt(serving.tokenizer, extra + data.input_prefix + data.prompt, data.input_suffix)

        prompt = await serving.make_prompt(build, (extra, data.input_prefix, data.prompt, data.input_suffix))
        params = sampling_params(
            None if data.n_predict < 0 else data.n_predict, temperature=data.temperature, top_k=data.top_k,
            top_p=data.top_p, min_p=data.min_p, seed=data.seed if data.seed >= 0 else None, stop=data.stop,
            repetition_penalty=data.repeat_penalty, presence_penalty=data.presence_penalty,
            frequency_penalty=data.frequency_penalty, ignore_eos=data.ignore_eos)
        gen = serving.generate([SampledPrompt(prompt, params)], request.receive, "infilling")

        def whole(outs: list[RequestOutput], usage: Usage) -> InfillResult:
            return _last_chunk(serving, outs[0], outs[0].outputs[0].text, usage)

        async def events(gen: Generation) -> AsyncIterator[InfillResult]:
            async for _, out in gen:
                text = out.outputs[0].text
                if out.finished:
                    yield _last_chunk(serving, out, text, gen.usage())
                elif text:
                    yield InfillResult(content=text, stop=False)

        return await gen.respond(data.stream, events, whole, done=False)

    @post("/tokenize", dto=StrictJSON[TokenizeRequest], return_dto=None, status_code=200, sync_to_thread=True,
          summary="Text to token ids", **documented(_TOKENIZER_ERRORS, {"content": "def fib(n):", "with_pieces": True}))
    def tokenize(self, data: JSONBody[TokenizeRequest],
                 serving: NamedDependency[ServerState]) -> TokenizeResponse:  # (on a worker thread: long texts)
        tok = serving.tokenizer
        ids = tok.encode(data.content, bos=data.add_special)
        if data.with_pieces:
            return TokenizeResponse([TokenPiece(i, _piece(tok, i)) for i in ids])
        return TokenizeResponse(ids)

    @post("/detokenize", dto=StrictJSON[DetokenizeRequest], return_dto=None, status_code=200, sync_to_thread=False,
          summary="Token ids to text", **documented(_TOKENIZER_ERRORS, {"tokens": [1, 100, 200]}))
    def detokenize(self, data: JSONBody[DetokenizeRequest],
                   serving: NamedDependency[ServerState]) -> DetokenizeResponse:
        vocab = serving.tokenizer.vocab_size
        bad = [t for t in data.tokens if not 0 <= t < vocab]
        if bad:
            raise APIError(400, f"token ids {bad[:5]} are outside the vocabulary [0, {vocab})", param="tokens")
        return DetokenizeResponse(serving.tokenizer.decode(data.tokens))
