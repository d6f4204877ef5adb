"""GET /metrics: Prometheus exposition of the app's own registry (web/metrics.py and the latency
histograms of web/accounting.py), in the format the scraper's Accept header asks for (the
classic text format by default, OpenMetrics on request). Needs the operator key when one is set."""

from __future__ import annotations

from litestar import Request, Response, get
from litestar.di import NamedDependency
from prometheus_client.exposition import choose_encoder

from ..auth import OPERATOR, requires
from ..openapi import documented
from ..state import ServerState


@get("/metrics", tags=["Server"], summary="Prometheus metrics", guards=[requires(OPERATOR)], sync_to_thread=False,
     media_type="text/plain", **documented((401, 500)))
def metrics(request: Request, serving: NamedDependency[ServerState]) -> Response[bytes]:
    # a sync handler on the event loop: engine counters are read from the loop's thread only
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(serving.registry), headers={"content-type": content_type})
