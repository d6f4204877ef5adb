"""The text AWQ's scale search runs the model on: a user's file (`--calib FILE`), or by default one
package of the trained default model's held-out Python (inference/heldout.py), `email`: code the
default model never trained on, in the standard library of every machine with Python.

Quality figures of quantized weights are measured on the other held-out packages, never on the
calibration text (`is_calibration_file`).
"""

from __future__ import annotations

from ..heldout import SourceFile, held_out_files
from ..tokenizer import Tokenizer

CALIBRATION_PACKAGE = "email"


def is_calibration_file(f: SourceFile) -> bool:
    return f.name.split("/")[0] == CALIBRATION_PACKAGE


def default_calibration_text() -> str:
    """The calibration package's modules, in name order."""
    files = [f for f in held_out_files() if is_calibration_file(f)]
    if not files:
        raise FileNotFoundError(f"Python's standard library source ({CALIBRATION_PACKAGE}/*.py) was not found; "
                                f"give a calibration file with --calib")
    return "\n".join(f.text for f in files)


def calibration_samples(tokenizer: Tokenizer, text: str, num_samples: int, seq_len: int) -> list[list[int]]:
    """num_samples windows of seq_len tokens (BOS first), spread evenly over the tokenized text."""
    ids = tokenizer.encode(text, bos=False)
    width = seq_len - 1
    if len(ids) < width:
        raise ValueError(f"the calibration text is too short: {len(ids)} tokens, AWQ needs at least {width}")
    starts = range(0, len(ids) - width + 1, max(1, (len(ids) - width) // max(1, num_samples - 1)))
    return [[tokenizer.bos_id] + ids[s:s + width] for s in list(starts)[:num_samples]]
