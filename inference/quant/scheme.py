"""Which weight quantization a model directory holds, and in which layout its tensors are stored.

A Hugging Face checkpoint says so in config.json's `quantization_config` (or, from older tools,
in quantize_config.json / quant_config.json beside it):

    {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": true, "version": "gemm"}
    {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": true, "sym": true,
     "checkpoint_format": "gptq"}        # "gptq_v2": zeros stored as they are, not minus one

A workspace records the scheme in codellama.json ("quantization"), its tensors already in the
kernels' layout (kernels/quantized_weights.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from kernels.quantized_weights import SUPPORTED_BITS

METHODS = ("awq", "gptq", "int8")
# how the tensors of a quantized checkpoint are laid out on disk; DENSE: unquantized weights that
# the loader rounds itself (int8)
AWQ_GEMM, GPTQ_V1, GPTQ_V2, WORKSPACE, DENSE = "awq-gemm", "gptq-v1", "gptq-v2", "workspace", "dense"


@dataclass(frozen=True, slots=True)
class QuantScheme:
    """What the model is built with: every decoder projection (qkv, o, gate_up, down) quantized
    alike; embeddings, norms and the LM head stay in the model's dtype."""

    method: str  # what chose the integers: awq, gptq, or int8 (round to nearest, per output channel)
    bits: int  # 4 or 8
    group_size: int  # input channels sharing a scale and zero; -1: all of them (one per output channel)
    act_order: bool = False  # the weights carry an input-channel permutation (GPTQ desc_act)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown quantization method {self.method!r} (supported: {', '.join(METHODS)})")
        if self.bits not in SUPPORTED_BITS:
            raise ValueError(f"{self.bits}-bit {self.method} weights are not supported "
                             f"(supported: {' and '.join(f'{b}-bit' for b in SUPPORTED_BITS)})")
        if self.group_size != -1 and (self.group_size < 16 or self.group_size % 16):
            raise ValueError(f"group size {self.group_size} is not supported: use -1 (per output channel) "
                             f"or a multiple of 16 (32, 64, 128, ...)")

    @property
    def name(self) -> str:
        """Short label for users: awq-w4g128, gptq-w4g128-act-order, int8."""
        if self.method == "int8":
            return "int8"
        group = "" if self.group_size == -1 else f"g{self.group_size}"
        return f"{self.method}-w{self.bits}{group}" + ("-act-order" if self.act_order else "")

    def group_for(self, in_features: int) -> int:
        return in_features if self.group_size == -1 else self.group_size

    def as_metadata(self) -> dict:
        return asdict(self)

    @classmethod
    def from_metadata(cls, raw: dict) -> "QuantScheme":
        return cls(raw["method"], int(raw["bits"]), int(raw["group_size"]), bool(raw.get("act_order", False)))


# the schemes this project quantizes into itself (`--quant`)
OWN_SCHEMES = {"awq": QuantScheme("awq", 4, 128), "int8": QuantScheme("int8", 8, -1)}


def resolve_scheme(model_dir: str | Path, requested: str | None, random_weights: bool) -> QuantScheme | None:
    """The scheme an engine builds its model with: the checkpoint's own, or `requested` (awq,
    int8) for random weights of that scheme; int8 may also be asked of dense weights, which are
    then rounded while they load (awq needs calibration: `codellama convert --quant awq`)."""
    if requested is not None and requested not in OWN_SCHEMES:
        raise ValueError(f"unknown quantization {requested!r}: choose from {', '.join(OWN_SCHEMES)}")
    if random_weights:
        return OWN_SCHEMES[requested] if requested else None
    found = read_quantization(model_dir)
    if requested is None:
        return found and found[0]
    if found is not None:
        if found[0].method != requested:
            raise ValueError(f"{model_dir} holds {found[0].name} weights; they cannot be served as {requested}")
        return found[0]
    if requested == "awq" or (Path(model_dir) / "rank-0").is_dir():
        why = "AWQ needs calibration" if requested == "awq" else "a workspace's fused weights are not rounded at load"
        raise ValueError(f"{model_dir} holds unquantized weights and {why}: convert the Hugging Face checkpoint "
                         f"with `codellama convert ... --quant {requested}` and serve that workspace")
    return OWN_SCHEMES[requested]


