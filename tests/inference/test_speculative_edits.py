"""Speculative decoding on the trained default model and the edit workload (inference/bench/
edit_workload.py): a held-out function asked back with a small change is drafted from the prompt
and accepted, with the tokens of plain decoding, also when a small KV pool preempts sequences;
and clients that leave a speculative server mid-answer leave every block free and no rejected
token in the prefix cache."""

import asyncio
import json

import httpx
import pytest

from inference import LLM, LLMEngine, SamplingParams
from inference.bench.edit_speculation import run, run_pass
from inference.bench.edit_workload import FORMS, edit_cases, edit_request
from inference.cli import main
from inference.heldout import held_out_files
from inference.model_info import read_metadata
from inference.model_source import default_model_dir
from inference.speculative import StepTimes
from inference.tokenizer import Tokenizer
from tests.models import assert_pool_full
from tests.web.conftest import LiveServer, pool_full, wait_for

GREEDY = dict(temperature=0)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(default_model_dir() / "tokenizer.model")


@pytest.fixture(scope="module")
def json_cases(tokenizer):
    """Edits of the held-out json package's functions (the same in every Python since 3.8),
    shortest first."""
    files = [f for f in held_out_files() if f.name.startswith("json/")]
    cases = edit_cases(tokenizer, 10, files=files, min_function_tokens=40, max_function_tokens=300)
    return sorted(cases, key=lambda c: len(c.original))


def test_an_edit_is_drafted_from_its_prompt_with_the_tokens_of_plain_decoding(tokenizer, json_cases):
    """The model answers this rename (json.decoder's `decode`) by copying its prompt, renamed."""
    case = next(c for c in json_cases if c.kind == "rename" and ":decode " in c.name)
    request = edit_request(tokenizer, case, "completion")
    plain = run_pass(LLMEngine(num_kv_blocks=32, max_num_seqs=1), [request])
    engine = LLMEngine(num_kv_blocks=32, max_num_seqs=1, speculate="ngram")
    drafted = run_pass(engine, [request])
    assert drafted["tokens"] == plain["tokens"] and len(plain["tokens"][0]) > 20
    assert drafted["accepted"] > 0 and drafted["drafts"] > 0
    assert engine.stats.steps < engine.stats.generation_tokens
    assert drafted["steps_per_token"] < 1 == plain["steps_per_token"]


