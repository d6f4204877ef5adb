"""The load driver behind `codellama bench serve`, against a live server on the tiny model."""

from __future__ import annotations

import pytest

from web.serve_benchmark import run_serve_benchmark

from .conftest import pool_full, wait_for


async def test_concurrent_clients_report_latencies_and_throughput(random_server):
    finished = random_server.serving.accounting.finished_requests
    report = await run_serve_benchmark(random_server.url, concurrency=4, num_requests=8, prompt_len=24, max_tokens=6)
    assert report["requests"] == 8 and report["errors"] == 0
    assert report["output_tokens"] == 8 * 6  # ignore_eos: every request runs to max_tokens
    assert report["output_tok_per_s"] == pytest.approx(48 / report["duration_s"], rel=0.01)
    assert 0 < report["ttft_p50_ms"] <= report["ttft_p99_ms"] < 1000 * report["duration_s"]
    assert 0 < report["tpot_p50_ms"] <= report["tpot_p99_ms"]
    engine = report["server_engine"]  # the run alone: 6 tokens take at least 6 steps, and no more than 8 × 6
    assert 6 <= engine["steps"] <= 48 and engine["launch_seconds"] > 0 and engine["output_seconds"] > 0
    assert random_server.serving.accounting.finished_requests == finished + 8
    assert wait_for(lambda: pool_full(random_server.engine))


async def test_poisson_arrivals_and_errors_are_counted(random_server):
    report = await run_serve_benchmark(random_server.url, concurrency=2, num_requests=4, prompt_len=8, max_tokens=3,
                                       request_rate=50.0)
    assert report["requests"] == 4 and report["request_rate"] == 50.0
    too_long = await run_serve_benchmark(random_server.url, concurrency=2, num_requests=2, prompt_len=2000,
                                         max_tokens=3)  # past the 1024-token context window
    assert too_long["requests"] == 0 and too_long["errors"] == 2
    assert "HTTP 400" in too_long["error_samples"][0] and "context window" in too_long["error_samples"][0]
