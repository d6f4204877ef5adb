"""Evaluate a model on the held-out Python (inference/heldout.py) through the project's engine,
beside the seeded random model, and write the figures as JSON:

    python3 -m scripts.eval_default_model [MODEL_DIR] --out eval.json

MODEL_DIR defaults to the embedded default model. Figures (inference/quality.py): bits per byte
of the held-out files, single-line infilling exact match, completions that parse, chat answers
that define a function; all greedy, on CPU or GPU.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

from inference import LLM
from inference.heldout import HELD_OUT_PACKAGES, chat_cases, completion_cases, held_out_files, infill_cases
from inference.model_info import read_metadata
from inference.model_source import default_model_dir, random_baseline_dir
from inference.quality import (WINDOW, bits_per_byte, chat_answers_with_a_function, completions_that_parse,
                               infill_exact_match)

INFILL_TOKENS, COMPLETION_TOKENS, CHAT_TOKENS = 64, 256, 384


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="a model directory (default: the embedded default model)")
    parser.add_argument("--out", required=True, help="where to write the JSON")
    parser.add_argument("--infill-cases", type=int, default=400)
    parser.add_argument("--completion-cases", type=int, default=200)
    parser.add_argument("--chat-cases", type=int, default=200)
    parser.add_argument("--bpb-files", type=int, default=None,
                        help="score only this many held-out files (every n-th by name; default: all)")
    parser.add_argument("--seed", type=int, default=0, help="draws the evaluation cases")
    parser.add_argument("--no-baseline", action="store_true", help="skip the seeded random model")
    parser.add_argument("--device", default=None)
    parser.add_argument("--max-num-seqs", type=int, default=None, help="default: 256 on a GPU, 64 on the CPU")
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads (a busy CPU runs best with 1)")
    return parser.parse_args(argv)


def evaluate(model_dir: Path, args: argparse.Namespace, log=print) -> dict:
    """Every figure for one model, with its name and the seconds it took."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    seqs = args.max_num_seqs or (256 if device.startswith("cuda") else 64)
    blocks = seqs * math.ceil((WINDOW + 2 + CHAT_TOKENS) / 16)  # every sequence at its longest
    start = time.monotonic()
    llm = LLM(model_dir, device=device, max_num_seqs=seqs, num_kv_blocks=blocks)
    files = held_out_files()
    if args.bpb_files:
        files = files[::max(1, len(files) // args.bpb_files)][:args.bpb_files]
    record = {"path": str(model_dir), "name": llm.engine.model_info.name, "device": device,
              "dtype": llm.engine.config.dtype}
    record["bits_per_byte"] = bits_per_byte(llm, files)
    record["bits_per_byte_files"] = len(files)
    log(f"{record['name']}: {record['bits_per_byte']:.3f} bits per byte")
    record["infilling"] = infill_exact_match(llm, infill_cases(args.infill_cases, args.seed), INFILL_TOKENS)
    log(f"{record['name']}: infilling exact match {record['infilling']['exact_match']:.3f}")
    record["completion"] = completions_that_parse(llm, completion_cases(args.completion_cases, args.seed),
                                                  COMPLETION_TOKENS)
    log(f"{record['name']}: completions that parse {record['completion']['parse_rate']:.3f}")
    record["chat"] = chat_answers_with_a_function(llm, chat_cases(args.chat_cases, args.seed), CHAT_TOKENS)
    log(f"{record['name']}: chat answers with a function {record['chat']['function_rate']:.3f}")
    record["seconds"] = round(time.monotonic() - start, 1)
    del llm
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return record


def summary(models: dict[str, dict]) -> dict:
    """Each headline figure, model beside model."""
    figures = {"bits_per_byte": lambda r: r["bits_per_byte"],
               "infill_exact_match": lambda r: r["infilling"]["exact_match"],
               "completions_that_parse": lambda r: r["completion"]["parse_rate"],
               "chat_answers_with_a_function": lambda r: r["chat"]["function_rate"]}
    return {name: {which: round(get(r), 4) for which, r in models.items()} for name, get in figures.items()}


def run(args: argparse.Namespace, log=print) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = Path(args.model) if args.model else default_model_dir()
    files = held_out_files()
    models = {"model": evaluate(model_dir, args, log)}
    if not args.no_baseline:
        models["random"] = evaluate(random_baseline_dir(), args, log)
    result = {
        "date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "torch": torch.__version__,
        "card": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "metadata": read_metadata(model_dir),
        "held_out": {"packages": list(HELD_OUT_PACKAGES), "files": len(files),
                     "bytes": sum(len(f.text.encode()) for f in files)},
        "settings": {"window": WINDOW, "seed": args.seed, "max_tokens": {
            "infilling": INFILL_TOKENS, "completion": COMPLETION_TOKENS, "chat": CHAT_TOKENS}},
        "summary": summary(models), "models": models,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    log(json.dumps(result["summary"]))
    return result


if __name__ == "__main__":
    run(parse_args(sys.argv[1:]))
