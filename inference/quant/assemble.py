"""This rank's quantized projections, assembled from per-module weights (q, k, v, o, gate, up,
down of every layer) into the model's fused parameters: q/k/v side by side along the outputs of
qkv_proj (gate/up of gate_up_proj), column-parallel layers split along their outputs and
row-parallel ones (o, down) along their inputs in whole groups, each packed into the kernels'
layout on the way."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping

import torch

from .formats import read_projection
from .rtn import quantize_rtn
from .scheme import DENSE
from .unpacked import UnpackedWeight

_PROJECTION = re.compile(r"^(model\.layers\.\d+\.(?:self_attn|mlp)\.(?:q|k|v|o|gate|up|down)_proj)\.(\w+)$")
_PARTS = ("qweight", "qzeros", "scales", "g_idx", "bias")

# module prefix -> a function of the dense weight's shape (N, K) giving the module's weight
WeightSource = Mapping[str, Callable[[tuple[int, int]], UnpackedWeight]]


def split_checkpoint(tensors: Mapping[str, object], layout: str, bits: int, group_size: int,
                     source: str) -> tuple[dict[str, object], WeightSource]:
    """Separate a quantized checkpoint's projection tensors, grouped by module, from the rest; a
    DENSE checkpoint's projection weights are rounded (symmetric, per output channel) as read."""
    rest: dict[str, object] = {}
    modules: dict[str, dict[str, object]] = {}
    for name, tensor in tensors.items():
        m = _PROJECTION.match(name)
        if m and layout == DENSE and m.group(2) == "weight":
            modules[m.group(1)] = {"weight": tensor}
        elif m and m.group(2) in _PARTS:
            modules.setdefault(m.group(1), {})[m.group(2)] = tensor
        elif m and m.group(2) == "weight":
            raise ValueError(f"{source}: {name} is not quantized, but the checkpoint says every projection is "
                             f"(mixed checkpoints are not supported)")
        else:
            rest[name] = tensor

    def reader(prefix: str, parts: dict[str, object]) -> Callable[[tuple[int, int]], UnpackedWeight]:
        def read(shape: tuple[int, int]) -> UnpackedWeight:
            loaded = {p: t if isinstance(t, torch.Tensor) else t[:] for p, t in parts.items()}
            if layout == DENSE:
                return quantize_rtn(loaded["weight"], bits, group_size, symmetric=True)
            if "bias" in loaded and loaded["bias"].any():
                raise ValueError(f"{source}: {prefix}.bias is not zero; Llama projections have no bias")
            return read_projection(loaded, layout, bits, group_size, shape, f"{source}: {prefix}")
        return read

    return rest, {prefix: reader(prefix, parts) for prefix, parts in modules.items()}


def assemble_quantized(model, weights: WeightSource, target_of: Callable, buffer_for: Callable[[str], torch.Tensor],
                       source: str) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield each quantized parameter of this rank (name, buffer) once all its modules are in.
    `target_of(name)` places a dense checkpoint name (see inference.weights)."""
    scheme, tp = model.quant, model.tp
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    buffers: dict[str, torch.Tensor] = {}
    perms: dict[str, torch.Tensor] = {}  # act-order: the input order of each fused projection
    filled: dict[str, int] = {}  # fused projection -> output columns written
    for prefix, read in weights.items():
        target = target_of(prefix + ".weight")
        weight = read(target.shape)
        if weight.shape != target.shape:
            raise ValueError(f"{source}: {prefix} has shape {weight.shape}, expected {target.shape}")
        if target.split_dim == 0:  # column-parallel: this rank's outputs
            n = target.shape[0] // tp.size
            weight = weight.columns(tp.rank * n, (tp.rank + 1) * n)
        else:  # row-parallel: this rank's inputs
            k = target.shape[1] // tp.size
            weight = weight.inputs(tp.rank * k, (tp.rank + 1) * k)
        in_features = weight.q.shape[0]
        what = f"{source}: {prefix}" + (f" (tensor-parallel rank {tp.rank} of {tp.size})" if tp.size > 1 else "")
        packed = weight.pack(scheme.group_for(in_features), scheme.act_order, what)
        for part, tensor in packed.items():
            name = f"{target.param}.{part}"
            if name not in buffers:
                buffers[name] = buffer_for(name)
            if part == "perm":  # one input order for the fused modules, which share their input
                if not torch.equal(perms.setdefault(name, tensor), tensor):
                    raise ValueError(f"{what}: its act-order permutation (g_idx) differs from the one of the "
                                     f"modules fused with it into {target.param}, which share one input")
                buffers[name].copy_(tensor)
            else:
                buffers[name][:, target.row0:target.row0 + tensor.shape[1]].copy_(tensor)
        filled[target.param] = filled.get(target.param, 0) + weight.q.shape[1]
        if filled[target.param] == shapes[f"{target.param}.qweight"][1]:
            perms.pop(f"{target.param}.perm", None)
            for part in packed:
                yield f"{target.param}.{part}", buffers.pop(f"{target.param}.{part}")
    expected = {name.removesuffix(".qweight"): shape[1] for name, shape in shapes.items() if name.endswith(".qweight")}
    missing = sorted(p for p, n in expected.items() if filled.get(p, 0) != n)
    if missing:
        raise ValueError(f"{source}: checkpoint is missing quantized tensors for {', '.join(missing[:6])}")
