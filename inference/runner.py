"""Runs the model for one scheduled batch on one device (or one tensor-parallel rank) and
samples the next tokens. It owns the weights and the KV cache tensor."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

import kernels

from .attention import AttentionMetadata
from .cuda_graphs import DecodeGraphs
from .config import EngineConfig, ModelConfig
from .model import LlamaModel, TensorParallel
from .outputs import TokenLogprob
from .sampler import SamplingTensors, sample
from .scheduler import Batch
from .transfer import lists_to_device
from .weights import fill_random, load_weights


@dataclass(slots=True)
class StepInputs:
    input_ids: torch.Tensor
    positions: torch.Tensor
    meta: AttentionMetadata
    sample_rows: torch.Tensor  # flat-token index of each sampling sequence's last token
    sample_seqs: list[int]  # batch index of each sampling sequence


@dataclass(slots=True)
class TokenSample:
    token: int
    logprob: TokenLogprob | None


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
        self.num_sms = (torch.cuda.get_device_properties(device).multi_processor_count
                         if device.type == "cuda" else 1)
        self.num_blocks = self._pool_size()
        cfg, bs = model_config, engine_config.block_size
        self.kv_cache = torch.zeros(cfg.num_layers, 2, self.num_blocks, bs, self.model.num_local_kv_heads,
                                    cfg.head_dim, dtype=dtype, device=device)
        self.graphs = None
        if device.type == "cuda" and not engine_config.enforce_eager:
            self.graphs = DecodeGraphs(self.model, self.kv_cache, engine_config.max_num_seqs,
                                       -(-engine_config.max_model_len // bs), engine_config.max_model_len,
                                       self.num_sms)

    @property
    def block_bytes(self) -> int:
        cfg = self.model_config
        return (2 * cfg.num_layers * self.config.block_size * self.model.num_local_kv_heads * cfg.head_dim
                * torch.empty((), dtype=self.dtype).element_size())

    def _pool_size(self) -> int:
        cfg = self.config
        if cfg.num_kv_blocks is not None:
            return cfg.num_kv_blocks
        if self.device.type != "cuda":
            budget = cfg.kv_cache_gib * (1 << 30)
        else:
            budget = self._gpu_kv_budget()
        blocks = int(budget // self.block_bytes)
        if blocks < 1:
            raise ValueError("no memory left for the KV cache after loading the weights")
        return blocks

    def _gpu_kv_budget(self) -> float:
        """Memory for the KV cache: the configured fraction of the card, less the weights, the
        peak activations of the largest step (measured by running one) and other processes'."""
        cfg, m = self.config, self.model_config
        tokens = cfg.max_num_batched_tokens
        scratch_blocks = -(-tokens // cfg.block_size)
        scratch = torch.zeros(m.num_layers, 2, scratch_blocks, cfg.block_size, self.model.num_local_kv_heads,
                              m.head_dim, dtype=self.dtype, device=self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        with torch.inference_mode():
            meta = AttentionMetadata(
                cu_seqlens_q=torch.tensor([0, tokens], dtype=torch.int32, device=self.device),
                context_lens=torch.tensor([tokens], dtype=torch.int32, device=self.device),
                block_tables=torch.arange(scratch_blocks, dtype=torch.int32, device=self.device)[None],
                slot_mapping=torch.arange(tokens, dtype=torch.int64, device=self.device),
                max_query_len=tokens, max_context_len=tokens)
            hidden = self.model(torch.zeros(tokens, dtype=torch.int64, device=self.device),
                                torch.arange(tokens, device=self.device) % m.max_position_embeddings,
                                scratch, meta)
            self.model.compute_logits(hidden[-1:])
        torch.cuda.synchronize(self.device)
        peak = torch.cuda.max_memory_allocated(self.device) - scratch.numel() * scratch.element_size()
        del scratch, hidden
        torch.cuda.empty_cache()
        free, total = torch.cuda.mem_get_info(self.device)
        others = total - free - torch.cuda.memory_reserved(self.device)
        sampler = cfg.max_num_seqs * m.vocab_size * 32  # logits, probabilities, noise of a full batch
        graphs = 0 if cfg.enforce_eager else 512 << 20
        return total * cfg.kv_cache_memory_fraction - others - peak - sampler - graphs

    # --- one step --------------------------------------------------------------------------------

    def prepare(self, batch: Batch) -> StepInputs:
        bs = self.config.block_size
        ids, positions, slots, cu, ctx, tables = [], [], [], [0], [], []
        sample_rows, sample_seqs = [], []
        num_decodes = 0
        for i, (seq, n) in enumerate(zip(batch.seqs, batch.num_new_tokens)):
            start, end = seq.num_computed_tokens, seq.num_computed_tokens + n
            if n == 1 and num_decodes == i:
                num_decodes += 1
            ids.extend(seq.token_ids[start:end])
            positions.extend(range(start, end))
            table = seq.block_table
            slots.extend(table[p // bs] * bs + p % bs for p in range(start, end))
            cu.append(cu[-1] + n)
            ctx.append(end)
            tables.append(table)
            if batch.samples(i):
                sample_rows.append(cu[-1] - 1)
                sample_seqs.append(i)
        width = max(len(t) for t in tables)
        flat_tables = [b for t in tables for b in (t + [0] * (width - len(t)))]
        ints = lists_to_device([ids, positions, slots, sample_rows], torch.int64, self.device)
        int32s = lists_to_device([cu, ctx, flat_tables], torch.int32, self.device)
        decode_ctx = max(ctx[:num_decodes], default=0)
        meta = AttentionMetadata(
            cu_seqlens_q=int32s[0], context_lens=int32s[1], block_tables=int32s[2].view(len(tables), width),
            slot_mapping=ints[2], max_query_len=max(batch.num_new_tokens), max_context_len=max(ctx),
            num_decodes=num_decodes,
            decode_splits=kernels.decode_num_splits(num_decodes, self.model.num_local_kv_heads, decode_ctx,
                                                    self.num_sms))
        return StepInputs(ints[0], ints[1], meta, ints[3], sample_seqs)

    @torch.inference_mode()
    def forward(self, batch: Batch) -> tuple[torch.Tensor, list[int]]:
        """Run the model over the batch: the raw logits [S, vocab] of the S sequences that reach
        their last token, and their indices in the batch."""
        inputs = self.prepare(batch)
        meta = inputs.meta
        if (self.graphs is not None and meta.num_decodes == len(batch)
                and self.graphs.bucket(len(batch)) is not None):
            logits = self.graphs.run(inputs.input_ids, inputs.positions, meta.slot_mapping, meta.context_lens,
                                     meta.block_tables)
            return logits, inputs.sample_seqs
        hidden = self.model(inputs.input_ids, inputs.positions, self.kv_cache, meta)
        return self.model.compute_logits(hidden[inputs.sample_rows]), inputs.sample_seqs

    @torch.inference_mode()
    def execute(self, batch: Batch) -> list[TokenSample | None]:
        """Forward the batch; a sampled token for each sequence that reached its last token."""
        logits, sample_seqs = self.forward(batch)
        results: list[TokenSample | None] = [None] * len(batch)
        if not sample_seqs:
            return results
        if self.sample_vocab_size < logits.shape[-1]:
            logits = logits.clone() if self.graphs is not None else logits
            logits[:, self.sample_vocab_size:] = float("-inf")
        seqs = [batch.seqs[i] for i in sample_seqs]
        tensors = SamplingTensors.build(seqs, logits.shape[-1], self.device)
        out = sample(logits, tensors)
        tokens = out.tokens.tolist()
        logprobs = self._logprobs(out, seqs)
        for j, i in enumerate(sample_seqs):
            results[i] = TokenSample(tokens[j], logprobs[j])
        return results

    @staticmethod
    def _logprobs(out, seqs) -> list[TokenLogprob | None]:
        if out.logprobs is None:
            return [None] * len(seqs)
        chosen = out.logprobs.tolist()
        top_ids = out.top_ids.tolist() if out.top_ids is not None else None
        top_lp = out.top_logprobs.tolist() if out.top_logprobs is not None else None
        tokens = out.tokens.tolist()
        result = []
        for j, seq in enumerate(seqs):
            k = seq.params.logprobs
            if k is None:
                result.append(None)
                continue
            top = list(zip(top_ids[j][:k], top_lp[j][:k])) if k and top_ids else []
            result.append(TokenLogprob(tokens[j], chosen[j], top))
        return result
