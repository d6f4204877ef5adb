"""What /metrics exposes beyond the latency histograms (which live in web/accounting.py): the
engine's gauges and counters and the server's request counts, read when Prometheus scrapes.
Names follow vLLM's (`vllm:` -> `codellama:`), so dashboards made for vLLM need little change.

Scrapes run on the event loop while the engine steps on its worker thread: only ints and
lengths are read here, never an iteration over structures the step mutates."""

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
        core = serving.engine.engine
        blocks, scheduler, stats = core.blocks, core.scheduler, core.stats
        yield GaugeMetricFamily("codellama:num_requests_running", "Sequences in the running batch",
                                value=len(scheduler.running))
        yield GaugeMetricFamily("codellama:num_requests_waiting", "Sequences waiting to be scheduled",
                                value=len(scheduler.waiting))
        yield GaugeMetricFamily("codellama:kv_cache_usage_perc", "KV-cache usage; 1 means 100 percent",
                                value=blocks.usage)
        yield GaugeMetricFamily("codellama:kv_cache_blocks_total", "KV-cache blocks in the pool",
                                value=blocks.num_blocks)
        yield CounterMetricFamily("codellama:prefix_cache_queries", "Prompt tokens looked up in the prefix cache",
                                  value=blocks.prefix_queries)
        yield CounterMetricFamily("codellama:prefix_cache_hits", "Prompt tokens found in the prefix cache",
                                  value=blocks.prefix_hits)
        yield CounterMetricFamily("codellama:num_preemptions", "Sequences preempted to free KV blocks",
                                  value=scheduler.num_preemptions)
        yield CounterMetricFamily("codellama:prompt_tokens", "Prompt tokens computed (prefix-cache hits excluded)",
                                  value=stats.prompt_tokens)
        yield CounterMetricFamily("codellama:generation_tokens", "Tokens generated", value=stats.generation_tokens)
        yield GaugeMetricFamily("codellama:num_sequences_admitted",
                                "Sequences admitted (running or queued); more than the capacity get 429",
                                value=serving.admission.in_flight)
        yield GaugeMetricFamily("codellama:admission_capacity", "Sequences that may be admitted at once",
                                value=serving.admission.capacity)
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
