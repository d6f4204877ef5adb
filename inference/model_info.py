"""What a model is (variant, size) and which of Code Llama's abilities it has.

Read from a workspace's `codellama.json`, or derived from a model name the user gives
(`--model-name CodeLlama-7b-Instruct-hf`), never guessed from a directory name alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

ABILITIES = ("completion", "infilling", "chat", "python")
METADATA_FILE = "codellama.json"

# Meta's table: only 7B/13B were trained to infill; Python models have no infilling or chat.
_TABLE = {
    ("base", "small"): ("completion", "infilling"),
    ("base", "large"): ("completion",),
    ("python", "small"): ("completion", "python"),
    ("python", "large"): ("completion", "python"),
    ("instruct", "small"): ("completion", "infilling", "chat"),
    ("instruct", "large"): ("completion", "chat"),
}

# (hidden_size, num_hidden_layers) of the released Code Llama sizes, to check a model name
# against the checkpoint it is given for.
_SIZES = {(4096, 32): "7b", (5120, 40): "13b", (8192, 48): "34b", (8192, 80): "70b"}


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    variant: str  # "base", "python", "instruct", or "unknown" for a checkpoint nobody named
    size: str  # "7b", "13b", "34b", "70b", or another label for other checkpoints
    capabilities: tuple[str, ...]

    def require(self, ability: str) -> None:
        if ability not in ABILITIES:
            raise ValueError(f"unknown ability {ability!r}; choose from {', '.join(ABILITIES)}")
        if ability in self.capabilities:
            return
        if self.variant == "unknown":
            raise ValueError(f"{self.name}: {ability} needs to know which Code Llama this is; give --model-name "
                             f"(e.g. CodeLlama-7b-Instruct-hf) or --capabilities, or convert it into a workspace")
        raise ValueError(f"{self.name} cannot do {ability}: its abilities are {', '.join(self.capabilities)}"
                         f" (a fine-tuned checkpoint can declare more with --capabilities)")

    def as_metadata(self) -> dict:
        """The fields a workspace's codellama.json stores."""
        return {"model_name": self.name, "variant": self.variant, "size": self.size,
                "capabilities": list(self.capabilities)}


def abilities_for(variant: str, size: str) -> tuple[str, ...]:
    return _TABLE[(variant, "small" if size in ("7b", "13b") else "large")]


# The family's released names, any case, "-hf" optional, as a Hugging Face id ("codellama/...") too.
_NAME = re.compile(r"(?:[\w.-]+/)?codellama-(7|13|34|70)b(?:-(python|instruct))?(?:-hf)?", re.IGNORECASE)
FAMILY = tuple(f"CodeLlama-{size}{variant}[-hf]" for size in ("7b", "13b", "34b", "70b")
               for variant in ("", "-Python", "-Instruct"))


def parse_model_name(name: str) -> tuple[str, str]:
    """(variant, size) from a Code Llama model name such as "CodeLlama-13b-Python-hf"; any other
    name is refused (a name grants abilities, so a guess could grant the wrong ones)."""
    match = _NAME.fullmatch(name.strip())
    if match is None:
        raise ValueError(f"{name!r} is not a Code Llama model name; use one of {', '.join(FAMILY)} (any case), "
                         f"or --capabilities to declare a fine-tuned model's abilities")
    return (match.group(2) or "base").lower(), match.group(1) + "b"


def size_from_config(hidden_size: int, num_layers: int) -> str | None:
    """The Code Llama size whose shape this is, or None for any other shape."""
    return _SIZES.get((hidden_size, num_layers))


def check_name_fits(info: ModelInfo, hidden_size: int, num_layers: int) -> None:
    """Refuse a model name whose size contradicts the checkpoint's shape (a 13B named 7B)."""
    actual = size_from_config(hidden_size, num_layers)
    if actual is not None and info.size in _SIZES.values() and info.size != actual:
        raise ValueError(f"--model-name {info.name} says {info.size}, but config.json ({num_layers} layers of "
                         f"{hidden_size}) is a {actual} model")


def _shape(model_dir: str | Path) -> tuple[int, int] | None:
    """(hidden_size, num_hidden_layers) from config.json, when there is one to read."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
        return int(config["hidden_size"]), int(config["num_hidden_layers"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # the engine reports a missing or broken config.json in its own words


def workspace_tp(model_dir: str | Path | None) -> int | None:
    """The tensor-parallel size a workspace's weights are split for; None for anything else."""
    meta = read_metadata(model_dir) if model_dir is not None and Path(model_dir).is_dir() else None
    return meta.get("tp") if meta is not None else None


def tensor_parallel_size(model_dir: str | Path | None, requested: int | None) -> int:
    """`--tp`: the workspace's split when not given; a contradiction is refused before any
    process starts (re-sharding fused tensors would mean undoing the fusion)."""
    split = workspace_tp(model_dir)
    if requested is None:
        return split or 1
    if requested < 1:
        raise ValueError(f"--tp must be >= 1, got {requested}")
    if split is not None and split != requested:
        raise ValueError(f"{model_dir} is split for --tp {split}, not {requested}: leave --tp out (or give --tp "
                         f"{split}), or convert the Hugging Face checkpoint again with --tp {requested}")
    return requested


def parse_capabilities(text: str) -> list[str]:
    """`--capabilities completion,infilling` -> ["completion", "infilling"], validated."""
    return list(_validated(c.strip() for c in text.split(",") if c.strip()))


def _validated(capabilities) -> tuple[str, ...]:
    caps = tuple(dict.fromkeys(capabilities))
    unknown = [c for c in caps if c not in ABILITIES]
    if unknown or not caps:
        raise ValueError(f"unknown abilities {unknown or list(caps)}; choose from {', '.join(ABILITIES)}")
    return caps


def read_metadata(model_dir: str | Path) -> dict | None:
    """A workspace's codellama.json, or None for a plain checkpoint."""
    path = Path(model_dir) / METADATA_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    missing = [k for k in ("model_name", "variant", "size", "capabilities") if k not in meta]
    if missing:
        raise ValueError(f"{path} is missing {', '.join(missing)}")
    return meta


def load_model_info(model_dir: str | Path, model_name: str | None = None,
                    capabilities: list[str] | None = None) -> ModelInfo:
    """The model name if given, else the workspace's metadata, else an unknown variant that can
    only complete; `capabilities` overrides the abilities."""
    meta = read_metadata(model_dir)
    if model_name is not None:
        variant, size = parse_model_name(model_name)
        info = ModelInfo(model_name, variant, size, abilities_for(variant, size))
        shape = _shape(model_dir)
        if shape is not None:
            check_name_fits(info, *shape)
    elif meta is not None:
        info = ModelInfo(meta["model_name"], meta["variant"], meta["size"], _validated(meta["capabilities"]))
    else:  # a plain checkpoint of unknown variant: plain completion is always safe
        info = ModelInfo(Path(model_dir).name, "unknown", "unknown", ("completion",))
    if capabilities:
        info = ModelInfo(info.name, info.variant, info.size, _validated(capabilities))
    return info
