"""Load weights into `LlamaModel`, one tensor at a time, from either layout:

- a Hugging Face checkpoint: read memory-mapped (safetensors slices, or `torch.load(mmap=True)`
  for `.bin`), so only the slice a tensor-parallel rank needs is touched; separate q/k/v and
  gate/up tensors are copied into the fused parameters here;
- a quantized Hugging Face checkpoint (AWQ, GPTQ; see inference/quant): its projections are
  read per module, split and packed into the kernels' layout by inference.quant.assemble;
- a workspace from `codellama convert`: the model's own fused parameters (quantized ones in the
  kernels' layout), already split per tensor-parallel rank, copied as they are:

      workspace/rank-0/model.safetensors      (or model-00001.safetensors, model-00002...)
      workspace/rank-1/model.safetensors      each file's header: format, tp_rank, tp_size
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .model import LlamaModel, TensorParallel
from .quant import QuantizedLinear, check_scheme
from .quant.assemble import WeightSource, assemble_quantized, split_checkpoint

FUSED_FORMAT = "codellama-serve/fused-v1"

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


def rank_dir(workspace: Path, rank: int) -> Path:
    return workspace / f"rank-{rank}"


def load_weights(model: LlamaModel, model_dir: str | Path) -> None:
    """Fill every parameter of `model` (its tensor-parallel shard) from a workspace's fused
    per-rank files or from a Hugging Face directory."""
    model_dir = Path(model_dir)
    params = dict(model.named_parameters(remove_duplicate=False))
    with ExitStack() as stack, torch.no_grad():
        if rank_dir(model_dir, 0).is_dir():
            check_scheme(model.quant, model_dir)
            for name, tensor in fused_tensors(model, model_dir, stack).items():
                params[name].copy_(tensor[:])
        else:
            for _ in assemble_hf(model, model_dir, params.__getitem__):
                pass


def load_tensors(model: LlamaModel, tensors: Mapping[str, object], source: str = "state dict") -> None:
    """Fill every parameter of `model` from tensors named as in a Hugging Face Llama checkpoint
    (torch tensors, or lazy slices with `.shape` and indexing)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    for _ in assemble(model, tensors, params.__getitem__, source):
        pass


def assemble_hf(model: LlamaModel, model_dir: str | Path,
                buffer_for: Callable[[str], torch.Tensor]) -> Iterator[tuple[str, torch.Tensor]]:
    """`assemble` over a Hugging Face directory's checkpoint files (quantized ones included)."""
    model_dir = Path(model_dir)
    layout = check_scheme(model.quant, model_dir)
    with ExitStack() as stack:
        tensors, quantized = _Checkpoint(model_dir, stack).tensors, {}
        if layout is not None:
            q = model.quant
            tensors, quantized = split_checkpoint(tensors, layout, q.bits, q.group_size, str(model_dir))
        yield from assemble(model, tensors, buffer_for, str(model_dir), quantized)


