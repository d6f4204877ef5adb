"""The Llama / Code Llama decoder, written against the paged KV cache.

Projections are fused (QKV, gate/up) and may hold one tensor-parallel shard: column-parallel
layers (QKV, gate/up) hold a slice of the heads / MLP columns, row-parallel layers (o, down)
the matching input slice, and their partial sums are all-reduced inline. With a quantization
scheme the four projections are QuantizedLinear modules (inference/quant), the rest stays dense.
An int8 KV cache comes with its scales (kernels/kv_int8.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

import kernels

from .attention import AttentionMetadata, paged_attention
from .config import ModelConfig
from .quant import QuantizedLinear, QuantScheme, linear, packed_input


@dataclass(frozen=True, slots=True)
class TensorParallel:
    rank: int = 0
    size: int = 1
    group: object = None  # torch.distributed process group when size > 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.size:
            raise ValueError(f"tensor-parallel rank {self.rank} outside 0..{self.size - 1}")

    def shard(self, n: int, what: str) -> int:
        if n % self.size:
            raise ValueError(f"{what} ({n}) is not divisible by the tensor-parallel size {self.size}")
        return n // self.size

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        if self.size > 1:
            dist.all_reduce(x, group=self.group)
        return x


def _empty(*shape: int, dtype: torch.dtype, device: torch.device) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape, dtype=dtype, device=device), requires_grad=False)


def _projection(out_features: int, in_features: int, quant: QuantScheme | None, what: str,
                dtype: torch.dtype, device: torch.device) -> nn.Parameter | QuantizedLinear:
    if quant is None:
        return _empty(out_features, in_features, dtype=dtype, device=device)
    return QuantizedLinear(in_features, out_features, quant, device, what)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, tp: TensorParallel, dtype: torch.dtype, device: torch.device,
                 quant: QuantScheme | None = None):
        super().__init__()
        self.tp = tp
        self.num_heads = tp.shard(cfg.num_heads, "num_attention_heads")
        self.num_kv_heads = tp.shard(cfg.num_kv_heads, "num_key_value_heads")
        self.head_dim = cfg.head_dim
        self.eps = cfg.rms_norm_eps
        self.scale = cfg.head_dim ** -0.5
        inter = tp.shard(cfg.intermediate_size, "intermediate_size")
        qkv_rows = (self.num_heads + 2 * self.num_kv_heads) * cfg.head_dim
        kw = dict(dtype=dtype, device=device)
        self.input_layernorm = _empty(cfg.hidden_size, **kw)
        self.qkv_proj = _projection(qkv_rows, cfg.hidden_size, quant, "qkv_proj", **kw)
        self.o_proj = _projection(cfg.hidden_size, self.num_heads * cfg.head_dim, quant, "o_proj", **kw)
        self.post_attention_layernorm = _empty(cfg.hidden_size, **kw)
        self.gate_up_proj = _projection(2 * inter, cfg.hidden_size, quant, "gate_up_proj", **kw)
        self.down_proj = _projection(cfg.hidden_size, inter, quant, "down_proj", **kw)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor | None, positions: torch.Tensor,
                cos_sin: torch.Tensor, kv_cache: torch.Tensor, meta: AttentionMetadata,
                kv_scales: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        qkv, residual = self.project_qkv(hidden, residual)
        return self.finish(self.attend_qkv(qkv, positions, cos_sin, kv_cache, meta, kv_scales), residual)

    def project_qkv(self, hidden: torch.Tensor, residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer up to attention: (q, k, v of this rank's heads side by side, the residual)."""
        packed = packed_input(hidden, self.qkv_proj)
        x, residual = kernels.rms_norm(hidden, self.input_layernorm, self.eps, residual, packed)
        return linear(x, self.qkv_proj, packed), residual

    def attend(self, x: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor, kv_cache: torch.Tensor,
               meta: AttentionMetadata, kv_scales: torch.Tensor | None = None) -> torch.Tensor:
        """The attention output of this rank's heads for normed inputs x, [T, heads * head_dim]."""
        return self.attend_qkv(linear(x, self.qkv_proj), positions, cos_sin, kv_cache, meta, kv_scales)

    def attend_qkv(self, qkv: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor, kv_cache: torch.Tensor,
                   meta: AttentionMetadata, kv_scales: torch.Tensor | None = None,
                   out: torch.Tensor | None = None) -> torch.Tensor:
        """Rotary, the new K/V into the cache, attention: [T, heads * head_dim] (o_proj's input),
        written into `out` when given. q is rotated in place in qkv."""
        t, d = qkv.shape[0], self.head_dim
        q, k, v = qkv.split([self.num_heads * d, self.num_kv_heads * d, self.num_kv_heads * d], dim=-1)
        q, k, v = q.view(t, -1, d), k.view(t, -1, d), v.view(t, -1, d)
        k_cache, v_cache = kv_cache[0], kv_cache[1]
        k_scales, v_scales = (None, None) if kv_scales is None else (kv_scales[0], kv_scales[1])
        kernels.rotary_write_kv(q, k, v, positions, cos_sin, k_cache, v_cache, meta.slot_mapping, k_scales, v_scales)
        out = None if out is None else out.view(t, -1, d)
        return paged_attention(q, k_cache, v_cache, meta, self.scale, k_scales, v_scales, out=out).view(t, -1)

    def finish(self, attn: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer after attention: o_proj, the MLP and their residual adds. The 4-bit kernels of up
        to 64 rows read their inputs in the form the norm and SiLU kernels write them besides
        (packed_input: kernels/gemv_input.py, kernels/gemm_input.py)."""
        hidden = self.tp.all_reduce(linear(attn, self.o_proj))
        packed = packed_input(hidden, self.gate_up_proj)
        x, residual = kernels.rms_norm(hidden, self.post_attention_layernorm, self.eps, residual, packed)
        down_packed = packed_input(x, self.down_proj)
        return self.tp.all_reduce(linear(self.gated(x, packed, down_packed), self.down_proj, down_packed)), residual

    def gated(self, x: torch.Tensor, packed: torch.Tensor | None = None,
              packed_out: torch.Tensor | None = None) -> torch.Tensor:
        """silu(gate) * up, [T, intermediate] (down_proj's input); packed: x in the form gate_up's
        kernel reads, packed_out: a buffer for the result in the form down's reads."""
        return kernels.silu_and_mul(linear(x, self.gate_up_proj, packed), packed_out)


class LlamaModel(nn.Module):
    """Parameters are allocated uninitialised; `inference.weights.load_weights` fills them."""

    def __init__(self, cfg: ModelConfig, dtype: torch.dtype, device: torch.device | str,
                 tp: TensorParallel = TensorParallel(), quant: QuantScheme | None = None):
        super().__init__()
        device = torch.device(device)
        self.cfg, self.tp, self.quant = cfg, tp, quant
        kw = dict(dtype=dtype, device=device)
        self.embed_tokens = _empty(cfg.vocab_size, cfg.hidden_size, **kw)
        self.layers = nn.ModuleList(DecoderLayer(cfg, tp, dtype, device, quant) for _ in range(cfg.num_layers))
        self.norm = _empty(cfg.hidden_size, **kw)
        self.lm_head = self.embed_tokens if cfg.tie_word_embeddings else _empty(cfg.vocab_size, cfg.hidden_size, **kw)
        self.register_buffer("cos_sin", kernels.rotary_cos_sin(
            cfg.head_dim, cfg.max_position_embeddings, cfg.rope_theta, cfg.rope_scaling_factor, device),
            persistent=False)

    @property
    def num_local_kv_heads(self) -> int:
        return self.layers[0].num_kv_heads

    @property
    def query_heads_per_kv_head(self) -> int:
        return self.cfg.num_heads // self.cfg.num_kv_heads

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, kv_caches: torch.Tensor,
                meta: AttentionMetadata, kv_scales: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids, positions: [T]; kv_caches: [layers, 2, blocks, block_size, kv_heads, head_dim],
        int8 with kv_scales [layers, 2, blocks, block_size, kv_heads]. Returns the final-normed
        hidden states, [T, hidden]."""
        hidden, residual = F.embedding(input_ids, self.embed_tokens), None
        for i, layer in enumerate(self.layers):
            hidden, residual = layer(hidden, residual, positions, self.cos_sin, kv_caches[i], meta,
                                     None if kv_scales is None else kv_scales[i])
        hidden, _ = kernels.rms_norm(hidden, self.norm, self.cfg.rms_norm_eps, residual)
        return hidden

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.lm_head).float()
