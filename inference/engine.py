"""The synchronous engine: checked requests in, one batched step at a time, output deltas out.

A request's path through the server, front to back and back:

    route (web/routes, web/pages)      builds a Prompt (prompts.py) and SamplingParams
    -> Generation (web/generation.py)  one engine request per prompt, one mailbox for its outputs
    -> EngineFront.make_request        checks and tokenizes: an immutable EngineRequest (requests.py)
    -> EngineFront.submit              AsyncEngine (a thread) or EngineProcess (a process), both
                                       sending AddRequest / AbortRequest (engine_messages.py) to
    -> EngineLoop (engine_loop.py)     which applies them to this LLMEngine and calls step():
    -> LLMEngine.add                   the one place a request becomes Sequences and SequenceOutputs
    -> Scheduler.schedule()            a Batch: decodes, prefill chunks, admissions (blocks taken)
    -> Speculator.propose()            with --speculate: drafts for decoding sequences (inference/speculative)
    -> ModelRunner.launch()            inputs to the device, forward (kernels/, CUDA graphs), sampling
                                       (drafts verified)
    -> ModelRunner.collect()           the sampled tokens, one step later (CPU work overlaps the GPU's)
    -> Scheduler.postprocess()         tokens filled in, computed blocks cached, rejected drafts' blocks freed
    -> SequenceOutput.add_token()      detokenized; the one decision to stop; Scheduler.finish() applies it
    -> EngineOutput deltas             StepOutputs back to the front, each to its request's mailbox
    -> Generation -> SSE chunk / JSON  (web/sse.py, web/protocol)
"""

from __future__ import annotations

import dataclasses
import itertools
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from .config import EngineConfig
from .detokenizer import IncrementalDetokenizer
from .engine_status import EngineGauges, EngineInfo, EngineStats
from .model_info import load_model_info
from .output_processor import SequenceOutput
from .outputs import EngineOutput, RequestMetrics, TokenLogprob
from .requests import EngineRequest, RequestMaker
from .runner import LaunchedStep, ModelRunner, TokenSample
from .sampling_params import SamplingParams
from .scheduler import Batch, Scheduler
from .sequence import Sequence
from .speculative import Draft, DraftPacing, SequenceDrafting, Speculator, StepTimes, infill_suffix_span, plan
from .tokenizer import Tokenizer


@dataclass(slots=True)
class _RequestState:
    """The engine's side of a request: its sequences (n samples), their text, its timings."""

    request: EngineRequest
    seqs: list[Sequence]
    outputs: list[SequenceOutput]
    metrics: RequestMetrics
    prompt_logprobs: list[TokenLogprob] | None  # with params.prompt_logprobs: filled as computed
    prompt_logprobs_sent: bool = False

    @property
    def finished(self) -> bool:
        return all(s.finished for s in self.seqs)


