"""The playground at /: Chat | Infill | Complete | Python, each answer streamed over SSE.

    GET  /[?tab=infill]              the page (the tabs of the abilities the model lacks say why)
    POST /playground/{chat,infill,complete,python}   start an answer: a fragment that streams it, or an error
    GET  /playground/stream/{id}     the answer's server-sent events (see streams.py)
    POST /playground/stop/{id}       the Stop button
    GET  /playground/reset           an empty conversation

Prompts are built by inference/prompts.py and run through ServerState.generate, as the API's
are: the same admission (429 when full), accounting and abort on disconnect."""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.plugins.htmx import HTMXTemplate
from litestar.response import ServerSentEvent, ServerSentEventMessage, Template
from litestar.status_codes import HTTP_204_NO_CONTENT

from inference.prompts import DEFAULT_SYSTEM, chat_prompt, completion_prompt, infill_prompt, python_prompt, split_fill

from ..errors import APIError, bad_request
from ..generation import SampledPrompt
from ..sampling import sampling_params
from ..state import ServerState
from ..auth import USER, requires
from .render import segments
from .streams import AnswerStats, PageAnswer, PageStreams

DEFAULTS = {"temperature": 0.2, "top_p": 0.95, "max_tokens": 512}


@dataclass(frozen=True, slots=True)
class Tab:
    key: str
    label: str
    disabled_reason: str | None


TABS = (("chat", "Chat", "chat"), ("infill", "Infill", "infilling"), ("complete", "Complete", "completion"),
        ("python", "Python", "python"))
ABILITY = {key: ability for key, _, ability in TABS}


def _tabs(serving: ServerState) -> list[Tab]:
    tabs = []
    for key, label, ability in TABS:
        try:
            serving.model_info.require(ability)
            tabs.append(Tab(key, label, None))
        except ValueError as e:
            tabs.append(Tab(key, label, str(e)))
    return tabs


def _number(form, name: str, kind: type):
    raw = form.get(name, "").strip()
    if not raw:
        return DEFAULTS[name]
    try:
        return kind(raw)
    except ValueError:
        raise APIError(400, f"{name} must be {'a whole number' if kind is int else 'a number'}, got {raw!r}",
                       param=name) from None


def _params(form):
    return sampling_params(_number(form, "max_tokens", int), temperature=_number(form, "temperature", float),
                           top_p=_number(form, "top_p", float))


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")  # browsers send a textarea's line breaks as CRLF


def _field(form, name: str) -> str:
    return _lf(form.get(name, ""))


def _text(form, name: str, what: str) -> str:
    value = _field(form, name)
    if not value.strip():
        raise APIError(400, f"{what} is empty", param=name)
    return value


def _chat_messages(form) -> list[dict]:
    """The page keeps the conversation in hidden inputs: the user's and the assistant's turns."""
    users, answers = ([_lf(t) for t in form.getall(name, [])] for name in ("user_turn", "assistant_turn"))
    if len(users) != len(answers):
        raise APIError(400, "the conversation on the page is incomplete; press Reset")
    system = _field(form, "system").strip()
    messages = [{"role": "system", "content": system}] if system else []
    for user, answer in zip(users, answers):
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return messages + [{"role": "user", "content": _text(form, "message", "the message")}]


def _error(e: APIError, kind: str) -> Response:
    """A refused request as a fragment in the form's status line, with its real status code. A
    code tab's previous answer is cleared, lest it read as this request's (a chat keeps its
    conversation)."""
    return HTMXTemplate(template_name="partials/error.html",
                        context={"message": e.detail, "clear": None if kind == "chat" else f"{kind}-result"},
                        status_code=e.status_code, headers=e.headers or {}, re_target=f"#{kind}-status",
                        re_swap="innerHTML")


