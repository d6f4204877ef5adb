"""What an engine front and its engine loop say to each other, the same whether the engine runs
on a thread (the messages are passed as they are) or in a process of its own (pickled)."""

from __future__ import annotations

from dataclasses import dataclass

from .engine_status import EngineGauges, EngineInfo
from .outputs import EngineOutput
from .requests import EngineRequest


# --- front -> engine ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AddRequest:
    request: EngineRequest


@dataclass(frozen=True, slots=True)
class AbortRequest:
    request_id: str


@dataclass(frozen=True, slots=True)
class StopEngine:
    """Abort what runs and stop; the loop answers EngineStopped."""


# --- engine -> front ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EngineReady:
    info: EngineInfo


@dataclass(frozen=True, slots=True)
class EngineFailedToStart:
    error: BaseException


@dataclass(frozen=True, slots=True)
class StepOutputs:
    """One step's output deltas (without prompts: the front has them) and the gauges after it."""

    outputs: list[EngineOutput]
    gauges: EngineGauges


@dataclass(frozen=True, slots=True)
class RequestsFailed:
    request_ids: list[str]
    error: str


@dataclass(frozen=True, slots=True)
class EngineStopped:
    pass


ToEngine = AddRequest | AbortRequest | StopEngine
FromEngine = EngineReady | EngineFailedToStart | StepOutputs | RequestsFailed | EngineStopped