def test_edits_and_infills_are_unchanged_when_a_small_pool_preempts(tokenizer, json_cases):
    """The first three of four requests (32 new tokens each, stops ignored) fill the pool when
    they are admitted, so the first block any of them needs preempts one."""
    requests = [edit_request(tokenizer, c, form) for c in json_cases[:2] for form in FORMS]
    prompts = [r.prompt.token_ids for r in requests]
    params = SamplingParams(max_tokens=32, ignore_eos=True, **GREEDY)
    plain = LLM(num_kv_blocks=200, max_num_seqs=8).generate(prompts, params)
    small = LLM(num_kv_blocks=sum(-(-len(p) // 16) for p in prompts[:3]), max_num_seqs=8, speculate="auto")
    drafted = small.generate(prompts, params)
    assert [o.outputs[0].token_ids for o in drafted] == [o.outputs[0].token_ids for o in plain]
    engine = small.engine
    assert engine.scheduler.num_preemptions > 0 and engine.stats.accepted_tokens > 0
    assert_pool_full(engine)


def test_the_workload_compares_each_mode_with_off_and_prices_its_steps(tokenizer, json_cases):
    """With a table in which every step of one sequence takes 1 ms whatever it verifies, a
    pass's projected time is its number of decoding steps: one per token after the first
    without speculation (the first comes with the prompt)."""
    flat = StepTimes((1,), ((1.0, 1.0, 1.0),))
    requests = {form: [edit_request(tokenizer, json_cases[0], form)] for form in FORMS}
    rows = run(lambda **kw: LLMEngine(num_kv_blocks=32, **kw), requests, modes=("ngram",), batch_sizes=(1,),
               step_times=flat)
    assert [(r["form"], r["mode"]) for r in rows] == [(f, m) for f in FORMS for m in ("off", "ngram")]
    saved_steps = 0
    for off, ngram in zip(rows[::2], rows[1::2]):
        assert off["identical"] == ngram["identical"] == 1 and off["drafted"] == 0
        assert off["projected_ms"] == off["generated"] - 1
        assert ngram["projected_ms"] == round(ngram["steps_per_token"] * ngram["generated"]) - 1 <= off["projected_ms"]
        assert ngram["projected_speedup_vs_off"] == off["projected_ms"] / ngram["projected_ms"]
        if ngram["drafts"]:
            assert 0 <= ngram["acceptance"] <= 1
            assert ngram["accepted"] == pytest.approx(ngram["accepted_per_draft"] * ngram["drafts"])
        saved_steps += off["projected_ms"] - ngram["projected_ms"]
    assert saved_steps > 0  # whether one answer copies enough of its function to draft from is the model's call


async def _stream(client: httpx.AsyncClient, prompt: str, leave_after: int | None) -> None:
    body = {"prompt": prompt, "max_tokens": 48, "temperature": 0, "ignore_eos": True, "stream": True}
    async with client.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200
        events = 0
        async for line in r.aiter_lines():
            events += line.startswith("data:")
            if leave_after is not None and events >= leave_after:
                break  # the client goes away mid-answer


def test_clients_leaving_a_speculative_server_leave_no_block_and_no_rejected_token(tokenizer, json_cases):
    """Every block cached after the storm is a block-aligned stretch of some prompt and its
    greedy answer: a drafted token the model rejected would make a block hold something else."""
    prompts = [tokenizer.decode(edit_request(tokenizer, c, "completion").prompt.token_ids[1:])
               for c in json_cases[:3]]
    engine = LLMEngine(num_kv_blocks=160, max_num_seqs=8, speculate="auto")
    server = LiveServer(engine).start()

    async def storm():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            await asyncio.gather(*(_stream(client, p, leave) for p in prompts for leave in (1, 3, None)))

    try:
        asyncio.run(storm())
        assert wait_for(lambda: pool_full(engine), timeout=30)
    finally:
        server.stop()
    assert_pool_full(engine)
    assert 0 < engine.stats.accepted_tokens < engine.stats.draft_tokens
    assert engine.stats.generation_tokens < len(prompts) * 3 * 48  # some answers were cut short
    answers = LLM(num_kv_blocks=160, max_num_seqs=8).generate(
        prompts, SamplingParams(max_tokens=48, ignore_eos=True, **GREEDY))
    bs = engine.config.block_size
    full = [o.prompt_token_ids + o.outputs[0].token_ids for o in answers]
    stretches = {tuple(f[i:i + bs]) for f in full for i in range(0, len(f) - bs + 1, bs)}
    cached = [b.token_ids for b in engine.scheduler.block_manager.pool if b.hash is not None]
    assert len(cached) > 20 and all(tuple(tokens) in stretches for tokens in cached)


def test_the_bench_command_runs_the_workload_on_the_cpu_and_records_the_model(tmp_path, capsys):
    out = tmp_path / "edits.json"
    argv = ["bench", "edits", "--device", "cpu", "--cases", "1", "--batch-sizes", "1", "--modes", "ngram",
            "--forms", "completion", "--out", str(out)]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["device"]["card"] == "cpu" and record["model"]["name"] == read_metadata(default_model_dir())["model_name"]
    assert len(record["cases"]) == 1 and [r["mode"] for r in record["rows"]] == ["off", "ngram"]
    assert all(r["identical"] == 1 and r["generated"] > 0 for r in record["rows"])
    assert "completion batch   1 ngram : " in capsys.readouterr().out
