"""`codellama bench gateway --gpus 0`: the gateway comparison on two CPU replicas of the embedded
default model, each workload under each policy answered in full, the replicas' prefix-cache use
and the gateway's added latency recorded."""

import json

import pytest

from inference.bench.gateway import POLICIES, workloads
from inference.cli import main


def test_the_gateway_benchmark_runs_on_two_cpu_replicas(tmp_path):
    out = tmp_path / "gateway.json"
    assert main(["bench", "gateway", "--gpus", "0", "--num-prompts", "16", "--concurrency", "4",
                 "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    engine = record["engine"]
    assert record["device"]["card"] == "cpu" and engine["gpus"] == 0
    assert set(engine["workloads"]) == {"few_files", "many_files"}
    for workload in engine["workloads"].values():
        for policy in POLICIES:
            run = workload[policy]
            assert (run["requests"], run["errors"]) == (16, 0)
            replicas = run["prefix_cache"]["per_replica"]
            assert len(replicas) == 2 and sum(r["share_of_tokens"] for r in replicas) == pytest.approx(1, abs=1e-3)
    latency = engine["gateway_latency"]
    assert latency["pairs"] > 0 and 0 < latency["direct_p50_ms"] and 0 < latency["gateway_p50_ms"]


def test_the_many_files_workload_fits_two_caches_beside_the_running_requests():
    """1.5 caches' worth of files, a cache being what the requests running on it leave: 16 of
    32 streams hold 48,000 of a replica's 94,464 slots, so 24 files of 3,000 tokens."""
    sized = workloads(1024, 3000, 5904, 32)
    assert sized["many_files"]["files"] == 24 and sized["few_files"]["files"] == 8
    with pytest.raises(ValueError, match="lower the concurrency"):
        workloads(256, 600, 384, 32)  # 16 running requests of 600 tokens fill 384 blocks
