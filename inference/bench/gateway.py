"""`codellama bench gateway`: two replicas sharing one GPU, each with about half the KV cache one
replica would have (with `gpus=2`: one replica per GPU, each with a whole one's cache), behind
the SGLang Model Gateway; `cache_aware` against `round_robin` in the
same run (one gateway each, in front of the same replicas), over the shared-prefix workload of
web/prefix_benchmark.py; and the gateway's added latency against a replica reached directly.

Two workloads: a few long files, which fit in either replica's cache, and files enough for about
1.5 replicas' caches, where sending each file to one replica is what keeps it cached. Each
policy gets files of its own (the same number, lengths and request order), so neither finds the
other's files cached."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from .common import kv_bytes_per_token, random_model_dir, shape_config

POLICIES = ("cache_aware", "round_robin")
START_SECONDS = 900.0


def kv_blocks(shape: str, replicas: int, block_size: int = 16, overhead_gib: float = 4.0) -> int:
    """KV blocks per replica when `replicas` share a GPU like this one: 90 % of its free memory,
    less each replica's weights and an allowance for activations, CUDA graphs and CUDA context."""
    import torch

    cfg = shape_config(shape)
    free, _ = torch.cuda.mem_get_info()
    weights = 2 * _parameters(cfg)  # bf16
    per_replica = (0.9 * free - replicas * (weights + overhead_gib * 2**30)) / replicas
    return int(per_replica // (kv_bytes_per_token(cfg) * block_size))


def _parameters(cfg: dict) -> int:
    """A Llama model's parameters from its config (untied embeddings)."""
    hidden, inter = cfg["hidden_size"], cfg["intermediate_size"]
    kv = hidden * cfg["num_key_value_heads"] // cfg["num_attention_heads"]
    layer = hidden * (hidden + 2 * kv) + hidden * hidden + 3 * hidden * inter + 2 * hidden
    return cfg["num_hidden_layers"] * layer + 2 * cfg["vocab_size"] * hidden + hidden


def compare(model_dir: Path, model_args: list[str], devices: list[str | None], *, blocks: int, requests: int,
            file_tokens: int, concurrency: int, max_tokens: int, latency_pairs: int, echo: bool = False) -> dict:
    """Start the replicas (`codellama serve MODEL_DIR` with `model_args` and the flags every run
    shares) and one gateway per policy; run every workload under each policy."""
    import httpx

    from inference.tokenizer import Tokenizer
    from web import prefix_benchmark as bench
    from web.replicas.children import Gateway, Replica, free_port
    from web.replicas.supervisor import Cluster

    def gateway(urls: list[str], policy: str) -> Gateway:
        return Gateway(urls, "127.0.0.1", free_port("127.0.0.1"), policy, max_num_seqs=2 * concurrency,
                       name=f"gateway {policy}", echo=echo)

    sets = workloads(requests, file_tokens, blocks, concurrency)  # (checked before anything starts)
    serve_args = [str(model_dir), *model_args, "--num-kv-blocks", str(blocks), "--speculate", "off",
                  "--instance-num", str(2 * concurrency), "--max-queue", "100000"]
    tokenizer = Tokenizer(model_dir / "tokenizer.model")
    cluster = Cluster([Replica(i, serve_args, d, echo=echo) for i, d in enumerate(devices)])
    gateways: dict[str, Gateway] = {}
    try:
        cluster.start(lambda urls: gateway(urls, POLICIES[0]), threading.Event())
        urls = [r.url for r in cluster.replicas]
        gateways[POLICIES[0]] = cluster.gateway
        for policy in POLICIES[1:]:
            gateways[policy] = gateway(urls, policy)
            gateways[policy].start()
            gateways[policy].wait_ready(START_SECONDS)
        model = httpx.get(f"{urls[0]}/v1/models").json()["data"][0]["id"]

        def run_once(url: str, files: list[str], num_prompts: int, order_seed: int) -> dict:
            before = bench.replica_counters(urls)
            load = asyncio.run(bench.drive(url, bench.editor_prompts(files, num_prompts, order_seed),
                                           concurrency=concurrency, max_tokens=max_tokens, model=model))
            return {**load, "prefix_cache": bench.prefix_cache_use(before, bench.replica_counters(urls))}

        warm = bench.file_texts(tokenizer, 4, 256, seed=999)  # kernels and graphs warm on both replicas
        result = {"replicas": 2, "kv_blocks_per_replica": blocks, "block_size": 16, "concurrency": concurrency,
                  "max_tokens": max_tokens,
                  "warm_up": run_once(gateways["round_robin"].url, warm, 4 * concurrency, 999), "workloads": {}}
        for w, (name, spec) in enumerate(sets.items()):
            runs = {}
            for p, policy in enumerate(POLICIES):
                files = bench.file_texts(tokenizer, spec["files"], spec["file_tokens"], seed=100 * w + p)
                runs[policy] = run_once(gateways[policy].url, files, spec["requests"], order_seed=w)
            result["workloads"][name] = {**spec, **runs}
        result["gateway_latency"] = asyncio.run(bench.added_latency(gateways["round_robin"].url, urls[0],
                                                                    model=model, pairs=latency_pairs))
        return result
    finally:
        for policy in POLICIES[1:]:
            if policy in gateways:
                gateways[policy].signal_stop()
                gateways[policy].wait_stopped(5)
        cluster.stop(5)


def run(shape: str = "7b", *, requests: int = 1024, file_tokens: int = 3000, concurrency: int = 32,
        max_tokens: int = 16, latency_pairs: int = 100, gpus: int = 1) -> dict:
    if gpus not in (1, 2):
        raise ValueError(f"two replicas on 1 or 2 GPUs, not {gpus}")
    model_dir = random_model_dir(shape)
    blocks = kv_blocks(shape, replicas=3 - gpus)  # per GPU: two replicas on one, one on each of two
    result = compare(model_dir, ["--load-format", "random", "--max-model-len", "8192"],
                     ["0", "0"] if gpus == 1 else ["0", "1"], blocks=blocks, requests=requests, file_tokens=file_tokens,
                     concurrency=concurrency, max_tokens=max_tokens, latency_pairs=latency_pairs)
    return {"shape": shape, "gpus": gpus, **result}


def run_on_cpu(*, requests: int = 256, file_tokens: int = 600, blocks: int = 384, concurrency: int = 8,
               max_tokens: int = 8, latency_pairs: int = 50) -> dict:
    """The same comparison with two CPU replicas of the embedded default model (one torch thread
    each), its files sized for its 2,048 positions: the prefix-cache hit rates and the gateway's
    added latency need no GPU; TTFT here is a CPU's."""
    from inference.model_source import default_model_dir
    from inference.model_info import read_metadata

    model_dir = default_model_dir()
    result = compare(model_dir, ["--max-model-len", "2048", "--cpu-threads", "1"], [None, None], blocks=blocks,
                     requests=requests, file_tokens=file_tokens, concurrency=concurrency, max_tokens=max_tokens,
                     latency_pairs=latency_pairs)
    return {"model": read_metadata(model_dir)["model_name"], "gpus": 0, **result}


def workloads(requests: int, file_tokens: int, blocks: int, concurrency: int, replicas: int = 2) -> dict[str, dict]:
    """A few files that fit in either replica's cache, and files for about 1.5 replicas' caches. A
    cache's room is what the requests running on it leave (concurrency / replicas of them, a file
    each): files sized by the whole cache would not fit in it under either policy."""
    room = blocks * 16 - concurrency // replicas * file_tokens
    if room < 4 * file_tokens:
        raise ValueError(f"{blocks} KV blocks per replica leave room for fewer than 4 files of {file_tokens} tokens "
                         f"beside {concurrency // replicas} running requests: lower the concurrency (or, on the CPU, "
                         f"raise --kv-blocks)")
    cached_files = -(-int(1.5 * room) // file_tokens)
    return {"few_files": {"files": 8, "file_tokens": file_tokens, "requests": requests},
            "many_files": {"files": cached_files, "file_tokens": file_tokens, "requests": requests}}
