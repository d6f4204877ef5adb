"""POST /v1/chat/completions: Code Llama Instruct's chat format, one or more turns."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from inference import RequestOutput
from inference.prompts import chat_prompt, replayed_chat

from ..body import StrictJSON
from ..errors import APIError, bad_request
from ..generation import Generation, SampledPrompt
from ..logprobs import chat_logprobs
from ..openapi import GENERATION_ERRORS, documented
from ..protocol.chat import (AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk,
                             ChatCompletionRequest, ChunkChoice, Delta, Message)
from ..protocol.common import Usage
from ..sampling import openai_sampling_params
from ..state import ServerState

# OpenAI fields this server cannot honour, with the values that ask for nothing it lacks.
_NEUTRAL = {
    "response_format": lambda v: v.get("type") == "text",
    "tools": lambda v: not v,
    "functions": lambda v: not v,
    "tool_choice": lambda v: v == "none",
    "function_call": lambda v: v == "none",
    "parallel_tool_calls": lambda v: True,  # meaningless without tools
    "modalities": lambda v: v == ["text"],
    "audio": lambda v: False,
    "prediction": lambda v: False,
    "reasoning_effort": lambda v: False,
    "web_search_options": lambda v: False,
}


def _refuse_unsupported(req: ChatCompletionRequest) -> None:
    for name, neutral in _NEUTRAL.items():
        value = getattr(req, name)
        if value is not None and not neutral(value):
            raise APIError(400, f"{name} is not supported by this server", param=name)
    if req.top_logprobs is not None and not req.logprobs:
        raise APIError(400, "top_logprobs needs logprobs set to true", param="top_logprobs")


def _message_dicts(messages: list[Message]) -> list[dict]:
    """The messages as `chat_prompt` takes them: text content only; "developer" is OpenAI's newer
    name for the system role."""
    out = []
    for i, m in enumerate(messages):
        if m.role not in ("system", "developer", "user", "assistant"):
            raise APIError(400, f"messages[{i}]: role {m.role!r} is not supported (system, user, assistant)",
                           param=f"messages[{i}].role")
        content = m.content
        if isinstance(content, list):
            if any(part.type != "text" or part.text is None for part in content):
                raise APIError(400, f"messages[{i}]: only text content parts are supported",
                               param=f"messages[{i}].content")
            content = "".join(part.text for part in content)
        if content is None:
            raise APIError(400, f"messages[{i}] has no content", param=f"messages[{i}].content")
        out.append({"role": "system" if m.role == "developer" else m.role, "content": content})
    return out


class ChatController(Controller):
    path = "/v1/chat/completions"
    tags = ["OpenAI"]

    @post("/", dto=StrictJSON[ChatCompletionRequest], return_dto=None, status_code=200,
          summary="Answer a conversation (Instruct models)",
          description="OpenAI's chat completions; `stream: true` answers with server-sent events.",
          **documented(GENERATION_ERRORS, {"messages": [{"role": "system", "content": "Provide answers in Python"},
                                                        {"role": "user", "content": "Reverse a list"}],
                                           "max_tokens": 128},
                       stream=ChatCompletionChunk, stream_note=", then `data: [DONE]`"))
    async def create_chat_completion(self, data: JSONBody[ChatCompletionRequest], request: Request,
                                     serving: NamedDependency[ServerState]) -> Response[ChatCompletion]:
        serving.check_model(data.model)
        _refuse_unsupported(data)
        messages = _message_dicts(data.messages)

        def build():
            with bad_request("messages"):
                serving.model_info.require("chat")
                return chat_prompt(serving.tokenizer, replayed_chat(serving.tokenizer, messages))

        prompt = await serving.make_prompt(build, (m["content"] for m in messages))
        max_tokens = data.max_completion_tokens if data.max_completion_tokens is not None else data.max_tokens
        params = openai_sampling_params(data, max_tokens, (data.top_logprobs or 0) if data.logprobs else None)
        responses = _Responses(serving, data)
        gen = serving.generate([SampledPrompt(prompt, params)], request.receive, "chat")
        return await gen.respond(bool(data.stream), responses.events, responses.whole)


class _Responses:
    def __init__(self, serving: ServerState, req: ChatCompletionRequest):
        self.tok = serving.tokenizer
        self.logprobs = bool(req.logprobs)
        self.include_usage = bool(req.stream_options and req.stream_options.include_usage)
        self.n = req.n or 1
        self.id, self.created, self.model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), serving.model_id

    def whole(self, outs: list[RequestOutput], usage: Usage) -> ChatCompletion:
        choices = [ChatChoice(c.index, AssistantMessage(c.text),
                              chat_logprobs(self.tok, c.logprobs or [], fresh=True) if self.logprobs else None,
                              c.finish_reason)
                   for c in outs[0].outputs]
        return ChatCompletion(id=self.id, created=self.created, model=self.model, choices=choices, usage=usage)

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=choices, usage=usage)

    async def events(self, gen: Generation) -> AsyncIterator[ChatCompletionChunk]:
        for i in range(self.n):  # as OpenAI: each choice opens with the role
            yield self._chunk([ChunkChoice(i, Delta(role="assistant", content=""), None, None)])
        begun: set[int] = set()  # choices whose text has begun (the answer's first piece loses its space)
        async for _, out in gen:
            for c in out.outputs:
                lp = chat_logprobs(self.tok, c.logprobs or [], c.index not in begun) if self.logprobs else None
                if self.tok.has_text(c.token_ids):
                    begun.add(c.index)
                if c.text or lp is not None or c.finish_reason is not None:
                    yield self._chunk([ChunkChoice(c.index, Delta(content=c.text or None), lp, c.finish_reason)])
        if self.include_usage:
            yield self._chunk([], gen.usage())
