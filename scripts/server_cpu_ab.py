"""A/B of the server's host cost on a CPU: interleaved rounds of `codellama serve` from two or more
source trees, each driven by the same streaming load; per round, the CPU time (utime + stime) of
the server's HTTP process (and of its event loop's thread alone) and of its engine process per
1,000 streamed tokens, and the tokens/s. CPU time moves far less with other load on the machine
than tokens/s does.

    python -m scripts.server_cpu_ab --rounds 4 --out ab.json \\
        before=../old-checkout "now=.,--cpu-threads,2"

A tree is `name=path[,extra serve flags...]`, run as `python -m inference.cli serve` from `path`
(a checkout or a copy of one). The model is a tiny random Llama made once in a temporary folder,
so the engine's share is small and every tree can load it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path

from inference.model_source import ASSETS
from scripts.soak import children, start_server
from web.serve_benchmark import run_serve_benchmark

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, stat: str = "stat") -> float:
    """utime + stime of a process, or (stat="task/TID/stat") of one of its threads."""
    fields = Path(f"/proc/{pid}/{stat}").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def tiny_model(path: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=4096, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024)
    LlamaForCausalLM(config).save_pretrained(path)
    (path / "tokenizer.model").write_bytes((ASSETS / "tokenizer.model").read_bytes())
    return path


def one_round(model: Path, tree: str, extra: list[str], streams: int, requests: int, prompt_len: int,
              max_tokens: int, log: Path) -> dict:
    proc, url = start_server(str(model), ["--instance-num", str(streams), "--max-model-len", "512", *extra], log,
                             cwd=tree)
    try:
        engine = children(proc.pid)
        load = dict(concurrency=streams, prompt_len=prompt_len, max_tokens=max_tokens)
        asyncio.run(run_serve_benchmark(f"{url}/v1", num_requests=streams, seed=1, **load))  # warm up
        # the event loop is the server's main thread (its thread id is the process id)
        loop_stat = f"task/{proc.pid}/stat"
        before = cpu_seconds(proc.pid), sum(map(cpu_seconds, engine)), cpu_seconds(proc.pid, loop_stat)
        result = asyncio.run(run_serve_benchmark(f"{url}/v1", num_requests=requests, seed=0, **load))
        after = cpu_seconds(proc.pid), sum(map(cpu_seconds, engine)), cpu_seconds(proc.pid, loop_stat)
    finally:
        proc.terminate()
        proc.wait(30)
    tokens = requests * max_tokens
    return {"server_ms_per_1k_tokens": 1e6 * (after[0] - before[0]) / tokens,
            "event_loop_ms_per_1k_tokens": 1e6 * (after[2] - before[2]) / tokens,
            "engine_ms_per_1k_tokens": 1e6 * (after[1] - before[1]) / tokens,
            "output_tok_per_s": result["output_tok_per_s"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trees", nargs="+", metavar="NAME=PATH[,FLAGS]")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--streams", type=int, default=32)
    p.add_argument("--requests", type=int, default=96)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--out", help="also write the rounds here (JSON)")
    args = p.parse_args(argv)
    trees = {name: spec.split(",") for name, spec in (t.split("=", 1) for t in args.trees)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_model(Path(tmp) / "model")
        for i in range(args.rounds):
            for name, (path, *extra) in trees.items():
                rows.append({"round": i, "tree": name, **one_round(model, str(Path(path).resolve()), extra,
                                                                   args.streams, args.requests, args.prompt_len,
                                                                   args.max_tokens, Path(tmp) / f"{name}.log")})
                print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"trees": args.trees, "settings": vars(args), "rounds": rows}, indent=2))


if __name__ == "__main__":
    main()
