"""Infilling and chat end to end through `LLM`, on scripted models whose greedy output is a
token chain chosen here, so the expected texts come from construction and Meta's reference."""

import pytest

from inference import LLM, SamplingParams
from inference.tokenizer import Tokenizer
from tests.inference.meta_reference import (MetaTokenizer, chat_completion_tokens, dialog_prompt_tokens,
                                            infilling_prompt_tokens, with_step_piece)
from tests.models import OWN_TOKENIZER, assert_pool_full, chain, scripted_llama

ALL = ["completion", "infilling", "chat", "python"]
GREEDY = SamplingParams(max_tokens=12, temperature=0)


def piece_ids(tok: Tokenizer, *pieces: str) -> list[int]:
    ids = [tok.sp.piece_to_id(p) for p in pieces]
    assert all(tok.id_to_piece(i) == p for i, p in zip(ids, pieces)), "a piece is missing from the vocabulary"
    return ids


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    """PSM middle " return x"; SPM after "y = g": "(x)"; chat answer "print True"; each chain
    goes on past its stop token, so a stop that failed would show."""
    tok = Tokenizer(OWN_TOKENIZER)
    mid, eot = tok.infill_id("middle"), tok.infill_id("eot")
    ret, x, none, g, lpar, bare_x, rpar, close, prnt, true = piece_ids(
        tok, "▁return", "▁x", "▁None", "▁g", "(", "x", ")", "]", "▁print", "▁True")
    successor = (chain([mid, ret, x, eot, none]) | chain([g, lpar, bare_x, rpar, eot])
                 | chain([close, prnt, true, tok.eos_id]))
    return scripted_llama(tmp_path_factory.mktemp("scripted"), successor)


def test_infill_stops_at_eot_and_keeps_the_middles_own_leading_space(scripted):
    llm = LLM(scripted, num_kv_blocks=64, capabilities=ALL)
    meta = MetaTokenizer(OWN_TOKENIZER)
    prefix, suffix = "def f(x):\n   ", "\n"
    out = llm.infill(prefix, suffix, GREEDY)
    assert out.prompt_token_ids == infilling_prompt_tokens(meta, prefix, suffix)
    completion = out.outputs[0]
    assert completion.finish_reason == "stop" and completion.token_ids[-1] == meta.eot_id
    generated = completion.token_ids[:-1]
    assert completion.text == meta.decode_infilling(generated) == " return x"  # not "return x", nor "... None"
    assert out.full_text == "def f(x):\n    return x\n" == out.full_texts[0]
    assert_pool_full(llm.engine)


def test_infill_suffix_first_middle_without_a_leading_space(scripted):
    llm = LLM(scripted, num_kv_blocks=64, capabilities=ALL)
    meta = MetaTokenizer(OWN_TOKENIZER)
    out = llm.infill("y = g", "\nprint(y)", GREEDY, suffix_first=True)
    assert out.prompt_token_ids == infilling_prompt_tokens(meta, "y = g", "\nprint(y)", suffix_first=True)
    assert out.outputs[0].text == meta.decode_infilling(out.outputs[0].token_ids[:-1]) == "(x)"
    assert out.full_text == "y = g(x)\nprint(y)"


def test_chat_prompt_and_answer(scripted):
    llm = LLM(scripted, num_kv_blocks=64, capabilities=ALL)
    meta = MetaTokenizer(OWN_TOKENIZER)
    dialog = [{"role": "system", "content": "Provide answers in Python"}, {"role": "user", "content": "hi"},
              {"role": "assistant", "content": "hello"}, {"role": "user", "content": "say True"}]
    out = llm.chat(dialog, GREEDY)
    assert out.prompt_token_ids == chat_completion_tokens(meta, dialog)
    ids = out.outputs[0].token_ids
    assert ids[-1] == meta.eos_id and out.outputs[0].finish_reason == "stop"
    assert out.outputs[0].text == meta.sp.decode(ids[:-1]) == "print True"  # decoded on its own, as Meta does


def test_70b_chat_format_stops_at_step(tmp_path):
    tok_path = with_step_piece(OWN_TOKENIZER, tmp_path / "step.model")
    tok, meta = Tokenizer(tok_path), MetaTokenizer(tok_path)
    dialog = [{"role": "user", "content": "say True"}]
    last = dialog_prompt_tokens(meta, dialog)[-1]
    prnt, true, none = piece_ids(tok, "▁print", "▁True", "▁None")
    model = scripted_llama(tmp_path / "model", chain([last, prnt, true, tok.step_id, none]), tokenizer=tok_path)
    llm = LLM(model, num_kv_blocks=64, model_name="CodeLlama-70b-Instruct-hf")
    out = llm.chat(dialog, GREEDY)
    assert out.prompt_token_ids == dialog_prompt_tokens(meta, dialog)
    assert out.outputs[0].token_ids == [prnt, true, tok.step_id] and out.outputs[0].text == "print True"


@pytest.mark.parametrize("model_name,call,error", [
    (None, "infill", "needs to know which Code Llama"),
    (None, "chat", "needs to know which Code Llama"),
    ("CodeLlama-34b-Instruct-hf", "infill", "cannot do infilling"),
    ("CodeLlama-7b-Python-hf", "chat", "cannot do chat"),
    ("CodeLlama-13b-hf", "chat", "cannot do chat"),
])
def test_abilities_a_model_lacks_are_refused(scripted, model_name, call, error):
    llm = LLM(scripted, num_kv_blocks=64, model_name=model_name)
    with pytest.raises(ValueError, match=error):
        if call == "infill":
            llm.infill("a", "b", GREEDY)
        else:
            llm.chat([{"role": "user", "content": "hi"}], GREEDY)
    assert_pool_full(llm.engine)


def test_a_tokenizer_without_infill_pieces_cannot_infill_even_when_declared(tmp_path):
    from tests.models import SHARED_TESTDATA

    llama2 = SHARED_TESTDATA / "llama2-tokenizer.model"
    if not llama2.exists():
        pytest.skip("needs ../shared/testdata")
    model = scripted_llama(tmp_path, {}, tokenizer=llama2, hidden=64)
    llm = LLM(model, num_kv_blocks=16, capabilities=["completion", "infilling"])
    with pytest.raises(ValueError, match="cannot infill"):
        llm.infill("a", "b", GREEDY)


def test_infill_output_carries_prefix_and_suffix_per_completion(scripted):
    llm = LLM(scripted, num_kv_blocks=64, capabilities=ALL)
    out = llm.infill("def f(x):\n   ", "\n", SamplingParams(max_tokens=12, temperature=0, n=2))
    assert out.full_texts == ["def f(x):\n    return x\n"] * 2
