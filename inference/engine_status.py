"""The engine's fixed facts and its numbers at one moment: what a front, the metrics pages and
the admin page read of an engine, wherever it runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .config import EngineConfig
from .model_info import ModelInfo


@dataclass(slots=True)
class EngineStats:
    """Counters since start, for the metrics pages."""

    prompt_tokens: int = 0  # prompt tokens computed (prefix-cache hits excluded)
    generation_tokens: int = 0
    steps: int = 0
    launch_seconds: float = 0.0  # host time scheduling, preparing and queueing steps
    wait_seconds: float = 0.0  # host time waiting for the device's results
    output_seconds: float = 0.0  # host time turning results into outputs
    draft_tokens: int = 0  # drafted tokens verified (speculative decoding)
    accepted_tokens: int = 0  # of those, accepted
    drafts: int = 0  # drafts verified, one per sequence and verifying step (mean accepted length: accepted / drafts)


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What a server needs to know of its engine, fixed once the engine has started."""

    config: EngineConfig
    model_info: ModelInfo
    num_blocks: int

    @property
    def model_dir(self) -> Path:
        return self.config.model_dir


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineGauges:
    """The engine's numbers at one moment, for the metrics pages."""

    running: int = 0  # sequences in the running batch
    waiting: int = 0
    unfinished_requests: int = 0
    free_blocks: int
    kv_usage: float = 0.0
    prefix_queries: int = 0
    prefix_hits: int = 0
    preemptions: int = 0
    stats: EngineStats = dataclasses.field(default_factory=EngineStats)