class LLMEngine:
    def __init__(self, model: str | Path | EngineConfig | None = None, **settings):
        """`LLMEngine(config)`, or `LLMEngine(model, **settings)` with EngineConfig's fields."""
        self.config = config = model if isinstance(model, EngineConfig) else EngineConfig(model, **settings)
        self.model_info = load_model_info(config.model_dir, config.model_name, config.capabilities)
        self.tokenizer = Tokenizer(config.model_dir / "tokenizer.model")
        vocab = config.model_config.vocab_size
        if self.tokenizer.vocab_size > vocab:
            raise ValueError(f"{config.model_dir}: the tokenizer has {self.tokenizer.vocab_size} pieces but the "
                             f"model only {vocab} embeddings")
        if config.tensor_parallel_size == 1:
            self.runner = ModelRunner(config, self.tokenizer.vocab_size)
        else:
            from .tensor_parallel import TensorParallelRunner
            self.runner = TensorParallelRunner(config, self.tokenizer.vocab_size)
        self.scheduler = Scheduler(config, self.runner.num_blocks)
        self.request_maker = RequestMaker(self.tokenizer, config, self.runner.num_blocks)
        self.requests: dict[str, _RequestState] = {}
        self.stats = EngineStats()
        self._in_flight: LaunchedStep | None = None
        self._seq_ids = itertools.count()
        self.speculator = Speculator(config.speculate, config.num_speculative_tokens) \
            if config.speculate != "off" else None
        self.step_times = (StepTimes.load(config.speculative_step_times, self.runner.verify_graph_batches)
                           if config.speculative_step_times else None)
        self._drafting: dict[int, SequenceDrafting] = {}  # seq_id -> its drafting state (with a speculator)
        self._drafts: dict[int, Draft] = {}  # seq_id -> the draft the step in flight verifies
        self._pacing = DraftPacing()  # tries drafting less often while drafts come back empty
        # a step's host milliseconds per sequence (outputs, drafting, scheduling, launch), a moving
        # average: what verifying adds to a GPU step, which plain steps hide (see cost_model.py)
        self._times_host = self.step_times is not None and self.runner.device.type == "cuda"
        self._host_ms_per_seq = 0.0

    # --- requests ----------------------------------------------------------------------------------

    def make_request(self, request_id: str, prompt: str | list[int], params: SamplingParams,
                     continues_prompt: bool = True) -> EngineRequest:
        """Check and tokenize a request without touching the engine's state (safe while a step
        runs); see `RequestMaker.make`."""
        return self.request_maker.make(request_id, prompt, params, continues_prompt)

    def add(self, request: EngineRequest) -> None:
        """Start a request: its sequences join the scheduler's queue."""
        if request.request_id in self.requests:
            raise ValueError(f"request id {request.request_id!r} is already running")
        ids, params = list(request.prompt_token_ids), request.params
        started = request.continues_prompt and self.tokenizer.has_text(ids)
        base_seed = params.seed if params.seed is not None else secrets.randbits(62)
        seqs, outputs = [], []
        for i in range(params.n):
            seqs.append(Sequence(next(self._seq_ids), request.request_id, i, list(ids), len(ids), params,
                                 seed=base_seed if i == 0 else hash((base_seed, i)),
                                 parent=seqs[0] if seqs else None))
            outputs.append(SequenceOutput(i, IncrementalDetokenizer(self.tokenizer, started), params,
                                          self.tokenizer.eos_id, len(ids), self.config.max_model_len))
        self.requests[request.request_id] = _RequestState(
            request, seqs, outputs, RequestMetrics(request.arrival_time),
            [] if params.prompt_logprobs is not None else None)
        for seq in seqs:
            self.scheduler.add(seq)
            if self.speculator is not None:
                self._drafting[seq.seq_id] = self.speculator.start(ids, self._infill_suffix(ids))

    def add_request(self, request_id: str, prompt: str | list[int], params: SamplingParams) -> None:
        self.add(self.make_request(request_id, prompt, params))

    def _infill_suffix(self, ids: list[int]) -> tuple[int, int] | None:
        """Where an infilling prompt holds its suffix (prompt lookup prefers drafting from it)."""
        try:
            return infill_suffix_span(ids, self.tokenizer.infill_id("suffix"), self.tokenizer.infill_id("middle"))
        except ValueError:  # a tokenizer without the infilling pieces
            return None

    def abort(self, request_id: str) -> None:
        """Stop a request now and free its blocks."""
        for seq in self.scheduler.abort(request_id):
            self._drafting.pop(seq.seq_id, None)
        self.requests.pop(request_id, None)

    def abort_all(self) -> list[str]:
        """Stop every request (a step failed, or the engine is stopping) and forget the step in
        flight; returns their ids."""
        request_ids = list(self.requests)
        for request_id in request_ids:
            self.abort(request_id)
        self._in_flight = None
        self._drafts = {}
        return request_ids

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(self.config, self.model_info, self.runner.num_blocks)

    def gauges(self) -> EngineGauges:
        blocks, scheduler = self.scheduler.block_manager, self.scheduler
        return EngineGauges(running=len(scheduler.running), waiting=len(scheduler.waiting),
                            unfinished_requests=len(self.requests), free_blocks=blocks.num_free_blocks,
                            kv_usage=blocks.usage, prefix_queries=blocks.prefix_queries,
                            prefix_hits=blocks.prefix_hits, preemptions=scheduler.num_preemptions,
                            stats=dataclasses.replace(self.stats))

    def shutdown(self) -> None:
        """Stop the other tensor-parallel ranks' processes, if any."""
        self.runner.shutdown()

    @property
    def has_unfinished(self) -> bool:
        return bool(self.requests) or self._in_flight is not None

    # --- one step ----------------------------------------------------------------------------------

    def step(self) -> list[EngineOutput]:
        """Launch the next step, then finish the one before it (whose GPU work is done by the time
        the new one is queued), so that the CPU work of each step overlaps the GPU work of the
        next. Returns the output deltas of the finished step."""
        outputs, began, waited = [], time.perf_counter(), self.stats.wait_seconds
        drafting = self._may_draft()
        if self._in_flight is not None and (drafting or self._in_flight.batch.speculative
                                            or any(s.params.uses_penalties for s in self._in_flight.batch.seqs)):
            # drafts, penalties, and the sequences that verified drafts need every previous token on the host
            outputs += self._complete(self._in_flight)
            self._in_flight = None
        start = time.perf_counter()
        batch = self.scheduler.schedule(self._draft() if drafting else None)
        launched = self._launch(batch) if batch.seqs else None
        self.stats.launch_seconds += time.perf_counter() - start
        if self._in_flight is not None:
            outputs += self._complete(self._in_flight)
        self._in_flight = launched
        if self._times_host and batch.seqs:
            host_ms = 1e3 * (time.perf_counter() - began - (self.stats.wait_seconds - waited))
            self._host_ms_per_seq += 0.1 * (host_ms / len(batch) - self._host_ms_per_seq)
        return outputs

    def _may_draft(self) -> bool:
        """Whether the next step may verify drafts: speculation is on, the cost model does not
        rule it out at this batch size, and the pacing (speculative/pacing.py) lets it try."""
        if self.speculator is None or not self._pacing.due():
            return False
        decoding = sum(s.num_uncomputed_tokens == 1 for s in self.scheduler.running)
        if not decoding:
            return False
        return self.step_times is None or self.step_times.may_pay(decoding, self.speculator.num_speculative_tokens,
                                                                  self._host_ms_per_seq * decoding)

    def _draft(self) -> dict[int, tuple[int, ...]]:
        """Drafts for the running sequences that decode next, cut to what the cost model finds
        worth verifying; kept by seq_id until the step is read back."""
        seqs = [s for s in self.scheduler.running if self.scheduler.draft_room(s) > 0]
        if not seqs:
            return {}
        sample = self._pacing.sample(seqs)
        if len(sample) < len(seqs) and not any(self._propose(s) for s in sample):
            self._pacing.tried(len(seqs), drafted=False)
            return {}
        drafts = [self._propose(s) for s in seqs]
        lengths = plan(drafts, self.step_times, self._host_ms_per_seq * len(seqs))
        self._drafts = {s.seq_id: d.truncated(n) for s, d, n in zip(seqs, drafts, lengths) if n > 0}
        self._pacing.tried(len(seqs), drafted=bool(self._drafts))
        return {seq_id: d.tokens for seq_id, d in self._drafts.items()}

    def _propose(self, seq: Sequence) -> Draft | None:
        return self.speculator.propose(self._drafting[seq.seq_id], self.scheduler.draft_room(seq))

    def _launch(self, batch: Batch) -> LaunchedStep:
        now = time.monotonic()
        for seq, start, n in zip(batch.seqs, batch.starts, batch.num_new_tokens):
            metrics = self.requests[seq.request_id].metrics
            metrics.first_scheduled_time = metrics.first_scheduled_time or now
            self.stats.prompt_tokens += max(0, min(start + n, seq.num_prompt_tokens) - start)
        self.stats.steps += 1
        return self.runner.launch(batch)

    def _complete(self, step: LaunchedStep) -> list[EngineOutput]:
        start = time.perf_counter()
        samples, scored = self.runner.collect(step)
        waited = time.perf_counter()
        for i, logprobs in scored.items():
            state = self.requests.get(step.batch.seqs[i].request_id)
            if state is not None:  # (not aborted since)
                state.prompt_logprobs.extend(logprobs)
        tokens = self.scheduler.postprocess(step.batch, [[s.token for s in gained] if gained else None
                                                         for gained in samples])
        if self.speculator is not None:
            self._record_drafts(step.batch, tokens)
        outputs = self._outputs(step.batch, samples, tokens)
        self.stats.wait_seconds += waited - start
        self.stats.output_seconds += time.perf_counter() - waited
        return outputs

    def _record_drafts(self, batch: Batch, tokens: list[list[int] | None]) -> None:
        """How the step's drafts fared: the drafting states' calibration, and the counters."""
        for seq, draft, gained in zip(batch.seqs, batch.drafts, tokens):
            state = self._drafting.get(seq.seq_id)
            if draft and gained is not None and state is not None:
                verified = self._drafts[seq.seq_id].truncated(len(draft))  # the scheduler may have cut it
                self.speculator.record(state, verified, len(gained) - 1)
                self.stats.draft_tokens += len(draft)
                self.stats.accepted_tokens += len(gained) - 1
                self.stats.drafts += 1
        self._drafts = {}

    def _outputs(self, batch: Batch, samples: list[list[TokenSample] | None],
                 tokens: list[list[int] | None]) -> list[EngineOutput]:
        now = time.monotonic()
        touched: dict[str, list[Sequence]] = {}
        for seq, gained, taken in zip(batch.seqs, samples, tokens):
            if taken is None:
                continue
            state = self.requests[seq.request_id]
            state.metrics.first_token_time = state.metrics.first_token_time or now
            state.metrics.last_token_time = now
            for kept, sample in enumerate(gained, 1):
                self.stats.generation_tokens += 1
                reason = state.outputs[seq.index].add_token(sample.token, sample.logprob)
                if reason is not None:
                    break
            drafting = self._drafting.get(seq.seq_id)
            if drafting is not None:
                self.speculator.extend(drafting, taken[:kept])
            if reason is not None:
                self.scheduler.finish(seq, reason)
                if drafting is not None:
                    self.speculator.finish(self._drafting.pop(seq.seq_id))
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
            results.append(EngineOutput(request_id, deltas, state.finished, state.metrics,
                                        state.seqs[0].num_cached_tokens, prompt_logprobs))
        return results
