"""What quantization costs the trained default model (inference/assets), measured on two held-out
json modules that AWQ never calibrates on (its default calibration text is the held-out email
package): held-out bits per byte of int8 weights within +1 % of the unquantized model, AWQ 4-bit
within +5 %, an int8 KV cache within +1 % (issue 12's targets), and greedy completions of held-out
signatures under the int8 KV cache mostly equal to the unquantized ones. On the CPU the reference
runs in float32: the checkpoint's bfloat16 weights, widened. scripts/eval_quantization.py
measures the same on more files."""

import pytest
import torch

from inference import LLM
from inference.cli import main
from inference.heldout import completion_cases, held_out_files
from inference.model_source import default_model_dir
from inference.quality import bits_per_byte
from inference.quant.calibration import default_calibration_text, is_calibration_file
from tests.inference.test_quant_engine import greedy

SCORED = ("json/decoder.py", "json/scanner.py")


def engine(model=None, **settings) -> LLM:
    return LLM(model or default_model_dir(), max_num_seqs=16, num_kv_blocks=600, **settings)


@pytest.fixture(scope="module")
def scored():
    files = [f for f in held_out_files() if f.name in SCORED]
    assert len(files) == len(SCORED) and not any(map(is_calibration_file, files))
    return files


@pytest.fixture(scope="module")
def reference(scored) -> float:
    """Bits per byte of the unquantized default model."""
    return bits_per_byte(engine(), scored)


def converted(tmp_path, quant: str) -> LLM:
    assert main(["convert", str(default_model_dir()), "--dst", str(tmp_path / quant), "--quant", quant,
                 "--no-progress"]) == 0
    return engine(tmp_path / quant)


def test_int8_weights_cost_at_most_1_percent(tmp_path, scored, reference):
    llm = converted(tmp_path, "int8")
    assert llm.engine.config.weight_scheme.name == "int8"
    int8 = bits_per_byte(llm, scored)
    assert int8 <= 1.01 * reference, (int8, reference)


def test_awq_4bit_costs_at_most_5_percent(tmp_path, scored, reference):
    assert all(f.text not in default_calibration_text() for f in scored)
    llm = converted(tmp_path, "awq")
    assert llm.engine.config.weight_scheme.name == "awq-w4g128"
    awq = bits_per_byte(llm, scored)
    assert awq <= 1.05 * reference, (awq, reference)


def test_int8_kv_cache_costs_at_most_1_percent(scored, reference):
    llm = engine(kv_cache_dtype="int8")
    assert llm.engine.runner.kv_cache.dtype == torch.int8
    int8 = bits_per_byte(llm, scored)
    assert int8 <= 1.01 * reference, (int8, reference)


def test_int8_kv_cache_keeps_most_greedy_completions():
    """More than half of 8 greedy completions unchanged (the evaluation's 32: 24 on the shipped
    model); a broken cache changes every one."""
    cases = completion_cases(8, files=[f for f in held_out_files() if f.name.startswith("json/")])
    unquantized = engine()
    prompts = [unquantized.tokenizer.encode(c.prompt) for c in cases]
    exact, int8 = greedy(unquantized, prompts), greedy(engine(kv_cache_dtype="int8"), prompts)
    assert sum(a == b for a, b in zip(exact, int8)) >= 5, "most greedy completions are unchanged"
