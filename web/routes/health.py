"""GET /health: 200 while serving, 503 once shutdown has begun or the engine has failed (for load
balancers)."""

from __future__ import annotations

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec

from ..state import ServerState


class HealthStatus(msgspec.Struct, omit_defaults=True):
    status: str  # "ok", "shutting down" or "engine failed"
    model: str | None = None
    sequences_in_flight: int | None = None
    reason: str | None = None  # why the engine failed


@get("/health", tags=["Server"], summary="Is the server up", sync_to_thread=False,
     responses={503: ResponseSpec(HealthStatus, description="Shutting down, or the engine has failed (reason)",
                                  generate_examples=False)})
def health(serving: NamedDependency[ServerState]) -> Response[HealthStatus]:
    if serving.admission.closed:
        return Response(HealthStatus("shutting down"), status_code=503)
    if serving.front.failure is not None:
        return Response(HealthStatus("engine failed", reason=serving.front.failure), status_code=503)
    return Response(HealthStatus("ok", serving.model_id, serving.admission.in_flight))
