"""Steps with prompt tokens replayed piecewise from CUDA graphs.

Such a step runs a dozen kernel launches per layer, and for a short prompt Python launching them
takes longer than the GPU running them (a 128-token prompt of the 7B shape on an H200: 8.5 ms for
4.6 ms of kernels in bf16, 16 ms for 7.5 with 4-bit weights). Only attention depends on the
step's batch (its sequences, their lengths and caches); everything between one layer's attention
and the next (o_proj, the norms, the MLP, the next qkv_proj) depends on the token count alone. So
for each bucket of token counts that stretch is captured once per layer: a step copies its
embeddings into a static buffer, then for each layer runs rotary, the K/V write and attention
eagerly on its real rows and replays the next graph. Rows past the step's tokens are padding:
zero at the start, multiplied along and never read.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

import kernels

from .attention import AttentionMetadata
from .cuda_graphs import capture
from .model import LlamaModel

TOKEN_BUCKETS = (16, 32, 64, 96, 128, 192, 256, 384, 512)


def token_buckets(max_num_batched_tokens: int) -> tuple[int, ...]:
    """The buckets a step of at most that many tokens can need (no graph larger than the step)."""
    if max_num_batched_tokens >= TOKEN_BUCKETS[-1]:
        return TOKEN_BUCKETS
    return tuple(b for b in TOKEN_BUCKETS if b < max_num_batched_tokens) + (max_num_batched_tokens,)


class PrefillGraphs:
    def __init__(self, model: LlamaModel, device: torch.device, buckets: tuple[int, ...] = TOKEN_BUCKETS,
                 capture_graphs: bool = True):
        """`capture_graphs` False replays nothing: each piece runs eagerly (the CPU's tests of the
        pieces and the padding)."""
        cfg, layer = model.cfg, model.layers[0]
        self.model, self.buckets = model, buckets
        rows, kw = buckets[-1], dict(dtype=model.embed_tokens.dtype, device=device)
        self.hidden = torch.zeros(rows, cfg.hidden_size, **kw)  # the embeddings; the residual stream
        self.attn = torch.zeros(rows, layer.num_heads * cfg.head_dim, **kw)  # each layer's attention output
        self.qkv = torch.zeros(rows, (layer.num_heads + 2 * layer.num_kv_heads) * cfg.head_dim, **kw)
        self.residual: dict[int, torch.Tensor] = {}
        self.out: dict[int, torch.Tensor] = {}  # the final-normed hidden states, per bucket
        self.graphs: dict[int, list[torch.cuda.CUDAGraph]] = {}
        if capture_graphs:
            self._capture()

    def fits(self, num_tokens: int) -> bool:
        return num_tokens <= self.buckets[-1]

    def _pieces(self, rows: int) -> list[Callable[[], None]]:
        """The stretches between attentions for `rows` rows: before the first layer's, between
        each layer's and the next one's, after the last one's."""
        layers, model = self.model.layers, self.model

        def first() -> None:
            qkv, self.residual[rows] = layers[0].project_qkv(self.hidden[:rows], None)
            self.qkv[:rows] = qkv

        def between(before, after) -> Callable[[], None]:
            def piece() -> None:
                hidden, residual = before.finish(self.attn[:rows], self.residual[rows])
                qkv, self.residual[rows] = after.project_qkv(hidden, residual)
                self.qkv[:rows] = qkv
            return piece

        def last() -> None:
            hidden, residual = layers[-1].finish(self.attn[:rows], self.residual[rows])
            self.out[rows], _ = kernels.rms_norm(hidden, model.norm, model.cfg.rms_norm_eps, residual)

        return [first] + [between(a, b) for a, b in zip(layers, layers[1:])] + [last]

    @torch.inference_mode()
    def _capture(self) -> None:
        """Largest first, into one memory pool (each bucket's pieces replay in capture order)."""
        pool = None
        for rows in reversed(self.buckets):
            self.graphs[rows] = []
            for piece in self._pieces(rows):
                graph = capture(piece, pool)
                pool = graph.pool()
                self.graphs[rows].append(graph)
        torch.cuda.synchronize()

    @torch.inference_mode()
    def run(self, input_ids: torch.Tensor, positions: torch.Tensor, kv_caches: torch.Tensor, meta: AttentionMetadata,
            kv_scales: torch.Tensor | None = None) -> torch.Tensor:
        """The model's forward (LlamaModel.forward's arguments and result) for a step of at most
        the largest bucket's tokens."""
        t = input_ids.shape[0]
        rows = next(b for b in self.buckets if b >= t)
        torch.index_select(self.model.embed_tokens, 0, input_ids, out=self.hidden[:t])
        self.hidden[t:rows].zero_()
        pieces = [graph.replay for graph in self.graphs[rows]] if self.graphs else self._pieces(rows)
        pieces[0]()
        for i, layer in enumerate(self.model.layers):
            layer.attend_qkv(self.qkv[:t], positions, self.model.cos_sin, kv_caches[i], meta,
                             None if kv_scales is None else kv_scales[i], out=self.attn[:t])
            pieces[i + 1]()
        return self.out[rows][:t]
