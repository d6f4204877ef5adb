"""The last minutes of the engine for /admin's charts: a sample every second in a ring buffer,
kept in the app's state. Sampling runs on the event loop and reads only ints and lengths (the
engine steps on its worker thread)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from itertools import pairwise

from inference.engine_front import EngineFront


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

    @classmethod
    def between(cls, a: Sample, b: Sample) -> Rates | None:
        dt = b.time - a.time
        if dt <= 0:
            return None
        return cls(b.time, (b.prompt_tokens - a.prompt_tokens) / dt, (b.generation_tokens - a.generation_tokens) / dt)


class History:
    def __init__(self, front: EngineFront, interval: float = 1.0, seconds: float = 300.0):
        self.front = front
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=int(seconds / interval) + 1)

    def sample_now(self) -> Sample:
        """A sample of this moment (not kept)."""
        gauges = self.front.gauges()
        return Sample(time.monotonic(), gauges.running, gauges.waiting, gauges.kv_usage, gauges.stats.prompt_tokens,
                      gauges.stats.generation_tokens)

    def sample(self) -> None:
        self.samples.append(self.sample_now())

    def rates(self) -> list[Rates]:
        """Between each two consecutive samples."""
        return [r for a, b in pairwise(self.samples) if (r := Rates.between(a, b)) is not None]

    def recent_rates(self, seconds: float = 10.0) -> Rates | None:
        """Average tokens per second over about the last `seconds`, from the samples and now."""
        if not self.samples:
            return None
        now = self.sample_now()
        first = next((s for s in self.samples if now.time - s.time <= seconds), self.samples[-1])
        return Rates.between(first, now)

    async def run(self) -> None:
        """Sample every `interval` seconds until cancelled (the app's lifespan runs it)."""
        while True:
            self.sample()
            await asyncio.sleep(self.interval)
