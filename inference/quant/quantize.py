"""Quantizing a dense model ourselves (`codellama convert --quant awq|int8`).

    int8  each projection rounded per output channel, symmetric, 8 bits (no calibration)
    awq   4-bit, asymmetric, groups of 128 inputs, after AWQ's activation-aware scaling (awq.py):
          the calibration samples run through the model layer by layer, each layer's scales are
          searched on the activations it sees, and the next layer sees the quantized layer's output

The result is what a quantized Hugging Face checkpoint gives the loader: the dense tensors under
their checkpoint names, and each projection module's quantized weight (inference.quant.assemble
splits and packs both for every tensor-parallel rank).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

import kernels

from ..attention import AttentionMetadata
from ..config import ModelConfig
from ..model import LlamaModel
from ..tokenizer import Tokenizer
from ..weights import load_weights
from .assemble import WeightSource
from .awq import apply_awq
from .calibration import calibration_samples, default_calibration_text
from .linear import linear
from .rtn import quantize_rtn
from .scheme import OWN_SCHEMES, QuantScheme
from .unpacked import UnpackedWeight


@dataclass
class QuantizedCheckpoint:
    scheme: QuantScheme
    dense: dict[str, torch.Tensor]  # checkpoint name -> tensor (embeddings, norms, LM head)
    modules: dict[str, UnpackedWeight]  # e.g. model.layers.0.self_attn.q_proj -> its weight

    def weight_source(self) -> WeightSource:
        return {prefix: (lambda shape, w=weight: w) for prefix, weight in self.modules.items()}


CALIBRATION_SAMPLES, CALIBRATION_LEN = 32, 512


def quantize_checkpoint(hf_dir: Path, cfg: ModelConfig, method: str, dtype: torch.dtype,
                        calib: str | Path | None = None, progress: bool = True) -> QuantizedCheckpoint:
    """Load a dense Hugging Face checkpoint in `dtype` and quantize it; AWQ runs the model, on the
    GPU when there is one (on the CPU in float32), over `calib`, a text file (default: the
    held-out `email` package, see calibration.py)."""
    if method not in OWN_SCHEMES:
        raise ValueError(f"unknown --quant {method!r}: choose from {', '.join(OWN_SCHEMES)}")
    device = torch.device("cuda" if torch.cuda.is_available() and method == "awq" else "cpu")
    if method == "awq" and device.type == "cpu":
        dtype = torch.float32
    model = LlamaModel(cfg, dtype, device)
    load_weights(model, hf_dir)
    samples = None
    if method == "awq":
        text = Path(calib).read_text(encoding="utf-8", errors="replace") if calib else default_calibration_text()
        length = min(CALIBRATION_LEN, cfg.max_position_embeddings)
        samples = calibration_samples(Tokenizer(hf_dir / "tokenizer.model"), text, CALIBRATION_SAMPLES, length)
    return quantize_model(model, method, samples, progress)


@torch.no_grad()
def quantize_model(model: LlamaModel, method: str, samples: list[list[int]] | None = None,
                   progress: bool = True) -> QuantizedCheckpoint:
    """Quantize a dense single-rank model (its weights are changed on the way); AWQ needs samples."""
    scheme = OWN_SCHEMES[method]
    hidden = _calibration_run(model, samples) if method == "awq" else None
    modules: dict[str, UnpackedWeight] = {}
    for i, layer in enumerate(tqdm(model.layers, desc=f"quantizing ({method})", unit="layer", disable=not progress)):
        if hidden is not None:
            apply_awq(layer, *_layer_inputs(layer, hidden, model), scheme.bits, scheme.group_size)
        for fused in ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"):
            weight = getattr(layer, fused)
            quantized = quantize_rtn(weight, scheme.bits, scheme.group_size, symmetric=method == "int8")
            weight.copy_(quantized.dequantize().to(weight.dtype))  # what the next layer's inputs see
            modules |= _modules(i, fused, quantized.to("cpu"), layer)
        if hidden is not None:
            hidden.h = _layer_output(layer, hidden, model)
    return QuantizedCheckpoint(scheme, _dense_tensors(model), modules)


@dataclass
class _Calibration:
    h: torch.Tensor  # [T, hidden] the residual stream entering the current layer
    positions: torch.Tensor
    kv: torch.Tensor  # one layer's paged cache, reused by every layer
    meta: AttentionMetadata


def _calibration_run(model: LlamaModel, samples: list[list[int]]) -> _Calibration:
    device, cfg, page = model.embed_tokens.device, model.cfg, 16
    num, length = len(samples), len(samples[0])
    blocks = -(-length // page)
    ids = torch.tensor(samples, device=device).flatten()
    i32 = dict(dtype=torch.int32, device=device)
    meta = AttentionMetadata(
        cu_seqlens_q=torch.arange(num + 1, **i32) * length, context_lens=torch.full((num,), length, **i32),
        block_tables=torch.arange(num * blocks, **i32).view(num, blocks),
        slot_mapping=(torch.arange(num, device=device)[:, None] * blocks * page
                      + torch.arange(length, device=device)[None, :]).flatten(),
        max_query_len=length, max_context_len=length)
    kv = torch.zeros(2, num * blocks, page, model.num_local_kv_heads, cfg.head_dim, dtype=model.embed_tokens.dtype,
                     device=device)
    positions = torch.arange(length, device=device).repeat(num)
    return _Calibration(torch.nn.functional.embedding(ids, model.embed_tokens), positions, kv, meta)


def _layer_inputs(layer, c: _Calibration, model: LlamaModel) -> tuple[torch.Tensor, ...]:
    """The inputs of the layer's four projections: (qkv, o, gate_up, down)."""
    x_attn, _ = kernels.rms_norm(c.h, layer.input_layernorm, layer.eps)
    attn_out = layer.attend(x_attn, c.positions, model.cos_sin, c.kv, c.meta)
    x_mlp, _ = kernels.rms_norm(c.h + linear(attn_out, layer.o_proj), layer.post_attention_layernorm, layer.eps)
    return x_attn, attn_out, x_mlp, layer.gated(x_mlp)


