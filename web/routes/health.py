"""GET /health: 200 while serving, 503 once shutdown has begun or the engine has failed (for load
balancers)."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency

from ..state import ServerState


@get("/health", tags=["Server"], summary="Is the server up", sync_to_thread=False)
def health(serving: NamedDependency[ServerState]) -> Response[dict]:
    if serving.admission.closed:
        return Response({"status": "shutting down"}, status_code=503)
    if serving.front.failure is not None:
        return Response({"status": "engine failed", "reason": serving.front.failure}, status_code=503)
    return Response({"status": "ok", "model": serving.model_id, "sequences_in_flight": serving.admission.in_flight})
