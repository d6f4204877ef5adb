"""The quality figures' arithmetic: bits per byte through the engine equals transformers' on the
same text, and the rules that read a completion or a chat answer as code."""

import math

import pytest
import torch

from inference import LLM
from inference.heldout import SourceFile
from inference.quality import answer_code, bits_per_byte, cut_at_dedent, defines_a_function, has_a_body
from tests.models import tiny_llama

TEXTS = ["def add(a, b):\n    return a + b\n", "import os\n\nprint(os.getcwd())  # é\n" * 3]


def test_bits_per_byte_equals_transformers_over_windows(tmp_path):
    model_dir, hf = tiny_llama(tmp_path / "m", init_std=0.2)
    llm = LLM(model_dir, num_kv_blocks=64)
    files = [SourceFile(f"f{i}.py", t) for i, t in enumerate(TEXTS)]
    window = 7
    nats = 0.0
    for f in files:  # each file in windows of 7 tokens, each after a BOS
        ids = llm.tokenizer.encode(f.text, bos=False)
        for start in range(0, len(ids), window):
            chunk = [llm.tokenizer.bos_id] + ids[start:start + window]
            with torch.no_grad():
                logp = torch.log_softmax(hf(torch.tensor([chunk])).logits[0, :-1].float(), -1)
            nats -= logp.gather(1, torch.tensor(chunk[1:])[:, None]).sum().item()
    expected = nats / math.log(2) / sum(len(t.encode()) for t in TEXTS)
    assert bits_per_byte(llm, files, window=window) == pytest.approx(expected, rel=1e-4)


def test_a_completion_ends_at_the_first_line_back_at_column_zero():
    assert cut_at_dedent("    x = 1\n\n    return x\nprint(f())\n") == "    x = 1\n\n    return x\n"
    assert cut_at_dedent("    return 1") == "    return 1"
    header = 'def f(x):\n    """Twice x."""\n'
    assert has_a_body(header + "    return 2 * x\n")
    assert not has_a_body(header + "\n")  # only the docstring: nothing was written
    assert not has_a_body(header + "    return (\n")


@pytest.mark.parametrize("answer, defines", [
    ("```python\ndef f(x):\n    return x\n```", True), ("Here:\n```\ndef f(x):\n    return x\n```\nDone.", True),
    ("def f(x):\n    return x\n", True), ("  def f(x):\n      return x\n", True),
    ("```python\nx = 1\n```", False), ("```python\ndef f(x):\n    return (\n```", False), ("Sure.", False),
])
def test_a_chat_answer_defines_a_function_in_its_code(answer, defines):
    assert defines_a_function(answer_code(answer)) is defines
