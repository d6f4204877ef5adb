"""Stop conditions and streamed text, on a scripted model whose greedy output is known."""


import pytest

from inference import LLM, AsyncEngine, LLMEngine, SamplingParams
from inference.tokenizer import Tokenizer
from tests.models import OWN_TOKENIZER, assert_pool_full, chain, scripted_llama

PROMPT = "# greet"
SCRIPT_TEXT = "print('中文 😀 ok')"


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    """Greedy output of PROMPT is SCRIPT_TEXT (byte-fallback CJK and emoji included), then EOS."""
    tok = Tokenizer(OWN_TOKENIZER)
    prompt_ids = tok.encode(PROMPT)
    script = tok.encode(SCRIPT_TEXT, bos=False)
    path = scripted_llama(tmp_path_factory.mktemp("scripted"), chain([prompt_ids[-1], *script, tok.eos_id]))
    return path, prompt_ids, script


@pytest.fixture(scope="module")
def llm(scripted):
    return LLM(scripted[0], num_kv_blocks=64)


def expected_text(tok, prompt_ids, ids):
    return tok.decode(prompt_ids + ids)[len(tok.decode(prompt_ids)):]


def greedy(**kw) -> SamplingParams:
    return SamplingParams(temperature=0, max_tokens=kw.pop("max_tokens", 64), **kw)


def test_scripted_output_ends_at_eos_which_is_not_text(llm, scripted):
    _, prompt_ids, script = scripted
    out = llm.generate([PROMPT], greedy())[0].outputs[0]
    assert out.token_ids == script + [llm.tokenizer.eos_id]
    assert out.text == expected_text(llm.tokenizer, prompt_ids, script)
    assert SCRIPT_TEXT in out.text and out.finish_reason == "stop"


def test_stop_strings_spanning_token_boundaries(llm, scripted):
    tok = llm.tokenizer
    _, prompt_ids, script = scripted
    full = expected_text(tok, prompt_ids, script)
    pieces = [expected_text(tok, prompt_ids + script[:i], script[i:i + 1]) for i in range(len(script))]
    # a stop string made of the end of one token's text and the start of the next one's
    k = next(i for i in range(1, len(pieces)) if len(pieces[i - 1]) >= 2 and len(pieces[i]) >= 2)
    stop = pieces[k - 1][-2:] + pieces[k][:2]
    at = full.index(stop)
    out = llm.generate([PROMPT], greedy(stop=["never matches", stop]))[0].outputs[0]
    assert out.text == full[:at] and out.finish_reason == "stop"
    # the earliest of several stop strings wins, whatever their order
    later = full[at + 3:at + 6]
    out = llm.generate([PROMPT], greedy(stop=[later, stop, "zzzzzzzzzzzzzzzzzzzz" * 5]))[0].outputs[0]
    assert out.text == full[:at]


def test_stop_token_ids_and_max_tokens(llm, scripted):
    _, prompt_ids, script = scripted
    out = llm.generate([PROMPT], greedy(stop_token_ids=[script[3]]))[0].outputs[0]
    assert out.token_ids == script[:4] and out.finish_reason == "stop"
    assert out.text == expected_text(llm.tokenizer, prompt_ids, script[:3])
    out = llm.generate([PROMPT], greedy(max_tokens=5))[0].outputs[0]
    assert out.token_ids == script[:5] and out.finish_reason == "length"


async def _stream(engine: AsyncEngine, request_id: str, params: SamplingParams) -> list[str]:
    deltas = []
    async for out in engine.generate(request_id, PROMPT, params):
        deltas.append(out.outputs[0].text)
    return deltas


async def test_streamed_utf8_arrives_whole_and_stop_strings_are_held_back(scripted):
    engine = LLMEngine(scripted[0], num_kv_blocks=64)
    aengine = AsyncEngine(engine)
    tok = engine.tokenizer
    _, prompt_ids, script = scripted
    full = expected_text(tok, prompt_ids, script)
    try:
        deltas = await _stream(aengine, "utf8", greedy())
        assert "".join(deltas) == full
        assert not any("\ufffd" in d for d in deltas)
        assert any("中" in d for d in deltas) and any("😀" in d for d in deltas)
        # a stop string that starts with a space: the space is held back, then dropped
        stop = " ok')"
        deltas = await _stream(aengine, "stop", greedy(stop=[stop]))
        assert "".join(deltas) == full[:full.index(stop)]
        assert all(not d.endswith(" ") for d in deltas[:-1] if d)
    finally:
        await aengine.stop()
    assert_pool_full(engine)
