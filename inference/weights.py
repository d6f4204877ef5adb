"""Load a Hugging Face Llama checkpoint into `LlamaModel`, one tensor at a time.

Checkpoints are read memory-mapped (safetensors slices, or `torch.load(mmap=True)` for `.bin`),
so only the slice a tensor-parallel rank needs is touched and no second full copy is made.
Separate q/k/v and gate/up tensors are copied into the fused parameters here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from .model import LlamaModel

_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_SKIPPED = ("rotary_emb.inv_freq",)


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a checkpoint tensor of full shape `shape` goes: rows [row0, ...) of parameter `param`,
    taking this rank's shard of it along `split_dim` (None: the whole tensor)."""

    param: str
    shape: tuple[int, ...]
    split_dim: int | None = None
    row0: int = 0


class _Checkpoint:
    """Name -> lazily sliceable tensor, over safetensors or PyTorch .bin files."""

    def __init__(self, model_dir: Path, stack: ExitStack):
        self.tensors: dict[str, object] = {}
        files = self._files(model_dir)
        for f in files:
            if f.suffix == ".safetensors":
                handle = stack.enter_context(safe_open(str(f), framework="pt"))
                for name in handle.keys():
                    self.tensors[name] = _SafetensorsSlice(handle, name)
            else:
                state = torch.load(str(f), map_location="cpu", mmap=True, weights_only=True)
                self.tensors.update(state)

    @staticmethod
    def _files(model_dir: Path) -> list[Path]:
        index = model_dir / "model.safetensors.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            missing = [s for s in shards if not (model_dir / s).is_file()]
            if missing:
                raise FileNotFoundError(f"{model_dir}: shards listed in {index.name} are missing: {missing}")
            return [model_dir / s for s in shards]
        for pattern in ("model.safetensors", "model-*.safetensors", "pytorch_model.bin", "pytorch_model-*.bin"):
            found = sorted(model_dir.glob(pattern))
            if found:
                return found
        raise FileNotFoundError(f"{model_dir}: no weights found (model.safetensors, a sharded "
                                f"model.safetensors.index.json, or pytorch_model*.bin)")


class _SafetensorsSlice:
    def __init__(self, handle, name: str):
        self._slice = handle.get_slice(name)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._slice.get_shape())

    def __getitem__(self, index):
        return self._slice[index]


def _target(model: LlamaModel, hf_name: str) -> _Target | None:
    cfg, layer0 = model.cfg, model.layers[0]
    h, d = cfg.hidden_size, cfg.head_dim
    if hf_name in ("model.embed_tokens.weight", "lm_head.weight"):
        return _Target(hf_name.split(".")[-2], (cfg.vocab_size, h))
    if hf_name == "model.norm.weight":
        return _Target("norm", (h,))
    m = _LAYER.match(hf_name)
    if not m:
        return None
    q_rows, kv_rows = layer0.num_heads * d, layer0.num_kv_heads * d
    inter = layer0.gate_up_proj.shape[0] // 2
    full_q, full_kv, full_i = cfg.num_heads * d, cfg.num_kv_heads * d, cfg.intermediate_size
    per_layer = {
        "self_attn.q_proj.weight": _Target("qkv_proj", (full_q, h), 0, 0),
        "self_attn.k_proj.weight": _Target("qkv_proj", (full_kv, h), 0, q_rows),
        "self_attn.v_proj.weight": _Target("qkv_proj", (full_kv, h), 0, q_rows + kv_rows),
        "self_attn.o_proj.weight": _Target("o_proj", (h, full_q), 1),
        "mlp.gate_proj.weight": _Target("gate_up_proj", (full_i, h), 0, 0),
        "mlp.up_proj.weight": _Target("gate_up_proj", (full_i, h), 0, inter),
        "mlp.down_proj.weight": _Target("down_proj", (h, full_i), 1),
        "input_layernorm.weight": _Target("input_layernorm", (h,)),
        "post_attention_layernorm.weight": _Target("post_attention_layernorm", (h,)),
    }
    t = per_layer.get(m.group(2))
    return t and _Target(f"layers.{m.group(1)}.{t.param}", t.shape, t.split_dim, t.row0)


def _shard(tensor, split_dim: int | None, tp_rank: int, tp_size: int) -> torch.Tensor:
    if split_dim is None or tp_size == 1:
        return tensor[:] if not isinstance(tensor, torch.Tensor) else tensor
    n = tensor.shape[split_dim] // tp_size
    index = (slice(None),) * split_dim + (slice(tp_rank * n, (tp_rank + 1) * n),)
    return tensor[index]


def load_weights(model: LlamaModel, model_dir: str | Path) -> None:
    """Fill every parameter of `model` (its tensor-parallel shard) from a Hugging Face directory."""
    with ExitStack() as stack:
        load_tensors(model, _Checkpoint(Path(model_dir), stack).tensors, str(model_dir))


def load_tensors(model: LlamaModel, tensors: Mapping[str, object], source: str = "state dict") -> None:
    """Fill every parameter of `model` from tensors named as in a Hugging Face Llama checkpoint
    (torch tensors, or lazy slices with `.shape` and indexing)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    filled: dict[str, int] = {}  # parameter -> rows written
    tp = model.tp
    with torch.no_grad():
        for name, tensor in tensors.items():
            if name.endswith(_SKIPPED):
                continue
            target = _target(model, name)
            if target is None:
                raise ValueError(f"{source}: unexpected tensor {name!r}: not part of a Llama model")
            if target.param == "lm_head" and model.cfg.tie_word_embeddings:
                continue
            if tuple(tensor.shape) != target.shape:
                raise ValueError(f"{source}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                                 f"expected {target.shape} for this config.json")
            piece = _shard(tensor, target.split_dim, tp.rank, tp.size)
            dst = params[target.param]
            rows = piece.shape[0]
            dst[target.row0:target.row0 + rows].copy_(piece)
            filled[target.param] = filled.get(target.param, 0) + rows
    missing = [p for p, t in params.items() if filled.get(p, 0) != t.shape[0]
               and not (p == "lm_head" and model.cfg.tie_word_embeddings)]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise ValueError(f"{source}: checkpoint is missing tensors for {shown}")


def fill_random(model: LlamaModel, seed: int = 0, std: float = 0.02) -> None:
    """Seeded random weights (norms at one), generated on the model's device: benchmarks of the
    real shapes need no checkpoint, and the speed of a dense model does not depend on values."""
    gen = torch.Generator(device=model.embed_tokens.device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm") or name.endswith("layernorm"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, std, generator=gen)
