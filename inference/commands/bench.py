"""`codellama bench latency|throughput|kernels|profile|serve|verify|gateway`: speed on random-weight models
of the real shapes; `codellama bench edits`: speculative decoding on the edit workload of a trained model
(the embedded default model unless --model), on a GPU or the CPU."""

from __future__ import annotations

import argparse


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    pass


# benchmark -> (what it measures, its options); every benchmark takes --shape and --out
BENCHMARKS = {
    "latency": "batch-1 decode tokens/s against the memory-bandwidth roofline, and the TTFT of long prompts",
    "throughput": "offline output tokens/s for many requests (fixed and mixed lengths)",
    "kernels": "the Triton kernels against the device's copy bandwidth",
    "profile": "a torch profile of decode steps: where a step's time goes",
    "serve": "streaming clients against the HTTP server (started here on the GPU, or --url: any running one)",
    "verify": "the step time of verifying 0-8 drafted tokens per sequence at batch 1-256 (the speculation "
              "cost model's table), and speculation off against on for repeated requests",
    "edits": "speculative decoding on held-out Python edits (completion and infill forms) with a trained model: "
             "each mode against off, greedy, at batch 1, 8, 64: identical outputs, acceptance, model steps per "
             "token (runs on the CPU too)",
    "gateway": "two replicas behind the SGLang Model Gateway on editor-like traffic: cache_aware against "
               "round_robin (prefix-cache hits, TTFT), and the gateway's added latency",
}


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", required=True, metavar="BENCHMARK")
    for name, text in BENCHMARKS.items():
        p = sub.add_parser(name, help=text, description=text, formatter_class=_Formatter)
        p.add_argument("--out", help="also write the JSON record here")
        if name == "edits":
            _edits_options(p)
            continue
        p.add_argument("--shape", choices=["7b", "13b", "34b", "70b"], default="7b",
                       help="the Code Llama shape of the random-weight model")
        if name in ("latency", "throughput"):
            p.add_argument("--baseline", action="store_true",
                           help="also time transformers' static-cache generate (compiles: minutes)")
        if name in ("throughput", "serve"):
            p.add_argument("--num-prompts", type=int, default=1000, help="requests to run")
        if name == "throughput":
            p.add_argument("--mixed-prompts", type=int, default=1000, help="requests of the mixed-length set (0: skip)")
            p.add_argument("--max-num-seqs", type=int, default=256, help="sequences batched together")
        if name == "latency":
            p.add_argument("--enforce-eager", action="store_true", help="without CUDA graphs")
        if name == "kernels":
            p.add_argument("--only", choices=["attention", "quant", "quant-sweeps"],
                           help="only the attention kernels, only the quantized-weight ones, or only the sweeps "
                                "of the quantized-weight kernels' tiles")
        if name == "profile":
            p.add_argument("--batch", type=int, default=1, help="decode batch size")
        if name == "serve":
            p.add_argument("--concurrency", type=int, default=256, help="concurrent streaming clients")
            p.add_argument("--url", help="drive this running server instead of starting one (needs no GPU here)")
            p.add_argument("--dp", type=int, default=1, help="N replicas behind the gateway (codellama serve --dp N)")
            p.add_argument("--tp", type=int, default=1, help="the server's tensor-parallel GPUs (codellama serve --tp)")
            p.add_argument("--speculate", choices=["auto", "ngram", "suffix", "off"], default="off",
                           help="the server's and the offline engine's speculative decoding (codellama serve --speculate)")
            p.add_argument("--speculative-step-times", metavar="FILE",
                           help="the cost model's table for --speculate: a `codellama bench verify --out` record")
        if name == "gateway":
            p.add_argument("--num-prompts", type=int, default=1024, help="requests of each workload and policy")
            p.add_argument("--concurrency", type=int, default=32,
                           help="concurrent streaming clients (more would overfill the halved KV caches)")
            p.add_argument("--gpus", type=int, choices=[0, 1, 2], default=1,
                           help="its two replicas share 1 GPU (half the KV cache each) or take one of 2; 0: two "
                                "CPU replicas of the embedded default model (hit rates and the gateway's latency)")
            p.add_argument("--kv-blocks", type=int, default=384,
                           help="with --gpus 0: each CPU replica's KV blocks (on a GPU: half of what fits)")
        if name == "verify":
            p.add_argument("--edits", action="store_true",
                           help="then the edit workload (bench edits) on the embedded default model on this GPU, "
                                "its drafts planned by the table just measured")
        if name not in ("kernels", "verify", "gateway"):
            p.add_argument("--quant", choices=["awq", "int8"],
                           help="random weights quantized: awq (4-bit, groups of 128) or int8 (per output channel)")
            p.add_argument("--kv-cache-dtype", choices=["auto", "int8"], default="auto", help="the KV cache's dtype")
            p.add_argument("--kv-cache-gib", type=float, metavar="GIB",
                           help="the KV cache's size in GiB, whatever its dtype (e.g. what a 24 GB card leaves); "
                                "default: what this GPU's memory allows")


