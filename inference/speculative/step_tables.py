"""Step-time tables shipped with the package (inference/assets/step_times), one per card and
model shape measured with `codellama bench verify`: the cost model speculation uses on that
card and shape when it is given no table, and what turns speculation on by default there.

A table holds for the setting it was measured in: one GPU, bf16 weights and KV cache; anything
else (another card or shape, quantized weights or KV cache, tensor parallelism) needs a table of
its own (`codellama bench verify --out FILE`, then `--speculative-step-times FILE`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..model_source import ASSETS

TABLES = ASSETS / "step_times"


def shipped_step_times(card: str, shape: str | None) -> Path | None:
    """The shipped table measured on `card` (torch.cuda.get_device_name) at `shape`, if any."""
    if shape is None:
        return None
    for path in sorted(TABLES.glob("*.json")):
        record = json.loads(path.read_text())
        if record["device"]["card"] == card and record["verify"]["shape"] == shape:
            return path
    return None
