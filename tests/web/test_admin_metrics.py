"""/admin and /metrics through Litestar's test client: the numbers are the engine's and the
accounting's, they move after a request, and /metrics is valid Prometheus text."""

from __future__ import annotations

import re
import time

import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.web.conftest import page_engine
from web.app import create_app
from web.history import History, Rates, Sample
from web.pages.charts import line_chart, nice_ceiling

ENGINE_METRICS = {
    "codellama:num_requests_running": "gauge", "codellama:num_requests_waiting": "gauge",
    "codellama:kv_cache_usage_perc": "gauge", "codellama:prefix_cache_hits": "counter",
    "codellama:prefix_cache_queries": "counter", "codellama:num_preemptions": "counter",
    "codellama:prompt_tokens": "counter", "codellama:generation_tokens": "counter",
    "codellama:time_to_first_token_seconds": "histogram", "codellama:time_per_output_token_seconds": "histogram",
    "codellama:e2e_request_latency_seconds": "histogram", "codellama:http_requests": "counter",
    "codellama:requests": "counter", "codellama:requests_ended_early": "counter",
    "codellama:engine_steps": "counter", "codellama:engine_launch_seconds": "counter",
    "codellama:engine_wait_seconds": "counter", "codellama:engine_output_seconds": "counter",
    "codellama:spec_decode_num_draft_tokens": "counter", "codellama:spec_decode_num_accepted_tokens": "counter",
}


@pytest.fixture(scope="module")
def client(page_model):
    with TestClient(create_app(page_engine(page_model[1]))) as client:
        yield client


def scrape(client) -> dict[str, dict]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    return families


def value(families, name: str, suffix: str = "", **labels) -> float:
    """A sample's value (0 when the labelled sample does not exist yet)."""
    return next((s.value for s in families[name].samples
                 if s.name == name + suffix and all(s.labels.get(k) == v for k, v in labels.items())), 0.0)


def test_metrics_are_prometheus_text_with_vllm_like_names(client):
    families = scrape(client)
    assert {name: families[name].type for name in ENGINE_METRICS} == ENGINE_METRICS
    engine = client.app.state.serving.front.engine
    assert value(families, "codellama:kv_cache_usage_perc") == engine.gauges().kv_usage == 0.0
    assert value(families, "codellama:kv_cache_blocks_total") == engine.info.num_blocks == 128


def test_metrics_move_after_a_request(client, page_model):
    script, _ = page_model
    before = scrape(client)
    r = client.post("/v1/completions", json={"prompt": "def add(a, b):", "max_tokens": 16})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == script.completion_text
    assert client.post("/v1/completions", json={"prompt": "x", "max_tokens": 0}).status_code == 400
    after = scrape(client)

    def moved(name, suffix="", **labels):
        return value(after, name, suffix, **labels) - value(before, name, suffix, **labels)

    usage = r.json()["usage"]
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    assert moved("codellama:generation_tokens", "_total") == usage["completion_tokens"]
    assert usage["completion_tokens"] == len(script.completion_ids) + 1  # and EOS
    assert moved("codellama:prompt_tokens", "_total") == usage["prompt_tokens"] - cached
    assert moved("codellama:prefix_cache_queries", "_total") == usage["prompt_tokens"]
    assert moved("codellama:time_to_first_token_seconds", "_count") == 1
    assert moved("codellama:e2e_request_latency_seconds", "_count") == 1
    assert moved("codellama:time_per_output_token_seconds", "_count") == 1
    assert moved("codellama:http_requests", "_total", method="POST", route="/v1/completions", status="200") == 1
    assert moved("codellama:http_requests", "_total", method="POST", route="/v1/completions", status="400") == 1
    assert moved("codellama:requests", "_total", ability="completion") == 1
    # a 16-token answer takes at least 16 steps, each with host time launching it and making its outputs
    assert moved("codellama:engine_steps", "_total") >= usage["completion_tokens"]
    assert all(moved(f"codellama:engine_{part}_seconds", "_total") > 0 for part in ("launch", "output"))
    assert value(after, "codellama:time_to_first_token_seconds", "_bucket", le="+Inf") == \
        value(after, "codellama:time_to_first_token_seconds", "_count")


def test_each_app_has_its_own_registry(page_model):
    with TestClient(create_app(page_engine(page_model[1], num_kv_blocks=32))) as other:
        assert value(scrape(other), "codellama:kv_cache_blocks_total") == 32


def live_number(fragment: str, metric: str) -> str:
    return re.search(rf'data-metric="{metric}">([^<]*)<', fragment).group(1)