def run(args: argparse.Namespace) -> int:
    import torch

    from inference.bench import common

    if args.what == "edits":
        return _run_edits(args)
    if args.what == "serve" and args.url:
        from inference.bench import serve
        common.write_json(args.out, {"benchmark": "serve", "engine": serve.run(args.shape, args.concurrency,
                                                                               args.num_prompts, url=args.url)})
        return 0
    if args.what == "gateway" and args.gpus == 0:
        from inference.bench import gateway
        common.write_json(args.out, {"benchmark": "gateway", "device": common.device_record(cuda=False),
                                     "engine": gateway.run_on_cpu(requests=args.num_prompts,
                                                                  concurrency=args.concurrency,
                                                                  blocks=args.kv_blocks)})
        return 0
    if not torch.cuda.is_available():
        raise ValueError("benchmarks need a CUDA GPU")
    record = {"benchmark": args.what, "device": common.device_record()}
    settings = {}
    if args.what not in ("kernels", "verify", "gateway"):  # the engine's settings, in every run of the others
        settings = dict(quantization=args.quant, kv_cache_dtype=args.kv_cache_dtype, kv_cache_gib=args.kv_cache_gib)
        record["weights"], record["kv_cache_dtype"] = args.quant or "bfloat16", args.kv_cache_dtype
        record["kv_cache_gib"] = args.kv_cache_gib
    if args.what == "serve":
        settings.update(speculate=args.speculate, speculative_step_times=args.speculative_step_times)
        record["speculate"] = args.speculate
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
    elif args.what == "verify":
        import json
        import tempfile

        from inference.bench import speculation, verify_steps
        record["verify"] = verify_steps.run(args.shape)
        common.write_json(args.out, record)  # kept should the end-to-end part not finish
        with tempfile.NamedTemporaryFile("w", suffix=".json") as table:
            json.dump(record, table)
            table.flush()
            record["speculation"] = speculation.run(lambda **kw: common.make_engine(args.shape, **kw), table.name)
        if args.edits:
            from inference.bench import edit_speculation
            from inference.speculative import StepTimes
            from inference.verify_graphs import MAX_BATCH
            common.write_json(args.out, record)
            times = StepTimes.from_record(record["verify"], verify_graph_batches=MAX_BATCH)
            record["edits"] = edit_speculation.measure(device="cuda", step_times=times,
                                                       require_identical=False)
    elif args.what == "profile":
        from inference.bench import profile
        record["profile"] = profile.run(args.shape, batch=args.batch, **settings)
    else:
        from inference.bench import kernels_bench
        record["kernels"] = kernels_bench.run(copy_bw, only=args.only)
    common.write_json(args.out, record)
    return 0


def _edits_options(p: argparse.ArgumentParser) -> None:
    from inference.bench.edit_workload import FORMS, MODES

    p.add_argument("--model", help="a trained model's directory (default: the embedded default model)")
    p.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="float32: verifying and decoding steps agree to rounding, so greedy outputs must be equal")
    p.add_argument("--cases", type=int, default=64, help="held-out functions, each edited once")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64], help="sequences decoded together")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="speculation modes beside off")
    p.add_argument("--forms", nargs="+", choices=FORMS, default=list(FORMS), help="request forms")
    p.add_argument("--num-speculative-tokens", type=int, default=5, help="the longest draft a step verifies")
    p.add_argument("--speculative-step-times", metavar="FILE",
                   help="a `bench verify --out FILE` record: drafts planned by its step times, and each pass's "
                        "decoding time projected onto its shape and card")
    p.add_argument("--cpu-threads", type=int, default=1, help="CPU: torch threads")
    p.add_argument("--allow-differences", action="store_true",
                   help="record outputs that differ from speculation off instead of failing (bfloat16)")


def _run_edits(args: argparse.Namespace) -> int:
    import torch

    from inference.bench import common, edit_speculation
    from inference.speculative import StepTimes
    from inference.verify_graphs import MAX_BATCH

    torch.set_num_threads(args.cpu_threads)
    # planned and projected as the GPU engine verifies: small batches from CUDA graphs
    times = StepTimes.load(args.speculative_step_times, MAX_BATCH) if args.speculative_step_times else None
    record = edit_speculation.measure(args.model, args.device, args.dtype, args.cases, tuple(args.batch_sizes),
                                      tuple(args.modes), tuple(args.forms), args.num_speculative_tokens, times,
                                      require_identical=not args.allow_differences)
    common.write_json(args.out, record)
    return 0
