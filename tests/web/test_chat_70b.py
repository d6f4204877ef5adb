"""The 70B Instruct format over the OpenAI route: a conversation replayed by a client (role and
content only) is the prompt Meta's reference builds from chat_completion's own replies, which
carry `destination: user`, the same prompt the console builds."""

from __future__ import annotations

from litestar.testing import TestClient

from inference import LLMEngine
from inference.tokenizer import Tokenizer
from tests.inference.meta_reference import MetaTokenizer, dialog_prompt_tokens, with_step_piece
from tests.models import OWN_TOKENIZER, chain, scripted_llama
from web.app import create_app


def test_replayed_replies_get_the_destination_they_were_generated_with(tmp_path):
    tok_path = with_step_piece(OWN_TOKENIZER, tmp_path / "step.model")
    tok, meta = Tokenizer(tok_path), MetaTokenizer(tok_path)
    first = [{"role": "user", "content": "hi"}]
    last = dialog_prompt_tokens(meta, first)[-1]
    model = scripted_llama(tmp_path / "model", chain([last, tok.sp.piece_to_id("▁True"), tok.step_id]),
                           tokenizer=tok_path)
    engine = LLMEngine(model, num_kv_blocks=32, model_name="CodeLlama-70b-Instruct-hf")
    with TestClient(create_app(engine)) as client:
        answer = client.post("/v1/chat/completions", json={"messages": first, "max_tokens": 4}).json()
        assert answer["choices"][0]["message"]["content"] == "True"
        replayed = first + [{"role": "assistant", "content": "True"}, {"role": "user", "content": "more"}]
        usage = client.post("/v1/chat/completions", json={"messages": replayed, "max_tokens": 1}).json()["usage"]
    as_meta_returns_it = first + [{"role": "assistant", "content": "True", "destination": "user"},
                                  {"role": "user", "content": "more"}]
    assert usage["prompt_tokens"] == len(dialog_prompt_tokens(meta, as_meta_returns_it))
    assert usage["prompt_tokens"] > len(dialog_prompt_tokens(meta, replayed))  # the destination is in
