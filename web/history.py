"""The last minutes of the engine for /admin's charts: a sample every second in a ring buffer,
kept in the app's state. Sampling runs on the event loop and reads only ints and lengths (the
engine steps on its worker thread)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from inference import LLMEngine


@dataclass(frozen=True, slots=True)
class Sample:
    time: float  # time.monotonic()
    running: int  # sequences
    waiting: int
    kv_usage: float  # 0..1
    prompt_tokens: int  # since start
    generation_tokens: int


@dataclass(frozen=True, slots=True)
class Rates:
    """Tokens per second between two samples."""

    time: float
    prompt: float
    generation: float


class History:
    def __init__(self, engine: LLMEngine, interval: float = 1.0, seconds: float = 300.0):
        self.engine = engine
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=int(seconds / interval) + 1)
        self._task: asyncio.Task | None = None

    def sample_now(self) -> Sample:
        """A sample of this moment (not kept)."""
        core = self.engine
        return Sample(time.monotonic(), len(core.scheduler.running), len(core.scheduler.waiting), core.blocks.usage,
                      core.stats.prompt_tokens, core.stats.generation_tokens)

    def sample(self) -> None:
        self.samples.append(self.sample_now())

    def rates(self) -> list[Rates]:
        out = []
        for a, b in zip(self.samples, list(self.samples)[1:]):
            dt = b.time - a.time
            out.append(Rates(b.time, (b.prompt_tokens - a.prompt_tokens) / dt,
                             (b.generation_tokens - a.generation_tokens) / dt))
        return out

    def recent_rates(self, seconds: float = 10.0) -> Rates | None:
        """Average tokens per second over about the last `seconds`, from the samples and now."""
        if not self.samples:
            return None
        now = self.sample_now()
        first = next((s for s in self.samples if now.time - s.time <= seconds), self.samples[-1])
        dt = now.time - first.time
        if dt <= 0:
            return None
        return Rates(now.time, (now.prompt_tokens - first.prompt_tokens) / dt,
                     (now.generation_tokens - first.generation_tokens) / dt)

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="admin-history")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
