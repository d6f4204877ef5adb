"""Code Llama inference: model, paged KV cache, continuous batching, offline and async APIs."""

from .async_engine import AsyncEngine
from .engine import LLMEngine
from .engine_process import EngineProcess
from .llm import LLM
from .config import EngineConfig
from .outputs import CompletionOutput, EngineOutput, RequestOutput, TokenLogprob
from .sampling_params import SamplingParams

__all__ = ["AsyncEngine", "CompletionOutput", "EngineConfig", "EngineOutput", "EngineProcess", "LLM", "LLMEngine", "RequestOutput", "SamplingParams", "TokenLogprob"]
