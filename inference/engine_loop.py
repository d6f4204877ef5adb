"""The loop that runs an engine behind a front, on a thread or in a process of its own: apply
what the front sent, step while there is work, send each step's outputs back.

A failure caused by one request (it cannot be added) ends that request alone; a failed step
cannot be pinned on one request, so it is logged with its traceback and ends the requests
that were running."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .engine import LLMEngine
from .engine_messages import (AbortRequest, AddRequest, EngineStopped, FromEngine, RequestsFailed, StepOutputs,
                              StopEngine, ToEngine)

log = logging.getLogger("codellama.engine")

# the next message from the front: wait for one when `block`, else None if none has arrived;
# StopEngine once the front is gone
Receive = Callable[[bool], ToEngine | None]


def run_engine_loop(engine: LLMEngine, receive: Receive, send: Callable[[FromEngine], None]) -> None:
    while True:
        changed = False
        # wait for the next message when idle; otherwise take only what has arrived
        while (message := receive(not engine.has_unfinished and not changed)) is not None:
            changed = True
            if isinstance(message, AddRequest):
                try:
                    engine.add(message.request)
                except Exception as e:  # this request's own fault: it alone fails
                    send(RequestsFailed([message.request.request_id], str(e)))
            elif isinstance(message, AbortRequest):
                engine.abort(message.request_id)
            elif isinstance(message, StopEngine):
                engine.abort_all()
                send(EngineStopped())
                return
        outputs, stepped = [], engine.has_unfinished
        if stepped:
            try:
                outputs = engine.step()
            except Exception as e:  # a failed step ends the requests in it, not the server
                log.exception("engine step failed; ending the requests that were running")
                send(RequestsFailed(engine.abort_all(), f"engine step failed: {e!r}"))
        if stepped or changed:  # (the gauges after the last step of a busy spell too)
            send(StepOutputs(outputs, engine.gauges()))
