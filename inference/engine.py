"""The synchronous engine: requests in, one batched step at a time, output deltas out.

    add_request -> Scheduler.schedule() -> ModelRunner.launch()     (step N+1 queued on the GPU)
                -> ModelRunner.collect() -> Scheduler.postprocess() (step N's tokens)
                -> SequenceOutput (detokenize, stop strings) -> RequestOutput deltas
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .block_manager import BlockManager
from .config import EngineConfig, ModelConfig
from .detokenizer import IncrementalDetokenizer
from .model_info import load_model_info
from .model_source import resolve_model_dir
from .output_processor import SequenceOutput
from .outputs import RequestMetrics, RequestOutput
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
class RequestState:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    params: SamplingParams
    seqs: list[Sequence]
    outputs: list[SequenceOutput]
    metrics: RequestMetrics

    @property
    def finished(self) -> bool:
        return all(s.finished for s in self.seqs)


@dataclass(slots=True)
class EngineStats:
    """Counters since start, for the metrics pages."""

    prompt_tokens: int = 0  # prompt tokens computed (prefix-cache hits excluded)
    generation_tokens: int = 0
    steps: int = 0
    launch_seconds: float = 0.0  # host time scheduling, preparing and queueing steps
    wait_seconds: float = 0.0  # host time waiting for the device's results
    output_seconds: float = 0.0  # host time turning results into outputs


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
        self.requests: dict[str, RequestState] = {}
        self.stats = EngineStats()
        self._seq_ids = itertools.count()
        self._in_flight: LaunchedStep | None = None

    # --- requests ----------------------------------------------------------------------------------

    def make_request(self, request_id: str, prompt: str | list[int], params: SamplingParams,
                     continues_prompt: bool = True) -> RequestState:
        """Validate and tokenize a request without touching the engine's state (safe to call while
        a step runs). Raises ValueError with a message fit for the user. `continues_prompt`: the
        output's text continues the prompt's (a leading space is kept); False decodes it as a text
        of its own, as Meta's chat reference does with an answer."""
        if not isinstance(params, SamplingParams):
            raise ValueError(f"params must be SamplingParams, got {type(params).__name__}")
        text, ids = self._prompt_ids(prompt)
        limit = self.config.max_model_len
        if len(ids) >= limit:
            raise ValueError(f"the prompt has {len(ids)} tokens; the context window is {limit} tokens "
                             f"(the prompt must leave room for at least one new token)")
        if params.max_tokens is not None and len(ids) + params.max_tokens > limit:
            raise ValueError(f"the prompt ({len(ids)} tokens) plus max_tokens ({params.max_tokens}) exceeds "
                             f"the context window of {limit} tokens")
        longest = min(limit, len(ids) + (params.max_tokens or limit))
        if self.blocks.blocks_for(longest) > self.blocks.num_blocks:
            raise ValueError(f"the request needs up to {self.blocks.blocks_for(longest)} KV-cache blocks but "
                             f"the pool has {self.blocks.num_blocks}; lower max_tokens or the prompt length")
        seqs, outputs = [], []
        started = continues_prompt and self.tokenizer.has_text(ids)
        base_seed = params.seed if params.seed is not None else secrets.randbits(62)
        for i in range(params.n):
            seq = Sequence(next(self._seq_ids), request_id, i, list(ids), len(ids), params,
                           seed=base_seed if i == 0 else hash((base_seed, i)), parent=seqs[0] if seqs else None)
            seqs.append(seq)
            outputs.append(SequenceOutput(i, IncrementalDetokenizer(self.tokenizer, started), params.stop))
        return RequestState(request_id, text, ids, params, seqs, outputs, RequestMetrics(time.monotonic()))

    def _prompt_ids(self, prompt: str | list[int]) -> tuple[str | None, list[int]]:
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError("the prompt is empty")
            return prompt, self.tokenizer.encode(prompt, bos=True)
        if not isinstance(prompt, (list, tuple)) or not prompt:
            raise ValueError("the prompt must be a non-empty string or a non-empty list of token ids")
        vocab = self.tokenizer.vocab_size
        for t in prompt:
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab:
                raise ValueError(f"prompt token id {t!r} is outside the vocabulary [0, {vocab})")
        return None, list(prompt)

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
        samples = self.runner.collect(step)
        waited = time.perf_counter()
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
            results.append(RequestOutput(request_id, state.prompt, state.prompt_token_ids, deltas,
                                         state.finished, state.metrics, state.seqs[0].num_cached_tokens))
        return results
