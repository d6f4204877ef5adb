"""/admin, for operators: what the engine and the server are doing, live (the numbers poll
/admin/live every second), with charts of the last minutes and the engine's configuration."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.response import Template

from ..history import History
from ..state import ServerState
from ..auth import OPERATOR, requires
from .charts import line_chart


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


def live_numbers(serving: ServerState, history: History) -> dict:
    gauges, accounting = serving.front.gauges(), serving.accounting
    total = serving.front.info.num_blocks
    errors = Counter()
    for (_, _, status), count in accounting.responses.items():
        if status >= 400:
            errors[status] += count
    rates = history.recent_rates()
    latencies = {name: {"p50": _ms(lat.quantile(0.5)), "p99": _ms(lat.quantile(0.99)), "count": lat.count}
                 for name, lat in (("ttft", accounting.ttft), ("tpot", accounting.tpot), ("e2e", accounting.e2e))}
    return {
        "running": gauges.running, "waiting": gauges.waiting,
        "admitted": serving.admission.in_flight, "capacity": serving.admission.capacity,
        "blocks_used": total - gauges.free_blocks, "blocks_total": total, "kv_usage": gauges.kv_usage,
        "prefix_hit_rate": gauges.prefix_hits / gauges.prefix_queries if gauges.prefix_queries else None,
        "draft_acceptance": (gauges.stats.accepted_tokens / gauges.stats.draft_tokens
                             if gauges.stats.draft_tokens else None),
        "prompt_tps": rates.prompt if rates else None, "generation_tps": rates.generation if rates else None,
        "prompt_tokens": gauges.stats.prompt_tokens, "generation_tokens": gauges.stats.generation_tokens,
        "latencies": latencies, "preemptions": gauges.preemptions,
        "finished_requests": accounting.finished_requests,
        "errors": sorted(errors.items()), "ended_early": sorted(accounting.ended_early.items()),
        "by_ability": sorted(accounting.requests.items()),
    }


def charts(history: History) -> list:
    now, span = time.monotonic(), history.samples.maxlen * history.interval
    samples, rates = list(history.samples), history.rates()
    return [
        line_chart("Sequences", "", [("running", "c1", [(s.time, s.running) for s in samples]),
                                     ("waiting", "c2", [(s.time, s.waiting) for s in samples])], now, span),
        line_chart("KV cache used", "%", [("used", "c1", [(s.time, 100 * s.kv_usage) for s in samples])], now, span,
                   top=100),
        line_chart("Tokens / s", "", [("prompt", "c2", [(r.time, r.prompt) for r in rates]),
                                      ("generation", "c1", [(r.time, r.generation) for r in rates])], now, span),
    ]


def configuration(serving: ServerState) -> dict:
    engine, settings = serving.front.info, serving.settings
    info = serving.model_info
    model_fields = ("model", "model_name", "capabilities", "model_config", "weight_scheme")  # shown under "model"
    return {
        "model": {"name": info.name, "variant": info.variant, "size": info.size,
                  "abilities": ", ".join(info.capabilities), "directory": str(engine.model_dir),
                  "weights": engine.config.weights_label, "kv cache": engine.config.kv_cache_label},
        "engine": {**{f.name: getattr(engine.config, f.name) for f in dataclasses.fields(engine.config)
                      if f.name not in model_fields},
                   "kv blocks in the pool": engine.num_blocks},
        "server": {"max_queue": settings.max_queue, "api keys": len(settings.api_keys),
                   "operator key": "set" if settings.operator_key else "none (open)",
                   "cors_origins": ", ".join(settings.cors_origins) or "none",
                   "max_body_bytes": settings.max_body_bytes, "shutdown_grace": settings.shutdown_grace},
    }


class AdminController(Controller):
    path = "/admin"
    guards = [requires(OPERATOR)]
    include_in_schema = False

    @get("/", sync_to_thread=False)
    def page(self, serving: NamedDependency[ServerState], history: NamedDependency[History]) -> Template:
        return Template(template_name="admin.html",
                        context={"live": live_numbers(serving, history), "charts": charts(history),
                                 "config": configuration(serving), "model": serving.model_info})

    @get("/live", sync_to_thread=False)
    def live(self, serving: NamedDependency[ServerState], history: NamedDependency[History]) -> Template:
        return Template(template_name="partials/admin_live.html",
                        context={"live": live_numbers(serving, history), "charts": charts(history)})
