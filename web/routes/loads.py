"""GET /v1/loads: the engine's load, in the schema the SGLang Model Gateway (`smg`) polls its
workers for (`WorkerLoadResponse`: one snapshot per data-parallel rank; this server is one rank).
The gateway's load-aware policies, and cache_aware's imbalance check, read `token_usage` from it;
without this route it sees only its own count of requests in flight. The gateway asks for
`?include=core,...`; the core section is all this server has, so it is always what it sends."""

from __future__ import annotations

import time

import msgspec
from litestar import get
from litestar.di import NamedDependency

from ..state import ServerState


class RankLoad(msgspec.Struct, kw_only=True):
    dp_rank: int = 0
    num_running_reqs: int  # sequences in the running batch
    num_waiting_reqs: int  # sequences waiting for a place in it
    num_total_reqs: int
    num_used_tokens: int  # KV-cache slots in use (whole blocks)
    max_total_num_tokens: int  # KV-cache slots in all
    token_usage: float  # num_used_tokens / max_total_num_tokens
    cache_hit_rate: float  # prompt tokens found in the prefix cache / looked up, since start
    max_running_requests: int  # the engine's max_num_seqs


class Loads(msgspec.Struct, kw_only=True):
    timestamp: str
    dp_rank_count: int
    loads: list[RankLoad]


@get("/v1/loads", tags=["Server"], summary="The engine's load (for the gateway)", sync_to_thread=False)
def loads(serving: NamedDependency[ServerState]) -> Loads:
    front = serving.front
    gauges = front.gauges()
    block_size, blocks = front.info.config.block_size, front.info.num_blocks
    rank = RankLoad(num_running_reqs=gauges.running, num_waiting_reqs=gauges.waiting,
                    num_total_reqs=gauges.running + gauges.waiting,
                    num_used_tokens=(blocks - gauges.free_blocks) * block_size,
                    max_total_num_tokens=blocks * block_size, token_usage=gauges.kv_usage,
                    cache_hit_rate=gauges.prefix_hits / gauges.prefix_queries if gauges.prefix_queries else 0.0,
                    max_running_requests=front.info.config.max_num_seqs)
    return Loads(timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), dp_rank_count=1, loads=[rank])
