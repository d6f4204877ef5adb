"""The real OpenAI SDK, sync and async, against a live server on the scripted model, whose greedy
answers are known by construction (see conftest.make_script)."""

from __future__ import annotations

import openai
import pytest
import torch

from inference.prompts import chat_prompt


@pytest.fixture(scope="module")
def client(scripted_server):
    with openai.OpenAI(base_url=scripted_server.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


@pytest.fixture
async def aclient(scripted_server):
    async with openai.AsyncOpenAI(base_url=scripted_server.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def script(script_model):
    return script_model[0]


@pytest.fixture(scope="module")
def model_id(scripted_server):
    return scripted_server.serving.model_id


def test_models_lists_the_served_model_with_context_and_abilities(client, scripted_server, script, model_id):
    models = client.models.list().data
    assert [m.id for m in models] == [model_id] == [scripted_server.engine.model_info.name]
    card = models[0].model_dump()
    assert card["max_model_len"] == 512
    assert card["capabilities"] == ["completion", "infilling", "chat"]
    assert card["weights"] == card["kv_cache_dtype"] == "float32"  # unquantized, on the CPU
    tok = script.tok
    assert card["infill_token_ids"] == {k: tok.infill_id(k) for k in ("prefix", "suffix", "middle", "eot")}
    assert client.models.retrieve(model_id).id == model_id
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_completion_plain_with_usage(client, script, model_id):
    r = client.completions.create(model=model_id, prompt=script.completion_prompt, max_tokens=50, temperature=0)
    assert r.object == "text_completion" and r.model == model_id
    assert r.choices[0].text == script.completion_text
    assert r.choices[0].finish_reason == "stop"
    prompt_tokens = len(script.tok.encode(script.completion_prompt))
    assert r.usage.prompt_tokens == prompt_tokens
    assert r.usage.completion_tokens == len(script.completion_ids) + 1  # and the EOS that ended it
    assert r.usage.total_tokens == prompt_tokens + r.usage.completion_tokens


def test_completion_stops_at_max_tokens_and_at_stop_strings(client, script, model_id):
    r = client.completions.create(model=model_id, prompt=script.completion_prompt, max_tokens=3, temperature=0)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3
    assert r.choices[0].text == script.tok.decode(script.tok.encode(script.completion_prompt) +
                                                  script.completion_ids[:3])[len(script.completion_prompt):]
    text = script.completion_text
    r = client.completions.create(model=model_id, prompt=script.completion_prompt, max_tokens=50, temperature=0,
                                  stop=["+", "zzz", "never"])
    assert r.choices[0].text == text[:text.index("+")] and r.choices[0].finish_reason == "stop"


def test_completion_token_id_prompts_many_prompts_and_n(client, script, model_id):
    ids = script.tok.encode(script.completion_prompt)
    r = client.completions.create(model=model_id, prompt=ids, max_tokens=50, temperature=0)
    assert r.choices[0].text == script.completion_text
    r = client.completions.create(model=model_id, prompt=[ids, list(ids)], n=2, max_tokens=50,
                                  temperature=0)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert all(c.text == script.completion_text for c in r.choices)
    assert r.usage.prompt_tokens == 2 * len(ids)
    assert r.usage.completion_tokens == 4 * (len(script.completion_ids) + 1)


def test_completion_suffix_fills_the_middle(client, script, model_id):
    r = client.completions.create(model=model_id, prompt="def f(x):\n", suffix="\n    return y\n", max_tokens=20,
                                  temperature=0)
    assert r.choices[0].text == script.infill_text == " return x"
    assert r.choices[0].finish_reason == "stop"


def test_completion_echo_and_logprobs(client, script, model_id):
    r = client.completions.create(model=model_id, prompt=script.completion_prompt, max_tokens=50, temperature=0,
                                  echo=True)
    assert r.choices[0].text == script.completion_prompt + script.completion_text
    r = client.completions.create(model=model_id, prompt=script.completion_prompt, max_tokens=50, temperature=0,
                                  logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(script.completion_ids) + 1
    for token, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert len(top) == 2
        best = max(top, key=top.get)
        assert (best, top[best]) == (token, pytest.approx(value))  # greedy picks the likeliest token
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    assert "".join(lp.tokens[:-1]) == script.completion_text  # all but the EOS, whose text is empty


def test_completion_echo_with_logprobs_scores_the_prompt_as_transformers_does(client, script, model_id,
                                                                             script_model):
    from transformers import LlamaForCausalLM

    ids = script.tok.encode(script.completion_prompt, bos=True)
    with torch.no_grad():
        logits = LlamaForCausalLM.from_pretrained(script_model[1]).float()(torch.tensor([ids])).logits[0, :-1]
    reference = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0].tolist()
    ask = dict(model=model_id, prompt=script.completion_prompt, temperature=0, echo=True, logprobs=2)
    r = client.completions.create(max_tokens=3, **ask)
    lp, n = r.choices[0].logprobs, len(ids)
    assert r.choices[0].text == script.completion_prompt + script.tok.decode(ids + script.completion_ids[:3])[
        len(script.tok.decode(ids)):]
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == n + 3
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None  # nothing precedes the first token
    assert lp.token_logprobs[1:n] == pytest.approx(reference, abs=1e-4)
    assert lp.text_offset == sorted(lp.text_offset)
    # each position's alternatives: the 2 likeliest and the token itself (OpenAI's k + 1 at most)
    assert all(token in top and 2 <= len(top) <= 3 for token, top in zip(lp.tokens[1:], lp.top_logprobs[1:]))
    assert r.usage.completion_tokens == 3

    scored = client.completions.create(max_tokens=0, **ask)  # the prompt only, as harnesses ask
    choice = scored.choices[0]
    assert choice.text == script.completion_prompt and choice.finish_reason == "length"
    assert choice.logprobs.tokens == lp.tokens[:n] and choice.logprobs.token_logprobs[1:] == pytest.approx(reference,
                                                                                                         abs=1e-4)
    assert (scored.usage.prompt_tokens, scored.usage.completion_tokens) == (n, 0)

    chunks = list(client.completions.create(max_tokens=3, stream=True, **ask))
    streamed = [c.choices[0].logprobs for c in chunks if c.choices and c.choices[0].logprobs]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    assert sum((s.tokens for s in streamed), []) == lp.tokens
    assert sum((s.text_offset for s in streamed), []) == lp.text_offset


def test_echoed_tokens_join_up_to_the_text_at_their_offsets(client, script, model_id):
    ask = dict(model=model_id, prompt=script.completion_prompt, max_tokens=3, temperature=0, echo=True, logprobs=1)
    choice = client.completions.create(**ask).choices[0]
    text, lp = choice.text, choice.logprobs
    assert lp.tokens[0] == "<s>" and lp.text_offset[0] == 0  # BOS: shown by name, adds no text
    assert "".join(lp.tokens[1:]) == text
    assert all(text[at:at + len(token)] == token for token, at in zip(lp.tokens[1:], lp.text_offset[1:]))
    chunks = list(client.completions.create(stream=True, **ask))
    assert sum((c.choices[0].logprobs.text_offset for c in chunks if c.choices), []) == lp.text_offset


def test_top_logprobs_hold_the_chosen_token_too(client, script, model_id):
    ask = dict(model=model_id, prompt=script.completion_prompt, max_tokens=2, temperature=0, echo=True)
    lp = client.completions.create(logprobs=0, **ask).choices[0].logprobs
    assert lp.top_logprobs[1:] == [{t: v} for t, v in zip(lp.tokens[1:], lp.token_logprobs[1:])]
    lp = client.completions.create(logprobs=1, **ask).choices[0].logprobs
    assert all(t in top and len(top) <= 2 for t, top in zip(lp.tokens[1:], lp.top_logprobs[1:]))
    assert any(len(top) == 2 for top in lp.top_logprobs[1:])  # a prompt token the model did not expect


def test_completion_stream_sync(client, script, model_id):
    stream = client.completions.create(model=model_id, prompt=script.completion_prompt, max_tokens=50,
                                       temperature=0, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == script.completion_text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert len([c for c in chunks if c.choices]) > 1  # streamed, not one block
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(script.completion_ids) + 1


def test_chat_single_and_multi_turn_with_system(client, script, model_id):
    messages = [{"role": "user", "content": "hi"}]
    r = client.chat.completions.create(model=model_id, messages=messages, max_tokens=30, temperature=0)
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content == script.chat_text
    assert r.usage.prompt_tokens == len(chat_prompt(script.tok, messages).token_ids)
    messages = [{"role": "system", "content": "Answer in Python."}, {"role": "user", "content": "sort a list"},
                {"role": "assistant", "content": "sorted(xs)"}, {"role": "user", "content": "in place?"}]
    r = client.chat.completions.create(model=model_id, messages=messages, max_completion_tokens=30, temperature=0,
                                       n=2)
    assert [c.message.content for c in r.choices] == [script.chat_text] * 2
    assert r.usage.prompt_tokens == len(chat_prompt(script.tok, messages).token_ids)
    assert r.usage.completion_tokens == 2 * (len(script.chat_ids) + 1)


def test_chat_logprobs(client, script, model_id):
    r = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "hi"}], max_tokens=30,
                                       temperature=0, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == len(script.chat_ids) + 1
    for entry in content:
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token and bytes(entry.bytes) == entry.token.encode()
    # the tokens (all but the EOS) join up to the content, whose leading space decoding drops
    assert "".join(entry.token for entry in content[:-1]) == r.choices[0].message.content
    chunks = list(client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=30, temperature=0, logprobs=True, stream=True))
    streamed = [e.token for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert streamed == [entry.token for entry in content]


async def test_async_chat_stream(aclient, script, model_id):
    stream = await aclient.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "hi"}],
                                                   max_tokens=30, temperature=0, stream=True,
                                                   stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == script.chat_text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == len(script.chat_ids) + 1


async def test_async_completion_and_infill_stream(aclient, script, model_id):
    r = await aclient.completions.create(model=model_id, prompt=script.completion_prompt, max_tokens=50,
                                         temperature=0)
    assert r.choices[0].text == script.completion_text
    stream = await aclient.completions.create(model=model_id, prompt="x = ", suffix="\nprint(x)", max_tokens=20,
                                              temperature=0, stream=True)
    assert "".join([c.choices[0].text async for c in stream]) == script.infill_text


def test_prefix_cache_hits_are_reported_as_cached_tokens(client, model_id, scripted_server):
    block = scripted_server.engine.config.block_size
    prompt = "# a long shared preamble that spans more than two blocks of the cache\n" * 2 + "def add(a, b):"
    first = client.completions.create(model=model_id, prompt=prompt, max_tokens=2, temperature=0)
    second = client.completions.create(model=model_id, prompt=prompt, max_tokens=2, temperature=0)
    assert first.usage.prompt_tokens > 2 * block
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert cached >= 2 * block and cached % block == 0 and cached < second.usage.prompt_tokens
