"""Request accounting that pages and metrics read: responses by route and status, and the
latencies users feel (time to first token, time per output token). Plain numbers, no exporter."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from inference.outputs import RequestMetrics


@dataclass(slots=True)
class Latency:
    """Observations in seconds: count and sum since start, and a window of recent ones."""

    count: int = 0
    total: float = 0.0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=4096))

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.recent.append(seconds)

    def quantile(self, q: float) -> float | None:
        """The q-quantile of the recent window (nearest rank), None before any observation."""
        if not self.recent:
            return None
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(slots=True)
class Accounting:
    responses: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # (method, route, status)
    ttft: Latency = field(default_factory=Latency)
    tpot: Latency = field(default_factory=Latency)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finished_requests: int = 0  # engine requests (one per prompt) that ran to their end

    def count_response(self, method: str, route: str, status: int) -> None:
        self.responses[(method, route, status)] += 1

    def observe_request(self, metrics: RequestMetrics, prompt_tokens: int, longest_output: int,
                        output_tokens: int) -> None:
        """One finished engine request; `longest_output` is its longest sample in tokens."""
        self.finished_requests += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += output_tokens
        if metrics.ttft is not None:
            self.ttft.observe(metrics.ttft)
        if longest_output > 1 and metrics.last_token_time is not None:
            self.tpot.observe((metrics.last_token_time - metrics.first_token_time) / (longest_output - 1))


class AccountingMiddleware(ASGIMiddleware):
    """Counts every routed HTTP response by its route template (so /v1/models/{model} is one row)."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, accounting: Accounting):
        self.accounting = accounting

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await next_app(scope, receive, counting_send)
        except HTTPException as e:  # answered by the exception handlers outside this middleware
            status = e.status_code
            raise
        finally:
            route = scope.get("path_template") or scope["path"]
            self.accounting.count_response(scope["method"], route, status)
