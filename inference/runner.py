"""Runs the model for one scheduled batch on one device (or one tensor-parallel rank) and
samples the next tokens. It owns the weights and the KV cache tensor.

A step is launched (`launch`: inputs copied up, forward, sampling, sampled tokens copied down,
all queued on the GPU without waiting) and collected later (`collect`: waits for the tokens), so
the engine can prepare and launch the next step while this one computes. Tokens a step needs
from the step before it (PENDING in the sequence) are taken from that step's sampled tokens on
the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

import kernels

from .attention import AttentionMetadata, warm_up_attention
from .config import EngineConfig, ModelConfig
from .cuda_graphs import DecodeGraphs
from .memory import gpu_kv_cache_budget
from .model import LlamaModel, TensorParallel
from .outputs import TokenLogprob
from .sampler import SamplerOutput, SamplingTensors, sample
from .scheduler import Batch
from .sequence import PENDING
from .transfer import flat_to_device, split_aligned
from .weights import fill_random, load_weights


@dataclass(slots=True)
class StepInputs:
    input_ids: torch.Tensor
    positions: torch.Tensor
    meta: AttentionMetadata
    sample_rows: torch.Tensor  # flat-token index of each sampling sequence's last token
    sample_seqs: list[int]  # batch index of each sampling sequence
    packed: tuple[torch.Tensor, torch.Tensor]  # the int64 and int32 tensors all the above are views of


@dataclass(slots=True)
class TokenSample:
    token: int
    logprob: TokenLogprob | None


@dataclass(slots=True)
class LaunchedStep:
    batch: Batch
    sample_seqs: list[int]
    output: SamplerOutput | None  # being copied to (pinned) host memory
    done: torch.cuda.Event | None


class ModelRunner:
    def __init__(self, model_config: ModelConfig, engine_config: EngineConfig, model_dir: str | Path,
                 dtype: torch.dtype, device: torch.device, sample_vocab_size: int,
                 tp: TensorParallel = TensorParallel(), load_format: str = "auto"):
        """`sample_vocab_size`: tokens the tokenizer can decode; the model's extra rows (a padded
        embedding) are never sampled. `load_format` "random" fills seeded random weights instead
        of reading the checkpoint (benchmarks)."""
        self.model_config, self.config = model_config, engine_config
        self.device, self.dtype = device, dtype
        self.sample_vocab_size = min(sample_vocab_size, model_config.vocab_size)
        self.model = LlamaModel(model_config, dtype, device, tp)
        if load_format == "random":
            fill_random(self.model)
        elif load_format == "auto":
            load_weights(self.model, model_dir)
        else:
            raise ValueError(f"unknown load_format {load_format!r}: use auto or random")
        cuda = device.type == "cuda"
        self.num_sms = torch.cuda.get_device_properties(device).multi_processor_count if cuda else 1
        self.num_blocks = self._pool_size()
        cfg, bs = model_config, engine_config.block_size
        self.kv_cache = torch.zeros(cfg.num_layers, 2, self.num_blocks, bs, self.model.num_local_kv_heads,
                                    cfg.head_dim, dtype=dtype, device=device)
        if cuda:
            warm_up_attention(self.model.layers[0].num_heads, self.model.num_local_kv_heads, cfg.head_dim, bs,
                              dtype, device)
        self.graphs = None  # tensor-parallel ranks capture their all-reduces too (see tensor_parallel.py)
        if cuda and not engine_config.enforce_eager:
            self.graphs = DecodeGraphs(self.model, self.kv_cache, engine_config.max_num_seqs,
                                       -(-engine_config.max_model_len // bs), engine_config.max_model_len,
                                       self.num_sms)
        self._last_sampled: torch.Tensor | None = None  # tokens of the last launched step, on the GPU

    def shutdown(self) -> None:
        """Nothing runs beside a single-device runner (see TensorParallelRunner)."""

    @property
    def block_bytes(self) -> int:
        cfg = self.model_config
        return (2 * cfg.num_layers * self.config.block_size * self.model.num_local_kv_heads * cfg.head_dim
                * torch.empty((), dtype=self.dtype).element_size())

    def _pool_size(self) -> int:
        cfg = self.config
        if cfg.num_kv_blocks is not None:
            return cfg.num_kv_blocks
        if self.device.type == "cuda":
            budget = gpu_kv_cache_budget(self.model, cfg, self.dtype, self.device)
        else:
            budget = cfg.kv_cache_gib * (1 << 30)
        blocks = int(budget // self.block_bytes)
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
        ids, positions, slots, cu, ctx, tables = [], [], [], [0], [], []
        sample_rows, sample_seqs, pending_at, pending_rows = [], [], [], []
        num_decodes = 0
        for i, (seq, start, n) in enumerate(zip(batch.seqs, batch.starts, batch.num_new_tokens)):
            end = start + n
            if n == 1 and num_decodes == i:
                num_decodes += 1
            if seq.token_ids[end - 1] == PENDING:  # sampled by the step before, still on the GPU
                pending_at.append(cu[-1] + n - 1)
                pending_rows.append(seq.pending_row)
            ids.extend(seq.token_ids[start:end])
            positions.extend(range(start, end))
            table = seq.block_table
            slots.extend(table[p // bs] * bs + p % bs for p in range(start, end))
            cu.append(cu[-1] + n)
            ctx.append(end)
            tables.append(table)
            if batch.sampled[i]:
                sample_rows.append(cu[-1] - 1)
                sample_seqs.append(i)
        width = max(len(t) for t in tables)
        flat_tables = [b for t in tables for b in (t + [0] * (width - len(t)))]
        longs = [ids, positions, slots, sample_rows, pending_at, pending_rows]
        packed = (flat_to_device(longs, torch.int64, self.device),
                  flat_to_device([cu, ctx, flat_tables], torch.int32, self.device))
        ints = split_aligned(packed[0], [len(values) for values in longs])
        int32s = split_aligned(packed[1], [len(cu), len(ctx), len(flat_tables)])
        input_ids = ints[0]
        if pending_at:
            input_ids[ints[4]] = self._last_sampled[ints[5]]
        decode_ctx = max(ctx[:num_decodes], default=0)
        meta = AttentionMetadata(
            cu_seqlens_q=int32s[0], context_lens=int32s[1], block_tables=int32s[2].view(len(tables), width),
            slot_mapping=ints[2], max_query_len=max(batch.num_new_tokens), max_context_len=max(ctx),
            num_decodes=num_decodes,
            decode_splits=kernels.decode_num_splits(num_decodes, self.model.num_local_kv_heads, decode_ctx,
                                                    self.num_sms))
        return StepInputs(input_ids, ints[1], meta, ints[3], sample_seqs, packed)

    @torch.inference_mode()
    def forward(self, batch: Batch) -> tuple[torch.Tensor, list[int]]:
        """Run the model over the batch: the raw logits [S, vocab] of the S sequences that sample,
        and their indices in the batch."""
        inputs = self.prepare(batch)
        return self.run(inputs), inputs.sample_seqs

    @torch.inference_mode()
    def run(self, inputs: StepInputs) -> torch.Tensor:
        """The model over prepared inputs (from a CUDA graph for a decode step); the logits of
        the sampling rows."""
        meta = inputs.meta
        if (self.graphs is not None and meta.num_decodes == meta.context_lens.shape[0]
                and self.graphs.bucket(meta.num_decodes) is not None):
            return self.graphs.run(inputs.input_ids, inputs.positions, meta.slot_mapping, meta.context_lens,
                                   meta.block_tables)
        hidden = self.model(inputs.input_ids, inputs.positions, self.kv_cache, meta)
        return self.model.compute_logits(hidden[inputs.sample_rows])

    @torch.inference_mode()
    def launch(self, batch: Batch) -> LaunchedStep:
        """Queue the step on the device: forward, sampling, and the copy of the sampled tokens
        to the host. Nothing here waits for the device."""
        logits, sample_seqs = self.forward(batch)
        if not sample_seqs:
            return LaunchedStep(batch, [], None, None, None)
        if self.sample_vocab_size < logits.shape[-1]:
            logits = logits.clone() if self.graphs is not None else logits
            logits[:, self.sample_vocab_size:] = float("-inf")
        seqs = [batch.seqs[i] for i in sample_seqs]
        out = sample(logits, SamplingTensors.build(seqs, logits.shape[-1], self.device))
        self._last_sampled = out.tokens
        for row, seq in enumerate(seqs):
            seq.pending_row = row
        if self.device.type != "cuda":
            return LaunchedStep(batch, sample_seqs, out, None)
        host = SamplerOutput(*(_to_host(t) for t in (out.tokens, out.logprobs, out.top_ids, out.top_logprobs)))
        done = torch.cuda.Event()
        done.record()
        return LaunchedStep(batch, sample_seqs, host, done)

    def collect(self, step: LaunchedStep) -> list[TokenSample | None]:
        """Wait for a launched step: the sampled token (and logprobs) of each sequence that samples."""
        results: list[TokenSample | None] = [None] * len(step.batch)
        if not step.sample_seqs:
            return results
        if step.done is not None:
            step.done.synchronize()
        tokens = step.output.tokens.tolist()
        logprobs = self._logprobs(step.output, tokens, [step.batch.seqs[i] for i in step.sample_seqs])
        for j, i in enumerate(step.sample_seqs):
            results[i] = TokenSample(tokens[j], logprobs[j])
        return results

    @staticmethod
    def _logprobs(out: SamplerOutput, tokens: list[int], seqs) -> list[TokenLogprob | None]:
        if out.logprobs is None:
            return [None] * len(seqs)
        chosen = out.logprobs.tolist()
        top_ids = out.top_ids.tolist() if out.top_ids is not None else None
        top_lp = out.top_logprobs.tolist() if out.top_logprobs is not None else None
        result = []
        for j, seq in enumerate(seqs):
            k = seq.params.logprobs
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
