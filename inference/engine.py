"""The synchronous engine: requests in, one batched step at a time, output deltas out.

    add_request -> Scheduler.schedule() -> ModelRunner.launch()     (step N+1 queued on the GPU)
                -> ModelRunner.collect() -> Scheduler.postprocess() (step N's tokens)
                -> SequenceOutput (detokenize, stop strings) -> RequestOutput deltas
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .block_manager import BlockManager
from .config import EngineConfig, ModelConfig
from .model_info import ModelInfo, load_model_info
from .model_source import resolve_model_dir
from .outputs import RequestOutput
from .requests import RequestMaker, RequestState
from .runner import LaunchedStep, ModelRunner, TokenSample
from .sampling_params import SamplingParams
from .scheduler import Batch, Finished, Scheduler
from .sequence import Sequence
from .tokenizer import Tokenizer

_DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
           "fp16": torch.float16, "half": torch.float16, "float32": torch.float32, "fp32": torch.float32}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of bfloat16, float16, float32")
    return _DTYPES[dtype]


@dataclass(slots=True)
class EngineStats:
    """Counters since start, for the metrics pages."""

    prompt_tokens: int = 0  # prompt tokens computed (prefix-cache hits excluded)
    generation_tokens: int = 0
    steps: int = 0
    launch_seconds: float = 0.0  # host time scheduling, preparing and queueing steps
    wait_seconds: float = 0.0  # host time waiting for the device's results
    output_seconds: float = 0.0  # host time turning results into outputs


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What a server needs to know of its engine, fixed once the engine has started."""

    model_dir: Path
    model_info: ModelInfo
    config: EngineConfig
    device: str
    dtype: str
    num_blocks: int


@dataclass(frozen=True, slots=True)
class EngineGauges:
    """The engine's numbers at one moment, for the metrics pages."""

    running: int  # sequences in the running batch
    waiting: int
    unfinished_requests: int
    free_blocks: int
    kv_usage: float
    prefix_queries: int
    prefix_hits: int
    preemptions: int
    stats: EngineStats


