"""`codellama bench gateway --gpus 0`: the gateway comparison on two CPU replicas of the embedded
default model, each workload under each policy answered in full, the replicas' prefix-cache use
and the gateway's added latency recorded."""

import json

import pytest

from inference.bench.gateway import POLICIES
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
