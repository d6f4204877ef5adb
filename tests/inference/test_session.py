"""The console's conversation logic in-process: chat history, reset, system instruction, and
an interrupted answer that must free its KV blocks."""

import pytest

from inference import LLMEngine, SamplingParams
from inference.prompts import DEFAULT_SYSTEM
from inference.session import Session
from inference.tokenizer import Tokenizer
from tests.inference.meta_reference import MetaTokenizer, chat_completion_tokens, dialog_prompt_tokens, with_step_piece
from tests.models import OWN_TOKENIZER, assert_pool_full, chain, scripted_llama

ALL = ["completion", "infilling", "chat", "python"]
PARAMS = SamplingParams(max_tokens=64, temperature=0)


def never() -> bool:
    return False


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """Chat answers "print True"; after "x = None" the model repeats " self value" forever."""
    tok = Tokenizer(OWN_TOKENIZER)
    ids = {p: tok.sp.piece_to_id(p) for p in ("]", "▁print", "▁True", "▁None", "▁self", "▁value")}
    successor = chain([ids["]"], ids["▁print"], ids["▁True"], tok.eos_id]) | {
        ids["▁None"]: ids["▁self"], ids["▁self"]: ids["▁value"], ids["▁value"]: ids["▁self"]}
    model = scripted_llama(tmp_path_factory.mktemp("model"), successor)
    return LLMEngine(model, num_kv_blocks=64, capabilities=ALL)


def test_chat_keeps_history_with_the_default_system_and_reset_forgets_it(engine):
    meta = MetaTokenizer(OWN_TOKENIZER)
    session = Session(engine, "chat", PARAMS)
    first = session.ask("hi", lambda _: None, never)
    second = session.ask("again", lambda _: None, never)
    dialog = [{"role": "system", "content": DEFAULT_SYSTEM}, {"role": "user", "content": "hi"},
              {"role": "assistant", "content": "print True"}, {"role": "user", "content": "again"}]
    assert first.text == second.text == "print True"
    assert second.prompt_token_ids == chat_completion_tokens(meta, dialog)
    session.reset()
    assert session.ask("hi", lambda _: None, never).prompt_token_ids == first.prompt_token_ids
    no_system = Session(engine, "chat", PARAMS, system="").ask("hi", lambda _: None, never)
    assert no_system.prompt_token_ids == chat_completion_tokens(meta, [{"role": "user", "content": "hi"}])
    assert_pool_full(engine)


def test_an_interrupted_answer_is_aborted_freeing_its_blocks_and_forgotten(engine):
    session = Session(engine, "completion", SamplingParams(max_tokens=500, temperature=0))
    streamed: list[str] = []
    answer = session.ask("x = None", streamed.append, lambda: len(streamed) >= 3)
    assert answer.finish_reason == "abort" and answer.text == "".join(streamed) == " self value self"
    assert_pool_full(engine)
    chat = Session(engine, "chat", PARAMS)
    chat.ask("hi", lambda _: None, lambda: True)
    assert chat.history == []
    assert_pool_full(engine)


def test_a_failing_consumer_still_aborts_the_request(engine):
    session = Session(engine, "completion", SamplingParams(max_tokens=500, temperature=0))

    def broken_pipe(_):
        raise BrokenPipeError

    with pytest.raises(BrokenPipeError):
        session.ask("x = None", broken_pipe, never)
    assert_pool_full(engine)


def test_inputs_an_ability_cannot_take_are_refused_before_anything_runs(engine):
    with pytest.raises(ValueError, match="no <FILL> marker"):
        Session(engine, "infilling", PARAMS).ask("no hole", lambda _: None, never)
    with pytest.raises(ValueError, match="context window"):
        Session(engine, "completion", PARAMS).ask("x = 1\n" * 400, lambda _: None, never)
    assert_pool_full(engine)


def test_70b_history_replies_carry_their_destination(tmp_path):
    tok_path = with_step_piece(OWN_TOKENIZER, tmp_path / "step.model")
    tok, meta = Tokenizer(tok_path), MetaTokenizer(tok_path)
    last = dialog_prompt_tokens(meta, [{"role": "user", "content": "hi"}])[-1]
    model = scripted_llama(tmp_path / "model", chain([last, tok.sp.piece_to_id("▁True"), tok.step_id]),
                           tokenizer=tok_path)
    session = Session(LLMEngine(model, num_kv_blocks=32, model_name="CodeLlama-70b-Instruct-hf"), "chat", PARAMS)
    assert session.ask("hi", lambda _: None, never).text == "True"
    second = session.ask("more", lambda _: None, never)
    dialog = [{"role": "system", "content": DEFAULT_SYSTEM}, {"role": "user", "content": "hi"},
              {"role": "assistant", "content": "True", "destination": "user"}, {"role": "user", "content": "more"}]
    assert second.prompt_token_ids == dialog_prompt_tokens(meta, dialog)
