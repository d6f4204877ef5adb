"""The default model's training examples have exactly the layouts the engine prompts with, checked
against Meta's reference formats (tests/inference/meta_reference.py): an infilling example is
Meta's infilling prompt, then the middle and ▁<EOT>; a chat example is Meta's past turn; and the
prompt the engine sends is where each example's answer begins."""

import random

import pytest

from inference.prompts import chat_prompt, infill_prompt
from inference.tokenizer import Tokenizer
from scripts.default_model_examples import (ExampleSettings, chat_example, documents, file_tokens, infill_example,
                                            line_hole)
from tests.inference.meta_reference import MetaTokenizer, chat_completion_tokens, infilling_prompt_tokens
from tests.models import OWN_TOKENIZER

DOC = '''import os


def size(path):
    """Return the size of a file, in bytes."""
    return os.stat(path).st_size


class Box:
    def __init__(self, items):
        self.items = list(items)
'''


@pytest.fixture(scope="module")
def tok():
    return Tokenizer(OWN_TOKENIZER)


@pytest.mark.parametrize("whole_lines", [False, True])
@pytest.mark.parametrize("suffix_first", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_an_infilling_example_is_metas_prompt_then_the_middle_then_eot(tok, suffix_first, seed, whole_lines):
    meta = MetaTokenizer(OWN_TOKENIZER)
    example = infill_example(tok, DOC, random.Random(seed), suffix_first, whole_lines)
    mid = example.index(meta.middle_id)
    suffix = meta.decode_infilling(example[3 if suffix_first else example.index(meta.suffix_id) + 1:mid])
    assert DOC.endswith(suffix)
    before = DOC[:len(DOC) - len(suffix)]  # prefix + middle: the example must be Meta's layout for one split

    def layout(i: int) -> list[int]:
        prefix, middle = before[:i], before[i:]
        prompt = infilling_prompt_tokens(meta, prefix, suffix, suffix_first)
        return prompt + meta.encode_infilling(middle) + [meta.eot_id]

    splits = [i for i in range(len(before) + 1) if layout(i) == example]
    assert splits, "no split of the document gives this example in Meta's layout"
    prefix = before[:splits[0]]
    prompt = infilling_prompt_tokens(meta, prefix, suffix, suffix_first)
    assert infill_prompt(tok, prefix, suffix, suffix_first).token_ids == prompt == example[:len(prompt)]


def test_a_line_hole_is_one_to_three_whole_lines_with_or_without_the_last_newline():
    holes = [line_hole(DOC, random.Random(seed)) for seed in range(40)]
    for i, j in holes:
        middle = DOC[i:j]
        assert i == 0 or DOC[i - 1] == "\n"
        assert j == len(DOC) or DOC[j - 1] == "\n" or DOC[j] == "\n"  # the editor's layout: the newline is the suffix's
        assert 1 <= len(middle.splitlines()) <= 3 and middle
    editor = sum(DOC[j - 1] != "\n" for i, j in holes)
    assert 10 <= editor <= 30, editor


@pytest.mark.parametrize("system", [None, "Provide answers in Python"])
def test_a_chat_example_is_metas_past_turn_and_starts_with_the_engines_prompt(tok, system):
    meta = MetaTokenizer(OWN_TOKENIZER)
    request, answer = "Write a Python function that returns the size of a file.", "```python\ndef size(p): ...\n```"
    dialog = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": request}]
    example = chat_example(tok, request, answer, system)
    later = meta.encode("[INST] next [/INST]", bos=True, eos=False)
    assert example == chat_completion_tokens(meta, dialog + [{"role": "assistant", "content": answer},
                                                             {"role": "user", "content": "next"}])[:-len(later)]
    prompt = chat_prompt(tok, dialog).token_ids
    assert example[:len(prompt)] == prompt and example[-1] == tok.eos_id
    assert tok.decode(example[len(prompt):]).strip() == answer


def test_documents_cut_a_file_at_blank_lines_into_pieces_that_join_to_it():
    text = DOC * 40
    docs = documents(text, 500)
    assert "".join(docs) == text and all(len(d) <= 500 for d in docs) and len(docs) > 10
    assert all(d.endswith("\n\n") or d.endswith("items)\n") for d in docs[:-1])  # cut after a blank line


def test_a_files_examples_depend_on_its_seed_view_and_hash_only(tmp_path, tok):
    path = tmp_path / "box.py"
    path.write_text(DOC * 3)
    settings = ExampleSettings(str(OWN_TOKENIZER), seed=1, fim_rate=0.5, instruct_rate=1.0)
    first, stats = file_tokens((str(path), "hash", 0, settings))
    again, _ = file_tokens((str(path), "hash", 0, settings))
    other_view, _ = file_tokens((str(path), "hash", 1, settings))
    assert first.tolist() == again.tolist() and first.tolist() != other_view.tolist()
    assert stats["instruct"] == 3  # each copy of size() has a docstring that asks for something
    assert stats["psm"] + stats["spm"] + stats["plain"] >= 1
    assert sum(v for k, v in stats.items() if k.endswith("_tokens")) == len(first)
    broken = tmp_path / "py2.py"
    broken.write_text("print 'hello'\n" * 5)
    ids, stats = file_tokens((str(broken), "h", 0, settings))
    assert len(ids) == 0 and stats == {"unparsable": 1}