class PlaygroundController(Controller):
    guards = [requires(USER)]
    include_in_schema = False

    @get("/", sync_to_thread=False)
    def page(self, serving: NamedDependency[ServerState], tab: FromQuery[str | None] = None) -> Template:
        tabs = _tabs(serving)
        usable = [t.key for t in tabs if t.disabled_reason is None]
        first = tab if tab in usable else next(iter(usable), None)
        return Template(template_name="playground.html",
                        context={"tabs": tabs, "selected": first, "system": DEFAULT_SYSTEM, "defaults": DEFAULTS,
                                 "model": serving.model_info})

    async def _start(self, request: Request, serving: ServerState, streams: PageStreams, kind: str, build) -> Response:
        """Start the answer of a tab's form: `build(form)` gives the prompt, the text shown before
        and after the answer, and the start fragment's context."""
        form = await request.form()
        try:
            with bad_request():
                serving.model_info.require(ABILITY[kind])
            texts = [v for _, v in form.multi_items() if isinstance(v, str)]
            prompt, before, after, context = await serving.make_prompt(lambda: build(form), texts)
            generation = serving.generate([SampledPrompt(prompt, _params(form))], None, ABILITY[kind])
        except APIError as e:
            return _error(e, kind)
        streams.add(PageAnswer(generation, kind, before, after))
        return Template(template_name="partials/chat_start.html" if kind == "chat" else "partials/code_start.html",
                        context={"id": generation.id, "kind": kind, "before": before, "after": after, **context})

    @post("/playground/chat")
    async def chat(self, request: Request, serving: NamedDependency[ServerState],
                   streams: NamedDependency[PageStreams]) -> Response:
        def build(form):
            with bad_request("message"):
                prompt = chat_prompt(serving.tokenizer, _chat_messages(form))
            return prompt, "", "", {"message": _field(form, "message")}

        return await self._start(request, serving, streams, "chat", build)

    @post("/playground/infill")
    async def infill(self, request: Request, serving: NamedDependency[ServerState],
                     streams: NamedDependency[PageStreams]) -> Response:
        def build(form):
            with bad_request("code"):
                prefix, suffix = split_fill(_text(form, "code", "the code"))
                return infill_prompt(serving.tokenizer, prefix, suffix), prefix, suffix, {}

        return await self._start(request, serving, streams, "infill", build)

    @post("/playground/complete")
    async def complete(self, request: Request, serving: NamedDependency[ServerState],
                       streams: NamedDependency[PageStreams]) -> Response:
        def build(form):
            text = _text(form, "prompt", "the prompt")
            with bad_request("prompt"):
                return completion_prompt(serving.tokenizer, text), text, "", {}

        return await self._start(request, serving, streams, "complete", build)

    @post("/playground/python")
    async def python(self, request: Request, serving: NamedDependency[ServerState],
                     streams: NamedDependency[PageStreams]) -> Response:
        def build(form):  # as the console's Python ability: up to a new top-level statement
            text = _text(form, "prompt", "the prompt")
            with bad_request("prompt"):
                return python_prompt(serving.tokenizer, text, stop_at_top_level=True), text, "", {}

        return await self._start(request, serving, streams, "python", build)

    @get("/playground/stream/{key:str}")
    async def stream(self, key: FromPath[str], request: Request, streams: NamedDependency[PageStreams],
                     kind: FromQuery[str | None] = None) -> ServerSentEvent:
        answer = streams.claim(key)
        engine = request.app.template_engine

        def render_done(answer: PageAnswer, text: str, finish_reason: str | None, note: str | None,
                        stats: AnswerStats) -> str:
            return engine.get_template("partials/answer_done.html").render(
                kind=answer.kind, before=answer.before, after=answer.after, text=text, segments=segments(text),
                finish_reason=finish_reason, note=note, stats=stats)

        if answer is None:  # ended, or a reconnect after a lost connection: say so, once
            gone = engine.get_template("partials/answer_gone.html").render(kind=kind if kind in ABILITY else None)
            return ServerSentEvent([ServerSentEventMessage(data=gone, event="done")])
        answer.generation.watch(request.receive)
        return streams.stream(answer, render_done)

    @post("/playground/stop/{key:str}", status_code=HTTP_204_NO_CONTENT)
    async def stop(self, key: FromPath[str], streams: NamedDependency[PageStreams]) -> None:
        if not streams.stop(key):
            raise APIError(404, "this answer has already ended", code="answer_ended")

    @get("/playground/reset", sync_to_thread=False)
    def reset(self) -> Template:
        return Template(template_name="partials/chat_reset.html")
