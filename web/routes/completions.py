"""POST /v1/completions: plain completion of one or many prompts, or infilling with `suffix`.

`echo` with `logprobs` scores the prompt too, and `echo` with `max_tokens: 0` only scores it (as
evaluation harnesses ask for log-likelihoods): the engine then generates one token, which the
answer leaves out."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from inference import EngineOutput, RequestOutput
from inference.prompts import Prompt, completion_prompt, infill_prompt

from ..body import StrictJSON
from ..errors import APIError, bad_request
from ..generation import Generation, SampledPrompt
from ..logprobs import completion_logprobs, echoed_prompt_logprobs
from ..openapi import GENERATION_ERRORS, documented
from ..protocol.common import Usage
from ..protocol.completions import Completion, CompletionChoice, CompletionRequest
from ..sampling import openai_sampling_params
from ..state import ServerState


def _prompt_items(prompt) -> list[str | list[int]]:
    """A string, a list of strings, a list of token ids, or a list of lists of token ids -> the
    prompts in order."""
    if isinstance(prompt, str):
        return [prompt]
    if prompt and all(isinstance(x, int) for x in prompt):
        return [list(prompt)]
    if prompt and (all(isinstance(x, str) for x in prompt) or all(isinstance(x, list) for x in prompt)):
        return list(prompt)
    raise APIError(400, "prompt must be a string, a list of strings, a list of token ids or a list of lists of "
                        "token ids (not empty, not mixed)", param="prompt")


def _prompts(serving: ServerState, req: CompletionRequest, items: list[str | list[int]]) -> list[Prompt]:
    tok = serving.tokenizer
    if req.suffix is None:
        with bad_request("prompt"):
            return [completion_prompt(tok, x) if isinstance(x, str) else Prompt(x) for x in items]
    if not all(isinstance(x, str) for x in items):
        raise APIError(400, "suffix (infilling) needs the prompt as text, not token ids", param="suffix")
    with bad_request("suffix"):
        serving.model_info.require("infilling")
        return [infill_prompt(tok, x, req.suffix) for x in items]


def _refuse_unsupported(req: CompletionRequest) -> None:
    if req.best_of is not None and req.best_of != (req.n or 1):
        raise APIError(400, "best_of is not supported (only best_of equal to n)", param="best_of")
    if req.echo and req.suffix is not None:
        raise APIError(400, "echo cannot be combined with suffix", param="echo")
    if req.max_tokens == 0 and not req.echo:
        raise APIError(400, "max_tokens 0 returns nothing but the prompt: it needs echo", param="max_tokens")


class CompletionsController(Controller):
    path = "/v1/completions"
    tags = ["OpenAI"]

    @post("/", dto=StrictJSON[CompletionRequest], return_dto=None, status_code=200,
          summary="Complete prompts, or fill in the middle (suffix)",
          description="OpenAI's (legacy) completions; `stream: true` answers with server-sent events.",
          **documented(GENERATION_ERRORS, {"prompt": "def fib(n):", "max_tokens": 64, "temperature": 0.2},
                       stream=Completion, stream_note=" (a chunk), then `data: [DONE]`"))
    async def create_completion(self, data: JSONBody[CompletionRequest], request: Request,
                                serving: NamedDependency[ServerState]) -> Response[Completion]:
        serving.check_model(data.model)
        _refuse_unsupported(data)
        items = _prompt_items(data.prompt)
        texts = [x for x in [*items, data.suffix or ""] if isinstance(x, str)]
        prompts = await serving.make_prompt(lambda: _prompts(serving, data, items), texts)
        score_only = data.max_tokens == 0
        params = openai_sampling_params(data, 1 if score_only else data.max_tokens, data.logprobs,
                                        prompt_logprobs=data.logprobs if data.echo else None)
        echo = [x if isinstance(x, str) else serving.tokenizer.decode(x) for x in items] if data.echo else None
        responses = _Responses(serving, data, echo, score_only)
        gen = serving.generate([SampledPrompt(p, params) for p in prompts], request.receive,
                               "completion" if data.suffix is None else "infilling")
        return await gen.respond(bool(data.stream), responses.events, responses.whole)


class _Responses:
    """The response objects of one request, whole or chunk by chunk. Choice i*n + k is sample k of
    prompt i, as in OpenAI's API."""

    def __init__(self, serving: ServerState, req: CompletionRequest, echo: list[str] | None, score_only: bool):
        self.tok = serving.tokenizer
        self.logprobs = req.logprobs is not None
        self.include_usage = bool(req.stream_options and req.stream_options.include_usage)
        self.n = req.n or 1
        self.echo = echo
        self.score_only = score_only  # the one generated token is left out
        self._prompt_logprobs: dict[int, list] = {}  # per prompt, from its first delta
        self.id, self.created, self.model = f"cmpl-{uuid.uuid4().hex}", int(time.time()), serving.model_id

    def _completion(self, choices: list[CompletionChoice], usage: Usage | None = None) -> Completion:
        return Completion(id=self.id, created=self.created, model=self.model, choices=choices, usage=usage)

    def whole(self, outs: list[RequestOutput], usage: Usage) -> Completion:
        choices = []
        for p, out in enumerate(outs):
            for c in out.outputs:
                choices.append(self._choice(p, out, out.prompt_token_ids, c, echo=bool(self.echo), offset=0)[0])
        return self._completion(choices, self._usage(usage))

    async def events(self, gen: Generation) -> AsyncIterator[Completion]:
        offsets: dict[int, int] = {}  # per choice: where its next token starts in its text
        echoed: set[int] = set()
        async for p, out in gen:
            for c in out.outputs:
                i = p * self.n + c.index
                echo = bool(self.echo) and i not in echoed  # the echoed prompt leads the choice's first chunk
                echoed.add(i)
                choice, offsets[i] = self._choice(p, out, gen.requests[p].prompt_token_ids, c, echo,
                                                  offsets.get(i, 0))
                if choice.text or choice.logprobs is not None or choice.finish_reason is not None:
                    yield self._completion([choice])
        if self.include_usage:
            yield self._completion([], self._usage(gen.usage()))

    def _choice(self, p: int, out: EngineOutput, prompt_token_ids, c, echo: bool,
                offset: int) -> tuple[CompletionChoice, int]:
        """Choice c of prompt p (whole, or a stream's delta) and the text offset after it; `echo`:
        the prompt (and its logprobs) lead it."""
        if out.prompt_logprobs is not None:
            self._prompt_logprobs[p] = out.prompt_logprobs
        text, lp = "", None
        if echo:
            text = self.echo[p]
            if self.logprobs:
                lp, offset = echoed_prompt_logprobs(self.tok, prompt_token_ids, self._prompt_logprobs[p])
        if not self.score_only:
            text += c.text
            if self.logprobs:
                generated, offset = completion_logprobs(self.tok, c.logprobs or [], offset)
                lp = generated if lp is None else lp + generated
        reason = "length" if self.score_only and c.finish_reason else c.finish_reason
        return CompletionChoice(p * self.n + c.index, text, lp, reason), offset

    def _usage(self, usage: Usage) -> Usage:
        if not self.score_only:
            return usage
        return Usage(usage.prompt_tokens, 0, usage.prompt_tokens, usage.prompt_tokens_details)
