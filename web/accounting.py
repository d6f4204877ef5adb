"""Request accounting that the pages and /metrics read: responses by route and status, requests
by ability, requests that ended early, and the latencies users feel (time to first token, time
per output token, end to end). Latencies go into prometheus-client histograms of the app's own
registry (for /metrics) and into a window of recent values (for the quantiles /admin shows)."""

from __future__ import annotations

from collections import Counter, deque

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Histogram

from inference.outputs import RequestMetrics

# vLLM's buckets, so dashboards made for vLLM read these the same way
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
               480.0, 960.0, 1920.0, 7680.0)


class Latency:
    """Observations in seconds: a histogram since start, and a window of recent ones."""

    def __init__(self, histogram: Histogram):
        self.histogram = histogram
        self.count = 0
        self.recent: deque[float] = deque(maxlen=4096)

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.recent.append(seconds)
        self.histogram.observe(seconds)

    def quantile(self, q: float) -> float | None:
        """The q-quantile of the recent window (nearest rank), None before any observation."""
        if not self.recent:
            return None
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Accounting:
    def __init__(self, registry: CollectorRegistry):
        self.responses: Counter[tuple[str, str, int]] = Counter()  # (method, route, status)
        self.requests: Counter[str] = Counter()  # generation requests admitted, by ability
        self.ended_early: Counter[str] = Counter()  # generation requests cut short, by reason (error code)
        self.ttft = Latency(Histogram("codellama:time_to_first_token_seconds", "Time to first token",
                                      buckets=TTFT_BUCKETS, registry=registry))
        self.tpot = Latency(Histogram("codellama:time_per_output_token_seconds",
                                      "Time per output token after the first", buckets=TPOT_BUCKETS,
                                      registry=registry))
        self.e2e = Latency(Histogram("codellama:e2e_request_latency_seconds",
                                     "From arrival to the end, of requests that ran to their end",
                                     buckets=E2E_BUCKETS, registry=registry))
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.finished_requests = 0  # engine requests (one per prompt) that ran to their end

    def count_response(self, method: str, route: str, status: int) -> None:
        self.responses[(method, route, status)] += 1

    def count_request(self, ability: str) -> None:
        self.requests[ability] += 1

    def count_ended_early(self, reason: str) -> None:
        self.ended_early[reason] += 1

    def observe_request(self, metrics: RequestMetrics, prompt_tokens: int, longest_output: int,
                        output_tokens: int) -> None:
        """One finished engine request; `longest_output` is its longest sample in tokens."""
        self.finished_requests += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += output_tokens
        if metrics.ttft is not None:
            self.ttft.observe(metrics.ttft)
        if (per_token := metrics.time_per_output_token(longest_output)) is not None:
            self.tpot.observe(per_token)
        if metrics.finished_time is not None:
            self.e2e.observe(metrics.finished_time - metrics.arrival_time)


class AccountingMiddleware(ASGIMiddleware):
    """Counts every routed HTTP response by its route template (so /v1/models/{model} is one row).
    A client that went away before its response was complete (a body cut off mid-upload, a
    stream dropped) is counted as nginx logs it: 499, whatever the app answered to nobody."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, accounting: Accounting):
        self.accounting = accounting

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        status, complete, gone = 500, False, False

        async def watching_receive() -> Message:
            nonlocal gone
            message = await receive()
            gone = gone or (message["type"] == "http.disconnect" and not complete)
            return message

        async def counting_send(message: Message) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        try:
            await next_app(scope, watching_receive, counting_send)
        except HTTPException as e:  # answered by the exception handlers outside this middleware
            status = e.status_code
            raise
        finally:
            route = scope.get("path_template") or scope["path"]
            self.accounting.count_response(scope["method"], route, 499 if gone else status)
