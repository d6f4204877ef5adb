"""Activation-aware weight quantization (AWQ, Lin et al. 2023) of one decoder layer.

Input channels that see large activations matter most to a layer's output, so before rounding
to 4 bits the weight's input channels are multiplied by s = mean|x|^alpha (normalised), and the
inputs divided by s; the division is folded into whatever produces the input (an RMSNorm weight,
or the rows of v_proj / up_proj), so the layer computes the same function and only the rounding
changes. alpha is searched per projection group on calibration activations, minimising the
error of the projection's output; alpha = 0 is plain round-to-nearest, so the search never does
worse than it on those activations.

    qkv_proj      input: input_layernorm(h)      s folded into input_layernorm
    o_proj        input: attention output        s folded into v_proj's rows (multi-head only:
                                                 with GQA one v row feeds several o inputs)
    gate_up_proj  input: post_attention_layernorm(h)   s folded into post_attention_layernorm
    down_proj     input: silu(gate) * up         s folded into up_proj's rows
"""

from __future__ import annotations

import torch

from .rtn import fake_quantize

ALPHAS = 20  # grid 0, 0.05, ..., 0.95
SEARCH_TOKENS = 4096  # activations the error is measured on (evenly strided)


def search_scale(x: torch.Tensor, w: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """x: [T, K] inputs, w: [N, K] -> the input-channel scales s [K] (float32) whose
    fake_quantize(w * s) / s best reproduces x @ w.T."""
    x = x[:: max(1, x.shape[0] // SEARCH_TOKENS)].float()
    w = w.float()
    # the output error x @ d.T (d: the weight's rounding error) has mean square
    # sum((d @ x.T x) * d) / (T N): the inputs enter once, through their [K, K] Gram matrix
    gram = x.t() @ x / (x.shape[0] * w.shape[0])
    mean = x.abs().mean(0).clamp(min=1e-6)
    best, best_scale = float("inf"), torch.ones_like(mean)
    for i in range(ALPHAS):
        s = mean.pow(i / ALPHAS)
        s = s / (s.max() * s.min()).sqrt()
        d = fake_quantize(w * s, bits, group_size) / s - w
        err = ((d @ gram) * d).sum().item()
        if err < best:
            best, best_scale = err, s
    return best_scale


@torch.no_grad()
def apply_awq(layer, x_attn: torch.Tensor, attn_out: torch.Tensor, x_mlp: torch.Tensor, mlp_act: torch.Tensor,
              bits: int, group_size: int) -> None:
    """Search and fold the four projections' scales into a dense DecoderLayer, given the inputs
    each projection saw (their rows: calibration tokens)."""
    d = layer.head_dim
    q_rows, kv_rows = layer.num_heads * d, layer.num_kv_heads * d
    inter = layer.down_proj.shape[1]

    def fold(weight: torch.Tensor, s: torch.Tensor, producer: torch.Tensor) -> None:
        weight.mul_(s.to(weight.dtype))
        producer.div_((s if producer.dim() == 1 else s[:, None]).to(producer.dtype))

    fold(layer.qkv_proj, search_scale(x_attn, layer.qkv_proj, bits, group_size), layer.input_layernorm)
    if kv_rows == q_rows:  # multi-head attention: o's input channel j is v's output row j
        fold(layer.o_proj, search_scale(attn_out, layer.o_proj, bits, group_size),
             layer.qkv_proj[q_rows + kv_rows:])
    fold(layer.gate_up_proj, search_scale(x_mlp, layer.gate_up_proj, bits, group_size),
         layer.post_attention_layernorm)
    fold(layer.down_proj, search_scale(mlp_act, layer.down_proj, bits, group_size), layer.gate_up_proj[inter:])
