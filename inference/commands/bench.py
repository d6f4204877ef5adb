"""`codellama bench latency|throughput|kernels|profile|serve|gateway`: speed on random-weight models
of the real shapes."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["latency", "throughput", "kernels", "profile", "serve", "gateway"])
    parser.add_argument("--shape", choices=["7b", "13b", "34b", "70b"], default="7b")
    parser.add_argument("--out", help="also write the JSON record here")
    parser.add_argument("--baseline", action="store_true",
                        help="also time transformers' static-cache generate (compiles: minutes)")
    parser.add_argument("--num-prompts", type=int, default=1000)
    parser.add_argument("--mixed-prompts", type=int, default=1000, help="requests of the mixed-length set (0: skip)")
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--enforce-eager", action="store_true", help="latency without CUDA graphs")
    parser.add_argument("--batch", type=int, default=1, help="profile: decode batch size")
    parser.add_argument("--concurrency", type=int, default=256, help="serve: concurrent streaming clients")
    parser.add_argument("--url", help="serve: drive this running server instead of starting one")
    parser.add_argument("--quant", choices=["awq", "int8"],
                        help="random weights quantized: awq (4-bit, groups of 128) or int8 (per output channel)")
    parser.add_argument("--kv-cache-dtype", choices=["auto", "int8"], default="auto", help="the KV cache's dtype")
    parser.add_argument("--dp", type=int, default=1,
                        help="serve: N replicas behind the gateway (codellama serve --dp N), each on --tp GPUs")
    parser.add_argument("--tp", type=int, default=1, help="serve: the server's tensor-parallel GPUs (codellama serve --tp)")
    parser.add_argument("--gpus", type=int, choices=[1, 2], default=1,
                        help="gateway: its two replicas share 1 GPU (half the KV cache each) or take one of 2")


def run(args: argparse.Namespace) -> int:
    import torch

    from inference.bench import common

    if args.what == "serve" and args.url:
        from inference.bench import serve
        common.write_json(args.out, {"benchmark": "serve", "engine": serve.run(args.shape, args.concurrency,
                                                                               args.num_prompts, url=args.url)})
        return 0
    if not torch.cuda.is_available():
        raise ValueError("benchmarks need a CUDA GPU")
    record = {"benchmark": args.what, "device": common.device_record()}
    settings = dict(quantization=args.quant, kv_cache_dtype=args.kv_cache_dtype)  # the engine's, in every run
    if args.what != "kernels":
        record["weights"], record["kv_cache_dtype"] = args.quant or "bfloat16", args.kv_cache_dtype
    copy_bw = common.copy_bandwidth()
    record["copy_bandwidth_tb_s"] = copy_bw / 1e12
    if args.what == "latency":
        from inference.bench import latency
        record["engine"] = latency.run(args.shape, copy_bw=copy_bw, enforce_eager=args.enforce_eager, **settings)
        if args.baseline:
            from inference.bench import hf_baseline
            common.write_json(args.out, record)  # kept should the baseline's compilation not finish
            record["baseline"] = hf_baseline.run(args.shape, batches=(1,))
    elif args.what == "throughput":
        from inference.bench import throughput
        record["engine"] = throughput.run(args.shape, args.num_prompts, mixed_prompts=args.mixed_prompts,
                                          max_num_seqs=args.max_num_seqs, **settings)
        if args.baseline:
            from inference.bench import hf_baseline
            common.write_json(args.out, record)
            record["baseline"] = hf_baseline.run(args.shape, batches=(32,), prompt_len=128, new_tokens=128)
    elif args.what == "serve":
        from inference.bench import serve
        record["engine"] = serve.run(args.shape, args.concurrency, args.num_prompts, dp=args.dp, tp=args.tp,
                                     **settings)
    elif args.what == "gateway":  # two replicas behind smg: cache_aware against round_robin
        from inference.bench import gateway
        record["engine"] = gateway.run(args.shape, requests=args.num_prompts, concurrency=args.concurrency,
                                       gpus=args.gpus)
    elif args.what == "profile":
        from inference.bench import profile
        record["profile"] = profile.run(args.shape, batch=args.batch, **settings)
    else:
        from inference.bench import kernels_bench
        record["kernels"] = kernels_bench.run(copy_bw)
    common.write_json(args.out, record)
    return 0
