"""Runs the model for one scheduled batch on one device (or one tensor-parallel rank) and
samples the next tokens. It owns the weights and the KV cache tensor.

A step is launched (`launch`: inputs copied up, forward, sampling, sampled tokens copied down,
all queued on the GPU without waiting) and collected later (`collect`: waits for the tokens), so
the engine can prepare and launch the next step while this one computes. Tokens a step needs
from the step before it (PENDING in the sequence) are taken from that step's sampled tokens on
the GPU. A sequence verifying a draft has a logit row per computed token, and its rows are
sampled and checked against the draft by `speculative.verify`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

import kernels

from .attention import AttentionMetadata, allocate_kv_cache, kv_block_bytes, warm_up_attention
from .config import EngineConfig
from .cuda_graphs import DecodeGraphs
from .memory import kv_cache_budget
from .model import LlamaModel, TensorParallel
from .outputs import TokenLogprob
from .prefill_graphs import PrefillGraphs, token_buckets
from .sampler import SamplerOutput, SamplingTensors, sample, score
from .scheduler import Batch
from .sequence import PENDING
from .speculative import emitted_tokens, verify
from .transfer import flat_to_device, split_aligned
from .verify_graphs import VerifyGraphs
from .weights import fill_random, load_weights


# A step's small inputs travel in two flat tensors (one copy each), in these parts and this order;
# tensor-parallel workers read the first four int64 parts and all int32 ones (see tensor_parallel.py).
INT64_PARTS = ("input_ids", "positions", "slot_mapping", "logit_rows", "pending_at", "pending_rows",
               "prompt_targets")
INT32_PARTS = ("cu_seqlens_q", "context_lens", "block_tables")


@dataclass(slots=True)
class StepInputs:
    input_ids: torch.Tensor
    positions: torch.Tensor
    meta: AttentionMetadata
    # flat-token rows whose logits are computed: each sampling sequence's last token (with a draft:
    # its last token and each drafted one), then the rows that score prompt tokens
    logit_rows: torch.Tensor
    sample_seqs: list[int]  # batch index of each sampling sequence
    packed: tuple[torch.Tensor, torch.Tensor]  # the int64 and int32 tensors all the above are views of
    prompt: "PromptScoring | None" = None  # rank 0's: which prompt tokens the step scores
    # every sequence computes its last token (and its draft) and samples: rows = logit rows
    all_decoding: bool = False


@dataclass(slots=True)
class PromptScoring:
    spans: list[tuple[int, int]]  # (batch index, rows) per sequence, in logit-row order
    target_ids: list[int]  # the prompt token each row scores
    targets: torch.Tensor  # the same, on the device


@dataclass(slots=True)
class TokenSample:
    token: int
    logprob: TokenLogprob | None


@dataclass(slots=True)
class LaunchedStep:
    batch: Batch
    sample_seqs: list[int]
    output: SamplerOutput | None  # being copied to (pinned) host memory; a row per sampled row
    done: torch.cuda.Event | None
    prompt: PromptScoring | None = None
    prompt_output: SamplerOutput | None = None  # the scored tokens' logprobs (tokens: unused)
    num_accepted: torch.Tensor | None = None  # with drafts: drafted tokens accepted per sampling sequence


class ModelRunner:
    def __init__(self, config: EngineConfig, sample_vocab_size: int, tp: TensorParallel = TensorParallel(),
                 device: torch.device | None = None):
        """`sample_vocab_size`: tokens the tokenizer can decode; the model's extra rows (a padded
        embedding) are never sampled. `device`: this rank's (default: the config's)."""
        self.config, self.model_config = config, config.model_config
        self.device = device = device or config.torch_device
        self.dtype = dtype = config.torch_dtype
        self.sample_vocab_size = min(sample_vocab_size, self.model_config.vocab_size)
        self.model = LlamaModel(self.model_config, dtype, device, tp, config.weight_scheme)
        if config.load_format == "random":  # benchmarks: seeded random weights, no checkpoint read
            fill_random(self.model)
        else:
            load_weights(self.model, config.model_dir)
        cuda = device.type == "cuda"
        self.num_sms = torch.cuda.get_device_properties(device).multi_processor_count if cuda else 1
        # (captured before the KV cache is sized, which counts their memory; tensor-parallel ranks
        # run prompts eagerly)
        self.prefill_graphs = None
        if cuda and not config.enforce_eager and tp.size == 1:
            self.prefill_graphs = PrefillGraphs(self.model, device, token_buckets(config.max_num_batched_tokens))
        self.num_blocks = self._pool_size()
        cfg, bs = self.model_config, config.block_size
        self.kv_cache, self.kv_scales = allocate_kv_cache(cfg.num_layers, self.num_blocks, bs,
                                                          self.model.num_local_kv_heads, cfg.head_dim, dtype,
                                                          config.kv_int8, device)
        if cuda:
            warm_up_attention(self.model.layers[0].num_heads, self.model.num_local_kv_heads, cfg.head_dim, bs,
                              dtype, device, config.kv_int8)
        self.graphs = None  # tensor-parallel ranks capture their all-reduces too (see tensor_parallel.py)
        if cuda and not config.enforce_eager:
            self.graphs = DecodeGraphs(self.model, self.kv_cache, self.kv_scales, config.max_num_seqs,
                                       config.max_blocks_per_seq, config.max_model_len, self.num_sms)
        self.verify_graphs = None  # (tensor-parallel ranks verify eagerly)
        if self.graphs is not None and config.speculate != "off" and tp.size == 1:
            self.verify_graphs = VerifyGraphs(self.model, self.kv_cache, self.kv_scales, config.max_num_seqs,
                                              config.max_blocks_per_seq, config.num_speculative_tokens + 1, bs)
        # the tokens the last launched step samples, on the device, and each sequence's row there:
        # where the next step finds the tokens still PENDING on the host
        self._last_sampled: torch.Tensor | None = None
        self._last_sampled_rows: dict[int, int] = {}  # seq_id -> row

    def shutdown(self) -> None:
        """Nothing runs beside a single-device runner (see TensorParallelRunner)."""

    @property
    def verify_graph_batches(self) -> int:
        """Verifying steps of at most this many sequences replay CUDA graphs (0: none do)."""
        return self.verify_graphs.buckets[-1] if self.verify_graphs is not None else 0

    @property
    def block_bytes(self) -> int:
        cfg = self.model_config
        return kv_block_bytes(cfg.num_layers, self.config.block_size, self.model.num_local_kv_heads, cfg.head_dim,
                              self.dtype, self.config.kv_int8)

    def _pool_size(self) -> int:
        cfg = self.config
        if cfg.num_kv_blocks is not None:
            return cfg.num_kv_blocks
        blocks = int(kv_cache_budget(self.model, cfg, self.dtype, self.device, self.block_bytes) // self.block_bytes)
        if self.model.tp.size > 1:  # every rank must have the same pool: the smallest
            agreed = torch.tensor([blocks], device=self.device)
            dist.all_reduce(agreed, op=dist.ReduceOp.MIN, group=self.model.tp.group)
            blocks = int(agreed.item())
        if blocks < 1:
            raise ValueError("no memory left for the KV cache after loading the weights")
        return blocks

    # --- one step --------------------------------------------------------------------------------

    def prepare(self, batch: Batch) -> StepInputs:
        bs = self.config.block_size
        longs = {name: [] for name in INT64_PARTS}
        cu, ctx, tables = [0], [], []
        sample_rows, sample_seqs, prompt_rows, prompt_spans = [], [], [], []
        num_decodes = 0
        for i, (seq, start, n, draft, scored) in enumerate(zip(batch.seqs, batch.starts, batch.num_new_tokens,
                                                                batch.drafts, batch.scored)):
            end = start + n
            known_end = end - len(draft)  # the drafted tokens are not (yet) the sequence's
            if n == 1 and num_decodes == i:
                num_decodes += 1
            if seq.token_ids[known_end - 1] == PENDING:  # sampled by the step before, still on the device
                longs["pending_at"].append(cu[-1] + n - 1)
                longs["pending_rows"].append(self._last_sampled_rows[seq.seq_id])
            if scored:
                prompt_rows.extend(cu[-1] + p - start for p in scored)
                longs["prompt_targets"].extend(seq.token_ids[p + 1] for p in scored)
                prompt_spans.append((i, len(scored)))
            longs["input_ids"].extend(seq.token_ids[start:known_end])
            longs["input_ids"].extend(draft)
            longs["positions"].extend(range(start, end))
            table = seq.block_table
            longs["slot_mapping"].extend(table[p // bs] * bs + p % bs for p in range(start, end))
            cu.append(cu[-1] + n)
            ctx.append(end)
            tables.append(table)
            if batch.samples[i]:
                sample_rows.extend(range(cu[-1] - 1 - len(draft), cu[-1]))
                sample_seqs.append(i)
        longs["logit_rows"] = sample_rows + prompt_rows
        width = max(len(t) for t in tables)
        flat_tables = [b for t in tables for b in (t + [0] * (width - len(t)))]
        ints = {"cu_seqlens_q": cu, "context_lens": ctx, "block_tables": flat_tables}
        packed = (flat_to_device(list(longs.values()), torch.int64, self.device),
                  flat_to_device(list(ints.values()), torch.int32, self.device))
        long_views = dict(zip(INT64_PARTS, split_aligned(packed[0], [len(v) for v in longs.values()])))
        int_views = dict(zip(INT32_PARTS, split_aligned(packed[1], [len(v) for v in ints.values()])))
        input_ids = long_views["input_ids"]
        if longs["pending_at"]:
            input_ids[long_views["pending_at"]] = self._last_sampled[long_views["pending_rows"]]
        decode_ctx = max(ctx[:num_decodes], default=0)
        meta = AttentionMetadata(
            cu_seqlens_q=int_views["cu_seqlens_q"], context_lens=int_views["context_lens"],
            block_tables=int_views["block_tables"].view(len(tables), width), slot_mapping=long_views["slot_mapping"],
            max_query_len=max(batch.num_new_tokens), max_context_len=max(ctx), num_decodes=num_decodes,
            decode_splits=kernels.decode_num_splits(num_decodes, self.model.num_local_kv_heads, decode_ctx,
                                                    self.num_sms, kv_int8=self.config.kv_int8,
                                                    group=self.model.query_heads_per_kv_head))
        prompt = PromptScoring(prompt_spans, longs["prompt_targets"], long_views["prompt_targets"]) \
            if prompt_spans else None
        all_decoding = self.verify_graphs is not None and prompt is None and len(sample_seqs) == len(batch) and all(
            n == len(d) + 1 for n, d in zip(batch.num_new_tokens, batch.drafts))  # (only verify graphs ask)
        return StepInputs(input_ids, long_views["positions"], meta, long_views["logit_rows"], sample_seqs, packed,
                          prompt, all_decoding)

    @torch.inference_mode()
    def forward(self, batch: Batch) -> tuple[torch.Tensor, StepInputs]:
        """Run the model over the batch: the raw logits of its logit rows (the rows that sample,
        sequence by sequence in `inputs.sample_seqs` order, first), and the step's inputs."""
        inputs = self.prepare(batch)
        return self.run(inputs), inputs

    @torch.inference_mode()
    def run(self, inputs: StepInputs) -> torch.Tensor:
        """The model over prepared inputs (from a CUDA graph for a decode step and a small
        verifying one, from graphs between attentions for other steps of up to 512 tokens); the
        logits of the sampling rows."""
        meta = inputs.meta
        batch_size = meta.context_lens.shape[0]
        # a graph computes the logits of every row: only for steps of one token per sequence,
        # each of which samples (every rank decides alike from the same inputs)
        if (self.graphs is not None and meta.num_decodes == batch_size == inputs.logit_rows.shape[0]
                and self.graphs.bucket(batch_size) is not None):
            return self.graphs.run(inputs.input_ids, inputs.positions, meta.slot_mapping, meta.context_lens,
                                   meta.block_tables)
        if (self.verify_graphs is not None and inputs.all_decoding
                and self.verify_graphs.fits(batch_size, meta.max_query_len)):
            return self.verify_graphs.run(inputs.input_ids, inputs.positions, meta.slot_mapping, meta.cu_seqlens_q,
                                          meta.context_lens, meta.block_tables, meta.max_query_len)
        forward = self.model
        if self.prefill_graphs is not None and self.prefill_graphs.fits(inputs.input_ids.shape[0]):
            forward = self.prefill_graphs.run
        hidden = forward(inputs.input_ids, inputs.positions, self.kv_cache, meta, self.kv_scales)
        return self.model.compute_logits(hidden[inputs.logit_rows])

    @torch.inference_mode()
    def launch(self, batch: Batch) -> LaunchedStep:
        """Queue the step on the device: forward, sampling, and the copy of the sampled tokens
        to the host. Nothing here waits for the device."""
        logits, inputs = self.forward(batch)
        sample_seqs, prompt = inputs.sample_seqs, inputs.prompt
        if not sample_seqs and prompt is None:
            return LaunchedStep(batch, [], None, None)
        if self.sample_vocab_size < logits.shape[-1]:
            logits = logits.clone() if self.graphs is not None else logits
            logits[:, self.sample_vocab_size:] = float("-inf")
        out = prompt_out = num_accepted = None
        num_sample_rows = sum(len(batch.drafts[i]) + 1 for i in sample_seqs)
        if sample_seqs:
            seqs = [batch.seqs[i] for i in sample_seqs]
            tensors = SamplingTensors.build(seqs, logits.shape[-1], self.device)
            if batch.speculative:
                verified = verify(logits[:num_sample_rows], tensors, [batch.drafts[i] for i in sample_seqs])
                out, num_accepted, self._last_sampled = verified.rows, verified.num_accepted, verified.next_tokens
            else:
                out = sample(logits[:num_sample_rows], tensors)
                self._last_sampled = out.tokens
            self._last_sampled_rows = {seq.seq_id: row for row, seq in enumerate(seqs)}
        if prompt is not None:
            k = max(batch.seqs[i].params.prompt_logprobs for i, _ in prompt.spans)
            prompt_out = score(logits[num_sample_rows:], prompt.targets, k)
        if self.device.type != "cuda":
            return LaunchedStep(batch, sample_seqs, out, None, prompt, prompt_out, num_accepted)
        out, prompt_out = (None if o is None else SamplerOutput(*map(_to_host, (o.tokens, o.logprobs, o.top_ids,
                                                                                o.top_logprobs)))
                           for o in (out, prompt_out))
        num_accepted = _to_host(num_accepted)
        done = torch.cuda.Event()
        done.record()
        return LaunchedStep(batch, sample_seqs, out, done, prompt, prompt_out, num_accepted)

    def collect(self, step: LaunchedStep) -> tuple[list[list[TokenSample] | None], dict[int, list[TokenLogprob]]]:
        """Wait for a launched step: the tokens (and logprobs) each sequence that samples gained,
        by batch index: one, or a verified draft's accepted tokens and the one after them; and
        the logprobs of the prompt tokens it scored, by batch index."""
        results: list[list[TokenSample] | None] = [None] * len(step.batch)
        if step.done is not None:
            step.done.synchronize()
        if step.sample_seqs:
            batch = step.batch
            tokens = step.output.tokens.tolist()
            ks = [batch.seqs[i].params.logprobs for i in step.sample_seqs for _ in range(len(batch.drafts[i]) + 1)]
            samples = [TokenSample(t, lp) for t, lp in zip(tokens, _logprobs(step.output, tokens, ks))]
            drafts = [batch.drafts[i] for i in step.sample_seqs]
            accepted = step.num_accepted.tolist() if step.num_accepted is not None else [0] * len(drafts)
            for i, gained in zip(step.sample_seqs, emitted_tokens(samples, drafts, accepted)):
                results[i] = gained
        scored: dict[int, list[TokenLogprob]] = {}
        if step.prompt is not None:
            spans = step.prompt.spans
            ks = [step.batch.seqs[i].params.prompt_logprobs for i, rows in spans for _ in range(rows)]
            logprobs = iter(_logprobs(step.prompt_output, step.prompt.target_ids, ks))
            for i, rows in spans:
                scored[i] = [next(logprobs) for _ in range(rows)]
        return results, scored


def _logprobs(out: SamplerOutput, tokens: list[int], ks: list[int | None]) -> list[TokenLogprob | None]:
    """Row j's token with its logprob and its ks[j] most likely alternatives (None where ks[j] is)."""
    if out.logprobs is None:
        return [None] * len(ks)
    chosen = out.logprobs.tolist()
    top_ids = out.top_ids.tolist() if out.top_ids is not None else None
    top_lp = out.top_logprobs.tolist() if out.top_logprobs is not None else None
    result = []
    for j, k in enumerate(ks):
        if k is None:
            result.append(None)
            continue
        top = list(zip(top_ids[j][:k], top_lp[j][:k])) if k and top_ids else []
        result.append(TokenLogprob(tokens[j], chosen[j], top))
    return result


def _to_host(t: torch.Tensor | None) -> torch.Tensor | None:
    """Start copying a device tensor into pinned host memory (complete once the step's event is)."""
    if t is None:
        return None
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    return host.copy_(t, non_blocking=True)
