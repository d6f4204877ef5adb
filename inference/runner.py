"""Runs the model for one scheduled batch on one device (or one tensor-parallel rank) and
samples the next tokens. It owns the weights and the KV cache tensor."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .attention import AttentionMetadata
from .config import EngineConfig, ModelConfig
from .model import LlamaModel, TensorParallel
from .outputs import TokenLogprob
from .sampler import SamplingTensors, sample
from .scheduler import Batch
from .weights import load_weights


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
                 tp: TensorParallel = TensorParallel()):
        """`sample_vocab_size`: tokens the tokenizer can decode; the model's extra rows (a padded
        embedding) are never sampled."""
        self.model_config, self.config = model_config, engine_config
        self.device, self.dtype = device, dtype
        self.sample_vocab_size = min(sample_vocab_size, model_config.vocab_size)
        self.model = LlamaModel(model_config, dtype, device, tp)
        load_weights(self.model, model_dir)
        self.num_blocks = self._pool_size()
        cfg, bs = model_config, engine_config.block_size
        self.kv_cache = torch.zeros(cfg.num_layers, 2, self.num_blocks, bs, self.model.num_local_kv_heads,
                                    cfg.head_dim, dtype=dtype, device=device)

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
            free, _ = torch.cuda.mem_get_info(self.device)
            # leave room for activations of the largest step: a few [tokens, hidden/MLP] tensors
            m = self.model_config
            act = cfg.max_num_batched_tokens * (4 * m.hidden_size + 3 * m.intermediate_size + m.vocab_size) * 4
            budget = free * cfg.kv_cache_memory_fraction - act
        else:
            budget = cfg.kv_cache_gib * (1 << 30)
        blocks = int(budget // self.block_bytes)
        if blocks < 1:
            raise ValueError("no memory left for the KV cache after loading the weights")
        return blocks

    # --- one step --------------------------------------------------------------------------------

    def prepare(self, batch: Batch) -> StepInputs:
        bs = self.config.block_size
        ids, positions, slots, cu, ctx, tables = [], [], [], [0], [], []
        sample_rows, sample_seqs = [], []
        for i, (seq, n) in enumerate(zip(batch.seqs, batch.num_new_tokens)):
            start, end = seq.num_computed_tokens, seq.num_computed_tokens + n
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
        table_tensor = torch.zeros(len(tables), width, dtype=torch.int32)
        for i, t in enumerate(tables):
            table_tensor[i, :len(t)] = torch.tensor(t, dtype=torch.int32)

        def dev(values, dtype):
            return torch.tensor(values, dtype=dtype).to(self.device, non_blocking=True)

        meta = AttentionMetadata(
            cu_seqlens_q=dev(cu, torch.int32), context_lens=dev(ctx, torch.int32),
            block_tables=table_tensor.to(self.device, non_blocking=True), slot_mapping=dev(slots, torch.int64),
            max_query_len=max(batch.num_new_tokens), max_context_len=max(ctx))
        return StepInputs(dev(ids, torch.int64), dev(positions, torch.int64), meta,
                          dev(sample_rows, torch.int64), sample_seqs)

    @torch.inference_mode()
    def forward(self, batch: Batch) -> tuple[torch.Tensor, list[int]]:
        """Run the model over the batch: the raw logits [S, vocab] of the S sequences that reach
        their last token, and their indices in the batch."""
        inputs = self.prepare(batch)
        hidden = self.model(inputs.input_ids, inputs.positions, self.kv_cache, inputs.meta)
        return self.model.compute_logits(hidden[inputs.sample_rows]), inputs.sample_seqs

    @torch.inference_mode()
    def execute(self, batch: Batch) -> list[TokenSample | None]:
        """Forward the batch; a sampled token for each sequence that reached its last token."""
        logits, sample_seqs = self.forward(batch)
        results: list[TokenSample | None] = [None] * len(batch)
        if not sample_seqs:
            return results
        if self.sample_vocab_size < logits.shape[-1]:
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
