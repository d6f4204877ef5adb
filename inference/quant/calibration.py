"""The text AWQ's scale search runs the model on: a user's file (`--calib FILE`), or by default a
slice of Python's standard library source, which every machine has.

(The trained default model's held-out packages would be the better default once the project
ships them; calibrating on code the model saw in training is fine, evaluating on it is not.)
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from ..tokenizer import Tokenizer


def default_calibration_text(chars: int = 400_000) -> str:
    """Top-level standard-library modules, evenly spread in name order, until `chars` characters."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    if not files:
        raise FileNotFoundError("no Python standard library source found; give a calibration file with --calib")
    spread = files[::max(1, len(files) // 64)]
    text = []
    for path in spread + [f for f in files if f not in spread]:
        if sum(map(len, text)) >= chars:
            break
        text.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(text)[:chars]


def calibration_samples(tokenizer: Tokenizer, text: str, num_samples: int, seq_len: int) -> list[list[int]]:
    """num_samples windows of seq_len tokens (BOS first), spread evenly over the tokenized text."""
    ids = tokenizer.encode(text, bos=False)
    width = seq_len - 1
    if len(ids) < width:
        raise ValueError(f"the calibration text is too short: {len(ids)} tokens, AWQ needs at least {width}")
    starts = range(0, len(ids) - width + 1, max(1, (len(ids) - width) // max(1, num_samples - 1)))
    return [[tokenizer.bos_id] + ids[s:s + width] for s in list(starts)[:num_samples]]