def read_quantization(model_dir: str | Path) -> tuple[QuantScheme, str] | None:
    """(scheme, on-disk layout) of a model directory, or None for unquantized weights."""
    model_dir = Path(model_dir)
    if (model_dir / "rank-0").is_dir():  # a workspace (see inference/workspace.py)
        meta = json.loads((model_dir / "codellama.json").read_text())
        return (QuantScheme.from_metadata(meta["quantization"]), WORKSPACE) if meta.get("quantization") else None
    config = _read_json(model_dir / "config.json") or {}
    raw = config.get("quantization_config")
    if raw is None:
        if (legacy := _read_json(model_dir / "quantize_config.json")) is not None:
            raw = {"quant_method": "gptq", **legacy}
        elif (legacy := _read_json(model_dir / "quant_config.json")) is not None:
            raw = {"quant_method": "awq", **legacy}
        else:
            return None
    try:
        return parse_quantization_config(raw)
    except ValueError as e:
        raise ValueError(f"{model_dir}: {e}") from None


def check_scheme(expected: QuantScheme | None, model_dir: str | Path) -> str | None:
    """The on-disk layout of a directory's quantized weights (None: unquantized; DENSE:
    unquantized, to be rounded to int8 as they load), after checking that they fit the scheme
    the model was built for."""
    found = read_quantization(model_dir)
    scheme, layout = found if found else (None, None)
    if scheme is None and expected == OWN_SCHEMES["int8"]:
        return DENSE
    if scheme != expected:
        raise ValueError(f"{model_dir} holds {_label(scheme)}, but the model was built for {_label(expected)}")
    return layout


def _label(scheme: QuantScheme | None) -> str:
    return "unquantized weights" if scheme is None else f"{scheme.name} weights"


def parse_quantization_config(raw: dict) -> tuple[QuantScheme, str]:
    method = str(raw.get("quant_method", "")).lower()
    bits = raw.get("bits", raw.get("w_bit"))
    group = raw.get("group_size", raw.get("q_group_size", -1))
    if method == "awq":
        version = str(raw.get("version", "gemm")).lower()
        if version != "gemm":
            raise ValueError(f"AWQ checkpoints in the {version!r} layout are not supported; only AutoAWQ's GEMM "
                             f"layout is (version \"gemm\")")
        if not raw.get("zero_point", True):
            raise ValueError("AWQ checkpoints without zero points are not supported")
        if bits != 4:
            raise ValueError(f"AWQ GEMM checkpoints are 4-bit; this one says bits = {bits}")
        _check_all_projections_quantized(raw.get("modules_to_not_convert"))
        return QuantScheme("awq", 4, int(group)), AWQ_GEMM
    if method == "gptq":
        fmt = str(raw.get("checkpoint_format", raw.get("format", "gptq"))).lower()
        if raw.get("is_marlin_format") or fmt not in ("gptq", "gptq_v2"):
            raise ValueError(f"GPTQ checkpoints in the {'marlin' if raw.get('is_marlin_format') else fmt!r} format "
                             f"are not supported (supported: checkpoint_format \"gptq\" and \"gptq_v2\")")
        if str(raw.get("pack_dtype", "int32")).removeprefix("torch.") != "int32":
            raise ValueError(f"GPTQ weights packed in {raw['pack_dtype']} are not supported (only int32)")
        if raw.get("dynamic") or raw.get("lm_head"):
            raise ValueError("GPTQ checkpoints with per-module settings (dynamic) or a quantized lm_head are not "
                             "supported")
        group = int(group)
        act_order = bool(raw.get("desc_act", False)) and group != -1  # one group: the order does not matter
        return QuantScheme("gptq", int(bits), group, act_order), GPTQ_V2 if fmt == "gptq_v2" else GPTQ_V1
    supported = "awq (AutoAWQ GEMM) and gptq"
    raise ValueError(f"quantization method {method or 'unknown'!r} is not supported (supported: {supported})")


def _check_all_projections_quantized(skipped: list[str] | None) -> None:
    projections = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    mixed = [m for m in skipped or [] if any(p in m for p in projections) or "layers" in m]
    if mixed:
        raise ValueError(f"checkpoints that leave some projections unquantized are not supported "
                         f"(modules_to_not_convert: {mixed})")


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
