"""What /metrics exposes beyond the latency histograms (which live in web/accounting.py): the
engine's gauges and counters and the server's request counts, read when Prometheus scrapes.
Names follow vLLM's (`vllm:` -> `codellama:`), so dashboards made for vLLM need little change.

The engine's numbers come from its gauges: read at once where the engine runs on a thread of
this process, sent after each step where it runs in a process of its own."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class ServerCollector(Collector):
    def __init__(self, serving):
        self._serving = serving

    def collect(self) -> Iterator[Metric]:
        serving = self._serving
        gauges = serving.front.gauges()
        stats = gauges.stats
        gauge, counter = GaugeMetricFamily, CounterMetricFamily
        for family, name, documentation, value in (
            (gauge, "num_requests_running", "Sequences in the running batch", gauges.running),
            (gauge, "num_requests_waiting", "Sequences waiting to be scheduled", gauges.waiting),
            (gauge, "kv_cache_usage_perc", "KV-cache usage; 1 means 100 percent", gauges.kv_usage),
            (gauge, "kv_cache_blocks_total", "KV-cache blocks in the pool", serving.front.info.num_blocks),
            (counter, "prefix_cache_queries", "Prompt tokens looked up in the prefix cache", gauges.prefix_queries),
            (counter, "prefix_cache_hits", "Prompt tokens found in the prefix cache", gauges.prefix_hits),
            (counter, "num_preemptions", "Sequences preempted to free KV blocks", gauges.preemptions),
            (counter, "prompt_tokens", "Prompt tokens computed (prefix-cache hits excluded)", stats.prompt_tokens),
            (counter, "generation_tokens", "Tokens generated", stats.generation_tokens),
            (counter, "engine_steps", "Engine steps run", stats.steps),
            (counter, "spec_decode_num_draft_tokens", "Drafted tokens verified (speculative decoding)",
             stats.draft_tokens),
            (counter, "spec_decode_num_accepted_tokens", "Drafted tokens accepted", stats.accepted_tokens),
            # where the engine thread's time goes: a busy server has most of it waiting on the GPU
            (counter, "engine_launch_seconds", "Engine host time scheduling, preparing and queueing steps",
             stats.launch_seconds),
            (counter, "engine_wait_seconds", "Engine host time waiting for the GPU's results", stats.wait_seconds),
            (counter, "engine_output_seconds", "Engine host time turning results into outputs", stats.output_seconds),
            (gauge, "num_sequences_admitted", "Sequences admitted (running or queued); past the capacity, 429",
             serving.admission.in_flight),
            (gauge, "admission_capacity", "Sequences that may be admitted at once", serving.admission.capacity),
        ):
            yield family(f"codellama:{name}", documentation, value=value)
        accounting = serving.accounting
        yield _labelled("codellama:http_requests", "HTTP responses by route and status", ["method", "route", "status"],
                        accounting.responses)
        yield _labelled("codellama:requests", "Generation requests admitted, by ability", ["ability"],
                        accounting.requests)
        yield _labelled("codellama:requests_ended_early",
                        "Generation requests cut short (client gone, Stop pressed, shutdown), by reason", ["reason"],
                        accounting.ended_early)


def _labelled(name: str, documentation: str, labels: list[str], counts: Counter) -> CounterMetricFamily:
    """A counter family from a Counter keyed by a label value or a tuple of them."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, count in sorted(counts.items()):
        family.add_metric([str(k) for k in (key if isinstance(key, tuple) else (key,))], count)
    return family