class LLMEngine:
    def __init__(self, model: str | Path | None = None, *, dtype: str | torch.dtype | None = None,
                 device: str | torch.device | None = None, block_size: int = 16,
                 num_kv_blocks: int | None = None, max_num_seqs: int = 256,
                 max_num_batched_tokens: int | None = None, enable_prefix_caching: bool = True,
                 max_model_len: int | None = None, enforce_eager: bool = False,
                 kv_cache_memory_fraction: float = 0.9, model_name: str | None = None,
                 capabilities: list[str] | None = None, load_format: str = "auto",
                 tensor_parallel_size: int = 1):
        self.model_dir = resolve_model_dir(model)
        self.model_config = ModelConfig.from_dir(self.model_dir)
        self.model_info = load_model_info(self.model_dir, model_name, capabilities)
        self.tokenizer = Tokenizer(self.model_dir / "tokenizer.model")
        if self.tokenizer.vocab_size > self.model_config.vocab_size:
            raise ValueError(f"{self.model_dir}: the tokenizer has {self.tokenizer.vocab_size} pieces but the "
                             f"model only {self.model_config.vocab_size} embeddings")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = resolve_dtype(dtype, self.device)
        window = self.model_config.max_position_embeddings
        if max_model_len is not None and max_model_len > window:
            raise ValueError(f"max_model_len {max_model_len} exceeds the model's {window} positions")
        self.config = EngineConfig(
            block_size=block_size, max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens or max(4096, max_num_seqs),
            max_model_len=max_model_len or window, enable_prefix_caching=enable_prefix_caching,
            num_kv_blocks=num_kv_blocks, enforce_eager=enforce_eager,
            kv_cache_memory_fraction=kv_cache_memory_fraction)
        if tensor_parallel_size < 1:
            raise ValueError(f"tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
        if tensor_parallel_size == 1:
            self.runner = ModelRunner(self.model_config, self.config, self.model_dir, self.dtype, self.device,
                                      self.tokenizer.vocab_size, load_format=load_format)
        else:
            from .tensor_parallel import TensorParallelRunner
            self.runner = TensorParallelRunner(self.model_config, self.config, self.model_dir, self.dtype,
                                               self.device, self.tokenizer.vocab_size, tensor_parallel_size,
                                               load_format)
        self.blocks = BlockManager(self.runner.num_blocks, block_size, enable_prefix_caching)
        self.scheduler = Scheduler(self.config, self.blocks, self.tokenizer.eos_id)
        self.request_maker = RequestMaker(self.tokenizer, self.config.max_model_len, block_size,
                                          self.runner.num_blocks)
        self.requests: dict[str, RequestState] = {}
        self.stats = EngineStats()
        self._in_flight: LaunchedStep | None = None

    # --- requests ----------------------------------------------------------------------------------

    def make_request(self, request_id: str, prompt: str | list[int], params: SamplingParams,
                     continues_prompt: bool = True) -> RequestState:
        """Validate and tokenize a request without touching the engine's state (safe to call while
        a step runs); see `RequestMaker.make`."""
        return self.request_maker.make(request_id, prompt, params, continues_prompt)

    def add(self, state: RequestState) -> None:
        if state.request_id in self.requests:
            raise ValueError(f"request id {state.request_id!r} is already running")
        self.requests[state.request_id] = state
        for seq in state.seqs:
            self.scheduler.add(seq)

    def add_request(self, request_id: str, prompt: str | list[int], params: SamplingParams) -> None:
        self.add(self.make_request(request_id, prompt, params))

    def abort(self, request_id: str) -> None:
        """Stop a request now and free its blocks."""
        self.scheduler.abort(request_id)
        self.requests.pop(request_id, None)

    def abort_all(self) -> list[str]:
        """Stop every request (a step failed, or the engine is stopping); returns their ids."""
        request_ids = list(self.requests)
        for request_id in request_ids:
            self.abort(request_id)
        return request_ids

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(self.model_dir, self.model_info, self.config, str(self.device),
                          str(self.dtype).removeprefix("torch."), self.blocks.num_blocks)

    def gauges(self) -> EngineGauges:
        blocks, scheduler = self.blocks, self.scheduler
        return EngineGauges(len(scheduler.running), len(scheduler.waiting), len(self.requests),
                            blocks.num_free_blocks, blocks.usage, blocks.prefix_queries, blocks.prefix_hits,
                            scheduler.num_preemptions, dataclasses.replace(self.stats))

    def shutdown(self) -> None:
        """Stop the other tensor-parallel ranks' processes, if any."""
        self.runner.shutdown()

    @property
    def has_unfinished(self) -> bool:
        return bool(self.requests) or self._in_flight is not None

    # --- one step ----------------------------------------------------------------------------------

    def step(self) -> list[RequestOutput]:
        """Launch the next step, then finish the one before it (whose GPU work is done by the time
        the new one is queued), so that the CPU work of each step overlaps the GPU work of the
        next. Returns the output deltas of the finished step."""
        outputs = []
        if self._in_flight is not None and any(s.params.uses_penalties for s in self._in_flight.batch.seqs):
            outputs += self._complete(self._in_flight)  # penalties need every previous token on the host
            self._in_flight = None
        start = time.perf_counter()
        batch = self.scheduler.schedule()
        launched = self._launch(batch) if batch.seqs else None
        self.stats.launch_seconds += time.perf_counter() - start
        if self._in_flight is not None:
            outputs += self._complete(self._in_flight)
        self._in_flight = launched
        return outputs

    def _launch(self, batch: Batch) -> LaunchedStep:
        now = time.monotonic()
        for seq, start, n in zip(batch.seqs, batch.starts, batch.num_new_tokens):
            metrics = self.requests[seq.request_id].metrics
            metrics.first_scheduled_time = metrics.first_scheduled_time or now
            self.stats.prompt_tokens += max(0, min(start + n, seq.num_prompt_tokens) - start)
        self.stats.steps += 1
        return self.runner.launch(batch)

    def _complete(self, step: LaunchedStep) -> list[RequestOutput]:
        start = time.perf_counter()
        samples, scored = self.runner.collect(step)
        waited = time.perf_counter()
        for i, logprobs in scored.items():
            state = self.requests.get(step.batch.seqs[i].request_id)
            if state is not None:  # (not aborted since)
                state.prompt_logprobs.extend(logprobs)
        tokens, finished = self.scheduler.postprocess(step.batch, [s.token if s else None for s in samples])
        outputs = self._outputs(step.batch, [s if t is not None else None for s, t in zip(samples, tokens)],
                                finished)
        self.stats.wait_seconds += waited - start
        self.stats.output_seconds += time.perf_counter() - waited
        return outputs

    def _outputs(self, batch: Batch, samples: list[TokenSample | None],
                 finished: list[Finished]) -> list[RequestOutput]:
        now = time.monotonic()
        stopped_by_token = {id(f.seq) for f in finished if f.reason == "stop"}
        touched: dict[str, list[Sequence]] = {}
        for seq, sample in zip(batch.seqs, samples):
            if sample is None:
                continue
            self.stats.generation_tokens += 1
            state = self.requests[seq.request_id]
            state.metrics.first_token_time = state.metrics.first_token_time or now
            state.metrics.last_token_time = now
            out = state.outputs[seq.index]
            if out.add_token(sample.token, sample.logprob, id(seq) in stopped_by_token):
                self.scheduler.finish(seq, "stop")
            touched.setdefault(seq.request_id, []).append(seq)
        results = []
        for request_id, seqs in touched.items():
            state = self.requests[request_id]
            deltas = [state.outputs[s.index].take_delta(s.finish_reason) for s in seqs]
            if state.finished:
                state.metrics.finished_time = now
                del self.requests[request_id]
            prompt_logprobs = None
            if state.prompt_logprobs is not None and not state.prompt_logprobs_sent:
                # complete by now: a sequence samples once its whole prompt is computed
                prompt_logprobs, state.prompt_logprobs_sent = state.prompt_logprobs, True
            results.append(RequestOutput(request_id, state.prompt, state.prompt_token_ids, deltas,
                                         state.finished, state.metrics, state.seqs[0].num_cached_tokens,
                                         prompt_logprobs))
        return results
