"""Decode steps replayed from CUDA graphs.

One graph per batch-size bucket, captured largest first into one shared memory pool. Each graph
reads static input buffers (token ids, positions, slots, context lengths, block tables) and
writes static logits; a step copies its inputs into the buffers, pads the bucket with rows that
write nowhere (slot -1) and attend to nothing (context 0), and replays. The decode kernel's
split count is fixed per bucket at capture, and it cuts each row's context at run time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

import kernels

from .attention import AttentionMetadata
from .model import LlamaModel


def capture(forward: Callable[[], None], pool: tuple | None) -> torch.cuda.CUDAGraph:
    """A graph of `forward`, run once first (so that kernels compile outside the capture), its
    memory from `pool` (None: a new one; `graph.pool()` shares it with the next capture)."""
    forward()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        forward()
    return graph


def batch_buckets(max_num_seqs: int) -> list[int]:
    small = [1, 2, 4, 8]
    return [b for b in small if b < max_num_seqs] + list(range(16, max_num_seqs, 16)) + [max_num_seqs]


class DecodeGraphs:
    def __init__(self, model: LlamaModel, kv_cache: torch.Tensor, kv_scales: torch.Tensor | None, max_num_seqs: int,
                 max_blocks_per_seq: int, max_model_len: int, num_sms: int):
        device = kv_cache.device
        self.model, self.kv_cache, self.kv_scales = model, kv_cache, kv_scales
        self.buckets = batch_buckets(max_num_seqs)
        n = self.buckets[-1]
        i32, i64 = dict(dtype=torch.int32, device=device), dict(dtype=torch.int64, device=device)
        self.input_ids = torch.zeros(n, **i64)
        self.positions = torch.zeros(n, **i64)
        self.slot_mapping = torch.full((n,), -1, **i64)
        self.context_lens = torch.zeros(n, **i32)
        self.block_tables = torch.zeros(n, max_blocks_per_seq, **i32)
        self.cu_seqlens = torch.arange(n + 1, **i32)
        self.logits = torch.zeros(n, model.cfg.vocab_size, dtype=torch.float32, device=device)
        self.splits = {b: kernels.decode_num_splits(b, model.num_local_kv_heads, max_model_len, num_sms,
                                                    kv_int8=kv_scales is not None,
                                                    group=model.query_heads_per_kv_head)
                       for b in self.buckets}
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._capture()

    def _forward(self, bs: int) -> None:
        meta = AttentionMetadata(self.cu_seqlens[:bs + 1], self.context_lens[:bs], self.block_tables[:bs],
                                 self.slot_mapping[:bs], max_query_len=1, max_context_len=0,
                                 num_decodes=bs, decode_splits=self.splits[bs])
        hidden = self.model(self.input_ids[:bs], self.positions[:bs], self.kv_cache, meta, self.kv_scales)
        self.logits[:bs] = self.model.compute_logits(hidden)

    @torch.inference_mode()
    def _capture(self) -> None:
        pool = None
        for bs in reversed(self.buckets):
            self.graphs[bs] = capture(functools.partial(self._forward, bs), pool)
            pool = self.graphs[bs].pool()
        torch.cuda.synchronize()

    def bucket(self, batch: int) -> int | None:
        return next((b for b in self.buckets if b >= batch), None)

    def run(self, input_ids: torch.Tensor, positions: torch.Tensor, slot_mapping: torch.Tensor,
            context_lens: torch.Tensor, block_tables: torch.Tensor) -> torch.Tensor:
        """Logits [n, vocab] of a decode step of n <= max_num_seqs sequences (inputs on the GPU)."""
        n, width = block_tables.shape
        bs = self.bucket(n)
        self.input_ids[:n] = input_ids
        self.positions[:n] = positions
        self.slot_mapping[:n] = slot_mapping
        self.slot_mapping[n:bs] = -1
        self.context_lens[:n] = context_lens
        self.context_lens[n:bs] = 0
        self.block_tables[:n, :width] = block_tables
        self.graphs[bs].replay()
        return self.logits[:n]
