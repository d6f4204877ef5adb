"""Quantized Llama checkpoints written as AutoAWQ (GEMM) and AutoGPTQ / GPTQModel write them,
from their published layouts and independently of inference/quant: each projection of a tiny
transformers Llama is rounded to the nearest level per group, and the integers are packed word by
word into the tool's layout, with config.json's quantization_config beside them. The dequantized
weights are kept, so a loader can be checked against them exactly."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.models import OWN_TOKENIZER

PROJECTIONS = {"self_attn": ("q_proj", "k_proj", "v_proj", "o_proj"), "mlp": ("gate_proj", "up_proj", "down_proj")}
# modules fed the same input share the act-order permutation, as GPTQ computes it from that input
SAME_INPUT = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gate_up", "up_proj": "gate_up"}
AWQ_PACK_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # AutoAWQ: field i of a word holds column 8c + AWQ_PACK_ORDER[i]


@dataclass
class Variant:
    method: str  # "awq" or "gptq"
    group: int = 128
    bits: int = 4
    v2: bool = False  # GPTQ: zeros stored as they are (checkpoint_format gptq_v2), else minus one
    act_order: bool = False
    sym: bool = False
    shards: int = 1
    extra_config: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return (f"{self.method}-w{self.bits}g{self.group}" + ("-v2" if self.v2 else "") + ("-act" if self.act_order else "")
                + ("-sym" if self.sym else "") + (f"-{self.shards}shards" if self.shards > 1 else ""))


def round_to_nearest(w: torch.Tensor, g_idx: torch.Tensor, groups: int, bits: int, sym: bool):
    """w: [N, K] -> integers q [K, N], zeros [groups, N] (int), scales [groups, N] float16."""
    top = 2 ** bits - 1
    n, k = w.shape
    q = torch.zeros(k, n, dtype=torch.int64)
    zeros = torch.zeros(groups, n, dtype=torch.int64)
    scales = torch.zeros(groups, n, dtype=torch.float16)
    for g in range(groups):
        cols = (g_idx == g).nonzero().flatten()
        part = w[:, cols].double()
        if sym:
            scale = (part.abs().amax(1) * 2 / top).to(torch.float16)
            zero = torch.full((n,), (top + 1) // 2)
        else:
            lo, hi = part.amin(1).clamp(max=0), part.amax(1).clamp(min=0)
            scale = ((hi - lo) / top).to(torch.float16)
            zero = torch.round(-lo / scale.double()).long().clamp(0, top)
        levels = torch.round(part / scale.double()[:, None]).long() + zero[:, None]
        q[cols] = levels.clamp(0, top).t()
        zeros[g], scales[g] = zero, scale
    return q, zeros, scales


def to_int32(words: torch.Tensor) -> torch.Tensor:
    return torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32)


def awq_words(values: torch.Tensor) -> torch.Tensor:
    """[R, C] 4-bit values -> [R, C / 8] int32 in AutoAWQ's order."""
    words = torch.zeros(values.shape[0], values.shape[1] // 8, dtype=torch.int64)
    for c in range(words.shape[1]):
        for i, column in enumerate(AWQ_PACK_ORDER):
            words[:, c] |= values[:, 8 * c + column] << (4 * i)
    return to_int32(words)


def gptq_words(values: torch.Tensor, bits: int, along_rows: bool) -> torch.Tensor:
    """[R, C] values -> int32 words of 32 / bits consecutive rows (qweight) or columns (qzeros)."""
    per = 32 // bits
    if not along_rows:
        return gptq_words(values.t(), bits, True).t().contiguous()
    words = torch.zeros(values.shape[0] // per, values.shape[1], dtype=torch.int64)
    for r in range(words.shape[0]):
        for j in range(per):
            words[r] |= (values[per * r + j] & (2 ** bits - 1)) << (bits * j)
    return to_int32(words)


def write_quantized(hf_model, path: Path, variant: Variant, seed: int = 0) -> dict[str, torch.Tensor]:
    """Save hf_model's weights quantized as `variant` into `path`; return the dequantized float32
    weight of every projection, by checkpoint name (e.g. model.layers.0.self_attn.q_proj)."""
    gen = torch.Generator().manual_seed(seed)
    state = {k: v.detach().clone() for k, v in hf_model.state_dict().items()}
    tensors, dequantized, orders = {}, {}, {}
    for name, w in state.items():
        prefix, _, kind = name.rpartition(".")
        module = prefix.rsplit(".", 1)[-1]
        if kind != "weight" or not any(module in mods for mods in PROJECTIONS.values()):
            tensors[name] = w.contiguous()
            continue
        n, k = w.shape
        groups = k // variant.group
        g_idx = torch.arange(k) // variant.group
        if variant.act_order:  # GPTQ: channels quantized in a shuffled order, groups in that order
            key = (prefix.rsplit(".", 1)[0], SAME_INPUT.get(module, module))
            order = orders.setdefault(key, torch.randperm(k, generator=gen))
            g_idx = torch.empty(k, dtype=torch.int64)
            g_idx[order] = torch.arange(k) // variant.group
        q, zeros, scales = round_to_nearest(w, g_idx, groups, variant.bits, variant.sym)
        dequantized[prefix] = ((q - zeros[g_idx]).double() * scales[g_idx].double()).float().t()
        if variant.method == "awq":
            tensors |= {f"{prefix}.qweight": awq_words(q), f"{prefix}.qzeros": awq_words(zeros),
                        f"{prefix}.scales": scales}
        else:
            stored_zeros = zeros if variant.v2 else zeros - 1
            tensors |= {f"{prefix}.qweight": gptq_words(q, variant.bits, True),
                        f"{prefix}.qzeros": gptq_words(stored_zeros, variant.bits, False),
                        f"{prefix}.scales": scales, f"{prefix}.g_idx": g_idx.to(torch.int32)}
    _save(tensors, path, variant.shards)
    config = hf_model.config.to_dict()
    config["quantization_config"] = quantization_config(variant)
    (path / "config.json").write_text(json.dumps(config))
    shutil.copyfile(OWN_TOKENIZER, path / "tokenizer.model")
    return dequantized


def quantization_config(variant: Variant) -> dict:
    if variant.method == "awq":
        base = {"quant_method": "awq", "bits": variant.bits, "group_size": variant.group, "zero_point": True,
                "version": "gemm", "modules_to_not_convert": None}
    else:
        base = {"quant_method": "gptq", "bits": variant.bits, "group_size": variant.group,
                "desc_act": variant.act_order, "sym": variant.sym, "true_sequential": True,
                "checkpoint_format": "gptq_v2" if variant.v2 else "gptq"}
    return base | variant.extra_config


def _save(tensors: dict[str, torch.Tensor], path: Path, shards: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if shards == 1:
        save_file(tensors, str(path / "model.safetensors"))
        return
    names = sorted(tensors)
    weight_map = {}
    for i in range(shards):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = names[i::shards]
        save_file({n: tensors[n] for n in part}, str(path / file))
        weight_map |= dict.fromkeys(part, file)
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))

