"""Verifying steps replayed from CUDA graphs.

A verifying step scores each decoding sequence's last token and its draft: k + 1 query rows,
k differing between sequences. Run eagerly, such a step costs several decode steps at small
batches (the launches of a 7B forward, not its arithmetic, set the time: `bench verify`), which
would undo what speculation saves. So the step is padded to a shape captured once: every
sequence gets q rows (q: the step's longest), its real rows first, then rows that write nowhere
(slot -1) and that come after the real ones in its context, so causal attention keeps them out
of every real row; the batch is padded to a bucket of sequences that attend to nothing of
anyone's. One graph per (bucket, q) for the small batches where launches dominate; larger
verifying steps run eagerly (there a graph gains little: the table's two rows meet).
"""

from __future__ import annotations

import functools

import torch

from .attention import AttentionMetadata
from .cuda_graphs import batch_buckets, capture
from .model import LlamaModel

MAX_BATCH = 64  # the largest verifying batch replayed from a graph


class VerifyGraphs:
    def __init__(self, model: LlamaModel, kv_cache: torch.Tensor, kv_scales: torch.Tensor | None, max_num_seqs: int,
                 max_blocks_per_seq: int, max_query_len: int, block_size: int, capture: bool = True):
        """`max_query_len`: the longest draft plus one. `capture` False replays nothing: each step
        runs the padded forward eagerly (the CPU's tests of the padding)."""
        device = kv_cache.device
        self.model, self.kv_cache, self.kv_scales = model, kv_cache, kv_scales
        self.buckets = [b for b in batch_buckets(max_num_seqs) if b <= MAX_BATCH]
        self.max_query_len = max_query_len
        bs, rows = self.buckets[-1], self.buckets[-1] * max_query_len
        i32, i64 = dict(dtype=torch.int32, device=device), dict(dtype=torch.int64, device=device)
        self.input_ids = torch.zeros(rows, **i64)
        self.positions = torch.zeros(rows, **i64)
        self.slot_mapping = torch.full((rows,), -1, **i64)
        self.context_lens = torch.zeros(bs, **i32)
        # a padding row's position may lie up to q - 1 past the model's length: its table has room
        self.block_tables = torch.zeros(bs, max_blocks_per_seq + -(-max_query_len // block_size), **i32)
        self.cu_seqlens = {q: torch.arange(0, bs * q + 1, q, **i32) for q in range(2, max_query_len + 1)}
        self.logits = torch.zeros(rows, model.cfg.vocab_size, dtype=torch.float32, device=device)
        self.graphs: dict[tuple[int, int], torch.cuda.CUDAGraph] = {}
        if capture:
            self._capture()

    def fits(self, num_seqs: int, query_len: int) -> bool:
        return num_seqs <= self.buckets[-1] and 2 <= query_len <= self.max_query_len

    def _forward(self, bs: int, q: int) -> None:
        rows = bs * q
        meta = AttentionMetadata(self.cu_seqlens[q][:bs + 1], self.context_lens[:bs], self.block_tables[:bs],
                                 self.slot_mapping[:rows], max_query_len=q, max_context_len=0)
        hidden = self.model(self.input_ids[:rows], self.positions[:rows], self.kv_cache, meta, self.kv_scales)
        self.logits[:rows] = self.model.compute_logits(hidden)

    @torch.inference_mode()
    def _capture(self) -> None:
        """Largest first, into one memory pool."""
        pool = None
        self.context_lens.fill_(self.max_query_len)  # warm-up rows attend to real (if stale) cache rows
        for bs in reversed(self.buckets):
            for q in range(self.max_query_len, 1, -1):
                self.graphs[bs, q] = capture(functools.partial(self._forward, bs, q), pool)
                pool = self.graphs[bs, q].pool()
        torch.cuda.synchronize()

    def run(self, input_ids: torch.Tensor, positions: torch.Tensor, slot_mapping: torch.Tensor,
            cu_seqlens: torch.Tensor, context_lens: torch.Tensor, block_tables: torch.Tensor,
            query_len: int) -> torch.Tensor:
        """Logits [T, vocab] of the step's T flat rows (the runner's layout: sequence by sequence),
        for n sequences that each compute at most `query_len` tokens (inputs on the device)."""
        n, width = block_tables.shape
        bs, q = next(b for b in self.buckets if b >= n), query_len
        flat = torch.arange(input_ids.shape[0], dtype=torch.int32, device=input_ids.device)
        owner = torch.searchsorted(cu_seqlens[1:], flat, right=True)
        padded = owner * q + (flat - cu_seqlens[owner])  # each flat row's row in the padded layout
        self.slot_mapping[:bs * q].fill_(-1)
        self.slot_mapping[padded] = slot_mapping
        self.input_ids[padded] = input_ids
        self.positions[padded] = positions
        # a sequence of k + 1 < q rows: its q - k - 1 padding rows sit after its context
        self.context_lens[:n] = context_lens + q - (cu_seqlens[1:] - cu_seqlens[:-1])
        self.context_lens[n:bs] = q
        self.block_tables[:n, :width] = block_tables
        self.block_tables[n:bs] = 0
        graph = self.graphs.get((bs, q))
        if graph is not None:
            graph.replay()
        else:
            self._forward(bs, q)
        return self.logits[padded]
