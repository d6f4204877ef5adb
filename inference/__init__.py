"""Code Llama inference: model, paged KV cache, continuous batching, offline and async APIs.

The names below are imported on first use, so that `codellama`'s argument parsing (which reads
`inference.model_info` and `inference.commands`) answers without loading torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_WHERE = {"AsyncEngine": "async_engine", "LLMEngine": "engine", "EngineProcess": "engine_process", "LLM": "llm",
          "EngineConfig": "config", "CompletionOutput": "outputs", "EngineOutput": "outputs",
          "RequestOutput": "outputs", "TokenLogprob": "outputs", "SamplingParams": "sampling_params"}
__all__ = sorted(_WHERE)

if TYPE_CHECKING:
    from .async_engine import AsyncEngine
    from .config import EngineConfig
    from .engine import LLMEngine
    from .engine_process import EngineProcess
    from .llm import LLM
    from .outputs import CompletionOutput, EngineOutput, RequestOutput, TokenLogprob
    from .sampling_params import SamplingParams


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'inference' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