def _stored_params(model: LlamaModel) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the parameters a checkpoint must provide (a tied lm_head is not one)."""
    return {name: tuple(p.shape) for name, p in model.named_parameters(remove_duplicate=False)
            if not (name == "lm_head" and model.cfg.tie_word_embeddings)}


def _dense_params(model: LlamaModel) -> dict[str, tuple[int, ...]]:
    quantized = {f"{module_name}.{name}" for module_name, module in model.named_modules()
                 if isinstance(module, QuantizedLinear) for name, _ in module.named_parameters()}
    return {name: shape for name, shape in _stored_params(model).items() if name not in quantized}


def assemble(model: LlamaModel, tensors: Mapping[str, object], buffer_for: Callable[[str], torch.Tensor],
             source: str, quantized: WeightSource | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """Assemble this rank's parameters from Hugging Face-named tensors into `buffer_for(name)`,
    yielding each (name, buffer) as soon as it is complete; `model` only gives names and shapes
    (it may live on the meta device). A quantized model's projections come from `quantized`."""
    shapes = _dense_params(model)
    buffers: dict[str, torch.Tensor] = {}
    filled: dict[str, int] = {}  # parameter -> rows written
    tp = model.tp
    with torch.no_grad():
        for name, tensor in tensors.items():
            if name.endswith(_SKIPPED):
                continue
            target = _target(model, name)
            if target is None:
                raise ValueError(f"{source}: unexpected tensor {name!r}: not part of a Llama model")
            if target.param not in shapes:  # lm_head of a model with tied embeddings
                continue
            if tuple(tensor.shape) != target.shape:
                raise ValueError(f"{source}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                                 f"expected {target.shape} for this config.json")
            piece = _shard(tensor, target.split_dim, tp.rank, tp.size)
            if target.param not in buffers:
                buffers[target.param] = buffer_for(target.param)
            rows = piece.shape[0]
            buffers[target.param][target.row0:target.row0 + rows].copy_(piece)
            filled[target.param] = filled.get(target.param, 0) + rows
            if filled[target.param] == shapes[target.param][0]:
                yield target.param, buffers.pop(target.param)
    missing = [p for p, shape in shapes.items() if filled.get(p, 0) != shape[0]]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise ValueError(f"{source}: checkpoint is missing tensors for {shown}")
    if model.quant is not None:
        yield from assemble_quantized(model, quantized or {}, lambda name: _target(model, name), buffer_for, source)


def fused_tensors(model: LlamaModel, workspace: Path, stack: ExitStack) -> dict[str, object]:
    """Name -> lazily read tensor of this rank's fused parameters in a workspace, after checking
    that the files hold exactly the model's parameters for this tensor-parallel layout."""
    tp = model.tp
    ranks = _fused_header(sorted(rank_dir(workspace, 0).glob("*.safetensors")), workspace)["tp_size"]
    if int(ranks) != tp.size:
        raise ValueError(f"{workspace} is split for {ranks} tensor-parallel rank(s) but the engine runs "
                         f"{tp.size}: convert the checkpoint again with --tp {tp.size}")
    files = sorted(rank_dir(workspace, tp.rank).glob("*.safetensors"))
    if _fused_header(files, workspace)["tp_rank"] != str(tp.rank):
        raise ValueError(f"{rank_dir(workspace, tp.rank)}: its files are not rank {tp.rank}'s")
    tensors: dict[str, object] = {}
    for f in files:
        handle = stack.enter_context(safe_open(str(f), framework="pt"))
        tensors.update({name: handle.get_slice(name) for name in handle.keys()})
    shapes = _stored_params(model)
    unexpected = sorted(set(tensors) - set(shapes))
    missing = sorted(set(shapes) - set(tensors))
    if unexpected or missing:
        raise ValueError(f"{rank_dir(workspace, tp.rank)}: missing {missing[:4]}, unexpected {unexpected[:4]}: "
                         f"not this model's parameters (was config.json changed after conversion?)")
    for name, shape in shapes.items():
        if tuple(tensors[name].get_shape()) != shape:
            raise ValueError(f"{rank_dir(workspace, tp.rank)}: {name} has shape "
                             f"{tuple(tensors[name].get_shape())}, expected {shape}")
    return tensors


def _fused_header(files: list[Path], workspace: Path) -> dict[str, str]:
    if not files:
        raise ValueError(f"{workspace}: no weights for this tensor-parallel rank (rank-N/*.safetensors)")
    with safe_open(str(files[0]), framework="pt") as handle:
        header = handle.metadata() or {}
    if header.get("format") != FUSED_FORMAT:
        raise ValueError(f"{files[0]}: not a workspace weight file (format {header.get('format')!r}, "
                         f"expected {FUSED_FORMAT!r}); convert the checkpoint again")
    return header


def write_fused_rank(tensors: Iterable[tuple[str, torch.Tensor]], out_dir: Path, tp: TensorParallel,
                     max_file_bytes: int = 4 << 30) -> list[Path]:
    """Save one rank's fused parameters as safetensors files of about `max_file_bytes` at most
    (one model.safetensors when they fit), so only one file's tensors are held at a time."""
    out_dir.mkdir(parents=True)
    header = {"format": FUSED_FORMAT, "tp_rank": str(tp.rank), "tp_size": str(tp.size)}
    chunk: dict[str, torch.Tensor] = {}
    files: list[Path] = []

    def flush() -> None:
        files.append(out_dir / f"model-{len(files) + 1:05d}.safetensors")
        save_file(chunk, str(files[-1]), metadata=header)
        chunk.clear()

    for name, tensor in tensors:
        chunk[name] = tensor.contiguous()
        if sum(t.nbytes for t in chunk.values()) >= max_file_bytes:
            flush()
    if chunk:
        flush()
    if len(files) == 1:
        files[0] = files[0].rename(out_dir / "model.safetensors")
    return files


def fill_random(model: LlamaModel, seed: int = 0, std: float = 0.02) -> None:
    """Seeded random weights (norms at one), generated on the model's device: benchmarks of the
    real shapes need no checkpoint, and the speed of a dense model does not depend on values."""
    gen = torch.Generator(device=model.embed_tokens.device).manual_seed(seed)
    dense = _dense_params(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name not in dense:
                continue
            if name.endswith("norm") or name.endswith("layernorm"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, std, generator=gen)
        for module in model.modules():
            if isinstance(module, QuantizedLinear):
                module.fill_random(gen, std)
