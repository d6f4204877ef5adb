"""Admission control: how many sequences may be in flight (running or queued in the engine).

The engine runs at most `max_num_seqs` sequences at once (`--instance-num`) and queues the rest;
this bounds that queue to `max_queue` more, so an overloaded server answers 429 at once instead
of letting latency grow without limit. A request of n samples takes n slots."""

from __future__ import annotations

from collections.abc import Callable

from .errors import APIError


class Admission:
    def __init__(self, max_running: int, max_queue: int, retry_after: int):
        self.capacity = max_running + max_queue
        self.retry_after = retry_after
        self.in_flight = 0
        self.closed = False  # shutting down: nothing new is admitted

    def acquire(self, seqs: int) -> Callable[[], None]:
        """Take `seqs` slots or raise (503 closed, 400 never fits, 429 full); returns the
        function that gives them back, safe to call more than once."""
        if self.closed:
            raise APIError(503, "the server is shutting down", code="shutting_down")
        if seqs > self.capacity:
            raise APIError(400, f"the request needs {seqs} sequences but this server holds at most "
                                f"{self.capacity} at once (running and queued); lower n or the number of prompts",
                           param="n")
        if self.in_flight + seqs > self.capacity:
            raise APIError(429, f"the server is busy: {self.in_flight} sequences are running or queued, "
                                f"at most {self.capacity}; retry shortly", code="queue_full",
                           headers={"Retry-After": str(self.retry_after)})
        self.in_flight += seqs
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.in_flight -= seqs

        return release