def test_admin_shows_the_engine_numbers_and_configuration(client, page_model):
    script, _ = page_model
    page = client.get("/admin")
    assert page.status_code == 200 and 'hx-get="/admin/live" hx-trigger="every 1s"' in page.text
    engine = client.app.state.serving.front.engine
    for name, shown in (("max_num_seqs", engine.config.max_num_seqs), ("block_size", engine.config.block_size),
                        ("kv blocks in the pool", 128), ("abilities", "completion, infilling, chat"),
                        ("weights", "float32"), ("kv cache", "float32"), ("kv_cache_dtype", "auto")):
        assert re.search(rf"<th scope=\"row\">{name}</th><td>{shown}</td>", page.text), name
    assert live_number(page.text, "blocks_used") == "0 / 128"
    before = client.get("/admin/live").text
    r = client.post("/playground/infill", data={"code": "a<FILL>b"})
    client.get("/playground/stream/" + re.search(r"/playground/stream/(\w+)", r.text).group(1))
    after = client.get("/admin/live").text
    assert int(live_number(after, "generation_tokens")) - int(live_number(before, "generation_tokens")) == \
        len(script.infill_ids) + 1
    assert int(live_number(after, "finished_requests")) == int(live_number(before, "finished_requests")) + 1
    assert re.search(r'data-ability="infilling">(\d+)<', after).group(1) == str(
        client.app.state.serving.accounting.requests["infilling"])
    assert live_number(after, "ttft_p50") != "—"
    assert after.count("<polyline") == 5 and after.count("<svg") == 3


def test_speculative_decoding_is_counted_on_metrics_and_admin(page_model):
    script, model = page_model
    with TestClient(create_app(page_engine(model, speculate="auto"))) as spec:
        assert live_number(spec.get("/admin/live").text, "draft_acceptance") == "—"
        for _ in range(2):  # the second answer is drafted from the first (the suffix cache)
            r = spec.post("/v1/completions", json={"prompt": "def add(a, b):", "max_tokens": 16})
            assert r.json()["choices"][0]["text"] == script.completion_text
        families = scrape(spec)
        drafted = value(families, "codellama:spec_decode_num_draft_tokens", "_total")
        accepted = value(families, "codellama:spec_decode_num_accepted_tokens", "_total")
        assert 0 < accepted <= drafted
        assert live_number(spec.get("/admin/live").text, "draft_acceptance") == f"{100 * accepted / drafted:.1f} %"


def test_admin_counts_errors_by_status_and_answers_cut_short(client):
    client.post("/v1/chat/completions", json={"messages": []})
    r = client.post("/playground/chat", data={"message": "hi"})
    client.post("/playground/stop/" + re.search(r"/playground/stream/(\w+)", r.text).group(1))
    live = client.get("/admin/live").text
    assert int(re.search(r'data-status="400">(\d+)<', live).group(1)) >= 1
    assert re.search(r'data-ended="stopped">(\d+)<', live).group(1) == str(
        client.app.state.serving.accounting.ended_early["stopped"])


def test_the_history_ring_buffer_feeds_the_charts(client):
    history = client.app.state.history
    assert history.samples.maxlen == 301  # five minutes at one sample a second
    engine = client.app.state.serving.front.engine
    client.post("/v1/completions", json={"prompt": "def add(a, b):", "max_tokens": 4})
    settled = time.monotonic() + 10  # a request stopped by an earlier test may still be ending
    while engine.has_unfinished or client.app.state.serving.front.gauges().stats != engine.stats:
        assert time.monotonic() < settled, "the engine stays busy"
        time.sleep(0.01)
    start = len(history.samples)
    history.sample()
    assert len(history.samples) == start + 1
    last = history.samples[-1]
    assert (last.generation_tokens, last.prompt_tokens) == (engine.stats.generation_tokens, engine.stats.prompt_tokens)
    assert 0 < last.generation_tokens < last.prompt_tokens  # each in its own field


def test_rates_and_chart_points_follow_the_samples(client):
    history = History(client.app.state.serving.front.engine)
    for t, prompt, generated in ((100.0, 0, 0), (101.0, 50, 10), (103.0, 50, 30)):
        history.samples.append(Sample(t, 1, 0, 0.25, prompt, generated))
    assert history.rates() == [Rates(101.0, 50.0, 10.0), Rates(103.0, 0.0, 10.0)]
    chart = line_chart("t", "", [("g", "c1", [(r.time, r.generation) for r in history.rates()])], now=103.0,
                       span_seconds=300.0)
    assert chart.top == 10 and chart.lines[0].points == "298.0,0.0 300.0,0.0" and chart.lines[0].last == 10.0
    assert [nice_ceiling(v) for v in (0, 0.3, 1, 7, 10, 11, 2500)] == [1, 0.5, 1, 10, 10, 20, 5000]
