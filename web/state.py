"""What the routes share, built once per app and injected with `Provide`: the engine, admission
control, accounting, the live generations, and the shutdown sequence."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from litestar.types import Receive
from prometheus_client import CollectorRegistry

from inference.engine_front import EngineFront

from .accounting import Accounting
from .admission import Admission
from .errors import APIError
from .generation import Generation, SampledPrompt
from .metrics import ServerCollector
from .protocol.common import InfillTokens, ModelCard
from .settings import ServerSettings

T = TypeVar("T")

# prompts of up to this many characters are tokenized on the event loop: about half a millisecond
# on a slow core, what the hop to a worker thread and back costs there
INLINE_PROMPT_CHARS = 2048


class ServerState:
    def __init__(self, front: EngineFront, settings: ServerSettings):
        self.front = front  # the engine, on a thread or in a process of its own
        self.settings = settings
        self.tokenizer = front.tokenizer
        self.model_info = front.info.model_info
        self.model_id = self.model_info.name
        self.created = int(time.time())
        self.admission = Admission(front.info.config.max_num_seqs, settings.max_queue, settings.retry_after)
        self.registry = CollectorRegistry()  # this app's metrics, not prometheus-client's global registry
        self.accounting = Accounting(self.registry)
        self.registry.register(ServerCollector(self))
        self.generations: set[Generation] = set()
        self._shutdown_timer: asyncio.TimerHandle | None = None
        self.request_exit: Callable[[int], None] | None = None  # set by the HTTP server that runs the app

    async def start(self) -> None:
        self.front.on_death.append(self._engine_died)
        await self.front.start()

    def _engine_died(self, reason: str) -> None:
        if self.request_exit is not None and not self.settings.keep_serving_on_engine_failure:
            self.request_exit(1)

    async def stop(self) -> None:
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
        self.end_all()
        await self.front.stop()

    def begin_shutdown(self) -> None:
        """Admit nothing new (503); in-flight requests get `shutdown_grace` seconds to finish, then
        end with a 503 error (an error event and [DONE] for a stream). Call on the event loop."""
        if self.admission.closed:
            return
        self.admission.closed = True
        self._shutdown_timer = asyncio.get_running_loop().call_later(self.settings.shutdown_grace, self.end_all)

    def end_all(self) -> None:
        for gen in list(self.generations):
            gen.end(APIError(503, "the server is shutting down", code="shutting_down"))

    def check_model(self, requested: str | None) -> None:
        if requested is not None and requested != self.model_id:
            raise APIError(404, f"The model `{requested}` does not exist; this server serves `{self.model_id}`.",
                           param="model", code="model_not_found")

    async def make_prompt(self, build: Callable[[], T], texts: Iterable[str]) -> T:
        """Run `build`, which tokenizes `texts`: a long text on a worker thread, so that it never
        stalls the other streams, a short one (or token ids) here, where it takes less time than
        the hop to a thread would; a text too long for the context window whatever its tokens is
        refused before any tokenizing (a token stands for at most `max_piece_chars` characters;
        the factor 2 leaves room for normalisation)."""
        chars = sum(map(len, texts))
        at_least, window = chars // (2 * self.tokenizer.max_piece_chars), self.front.info.config.max_model_len
        if at_least >= window:
            raise APIError(400, f"the prompt has at least {at_least} tokens ({chars} characters); the context "
                                f"window is {window} tokens")
        if chars <= INLINE_PROMPT_CHARS:
            return build()
        return await asyncio.to_thread(build)

    def generate(self, prompts: list[SampledPrompt], receive: Receive | None, ability: str) -> Generation:
        """Admit and start the engine work of a request of `ability` (completion, infilling, chat)."""
        if self.front.failure is not None:
            raise APIError(503, f"the engine is not running: {self.front.failure}", code="engine_unavailable")
        return Generation(self, prompts, receive, ability)

    def model_card(self) -> ModelCard:
        tok = self.tokenizer
        # only a model that can infill advertises the pieces (a base 34B's tokenizer has them too)
        infill = InfillTokens(*(tok.infill_id(k) for k in ("prefix", "suffix", "middle", "eot"))) \
            if "infilling" in self.model_info.capabilities else None
        config = self.front.info.config
        return ModelCard(id=self.model_id, created=self.created, max_model_len=config.max_model_len,
                         vocab_size=tok.vocab_size, capabilities=list(self.model_info.capabilities),
                         infill_token_ids=infill, weights=config.weights_label, kv_cache_dtype=config.kv_cache_label)