def _layer_output(layer, c: _Calibration, model: LlamaModel) -> torch.Tensor:
    _, attn_out, x_mlp, mlp_act = _layer_inputs(layer, c, model)
    return c.h + linear(attn_out, layer.o_proj) + linear(mlp_act, layer.down_proj)


def _modules(i: int, fused: str, weight: UnpackedWeight, layer) -> dict[str, UnpackedWeight]:
    """A fused projection's weight, split back into the checkpoint's modules."""
    p = f"model.layers.{i}."
    if fused == "o_proj":
        return {p + "self_attn.o_proj": weight}
    if fused == "down_proj":
        return {p + "mlp.down_proj": weight}
    if fused == "gate_up_proj":
        inter = weight.shape[0] // 2
        return {p + "mlp.gate_proj": weight.columns(0, inter), p + "mlp.up_proj": weight.columns(inter, 2 * inter)}
    q, kv = layer.num_heads * layer.head_dim, layer.num_kv_heads * layer.head_dim
    return {p + "self_attn.q_proj": weight.columns(0, q), p + "self_attn.k_proj": weight.columns(q, q + kv),
            p + "self_attn.v_proj": weight.columns(q + kv, q + 2 * kv)}


def _dense_tensors(model: LlamaModel) -> dict[str, torch.Tensor]:
    tensors = {"model.embed_tokens.weight": model.embed_tokens, "model.norm.weight": model.norm}
    if not model.cfg.tie_word_embeddings:
        tensors["lm_head.weight"] = model.lm_head
    for i, layer in enumerate(model.layers):
        for norm in ("input_layernorm", "post_attention_layernorm"):
            tensors[f"model.layers.{i}.{norm}.weight"] = getattr(layer, norm)
    return {name: t.detach().cpu() for name, t in tensors.items()}
