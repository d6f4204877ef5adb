"""What quantization costs the trained default model in quality, measured in one run on the
held-out Python (inference/heldout.py) through the project's engine, and written as JSON:

    python3 -m scripts.eval_quantization [MODEL_DIR] --out quant.json --threads 1

MODEL_DIR defaults to the embedded default model. The model is converted into an int8 and an
AWQ 4-bit workspace (`codellama convert --quant int8|awq`, AWQ calibrated on its default, the
held-out `email` package) in a temporary folder; then bits per byte of the other held-out
packages are measured for the unquantized weights (the reference), int8 weights, AWQ 4-bit and
an int8 KV cache, and greedy completions of held-out signatures under each are compared with the
reference's. The reference runs in the engine's dtype on the device: float32 on the CPU (the
checkpoint's bfloat16 weights, widened), bfloat16 on a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from inference import LLM, SamplingParams
from inference.heldout import completion_cases, held_out_files
from inference.model_info import read_metadata
from inference.model_source import default_model_dir
from inference.quality import WINDOW, bits_per_byte
from inference.quant.calibration import CALIBRATION_PACKAGE, is_calibration_file
from inference.workspace import convert

SEQS = 16  # requests in flight: the CPU runs best with a few
KV_BLOCKS = SEQS * -(-(WINDOW + 2) // 16)  # every request at its longest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="a Hugging Face model directory (default: the embedded default model)")
    parser.add_argument("--out", required=True, help="where to write the JSON")
    parser.add_argument("--bpb-files", type=int, default=12,
                        help="score this many held-out files, every n-th by name (0: all but the calibration package)")
    parser.add_argument("--prompts", type=int, default=32, help="held-out signatures completed greedily")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per greedy completion")
    parser.add_argument("--device", default=None, help="default: cuda when there is a GPU, else cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads (a busy CPU runs best with 1)")
    return parser.parse_args(argv)


def scored_files(count: int) -> list:
    """Held-out files not calibrated on: `count` of them spread over the names (0: all)."""
    files = [f for f in held_out_files() if not is_calibration_file(f)]
    return files[::max(1, len(files) // count)][:count] if count else files


def greedy_token_ids(llm: LLM, prompts: list[str], max_tokens: int) -> list[list[int]]:
    params = SamplingParams(max_tokens=max_tokens, temperature=0)
    return [list(out.outputs[0].token_ids) for out in llm.generate(prompts, params)]


def agreement(outputs: list[list[int]], reference: list[list[int]]) -> dict:
    """How many greedy outputs equal the reference's, and how many leading tokens they share."""
    shared = [next((i for i, (a, b) in enumerate(zip(o, r)) if a != b), min(len(o), len(r)))
              for o, r in zip(outputs, reference)]
    return {"equal": sum(o == r for o, r in zip(outputs, reference)), "of": len(reference),
            "mean_shared_prefix_tokens": round(sum(shared) / len(shared), 2)}


def measure(label: str, model_dir: Path, files: list, prompts: list[str], args: argparse.Namespace, log,
            **settings) -> dict:
    start = time.monotonic()
    llm = LLM(model_dir, device=args.device, max_num_seqs=SEQS, num_kv_blocks=KV_BLOCKS, **settings)
    config = llm.engine.config
    record = {"weights": config.weight_scheme.name if config.weight_scheme else "unquantized",
              "dtype": config.dtype, "kv_cache_dtype": str(llm.engine.runner.kv_cache.dtype).removeprefix("torch."),
              "bits_per_byte": bits_per_byte(llm, files),
              "greedy": greedy_token_ids(llm, prompts, args.max_tokens)}
    record["seconds"] = round(time.monotonic() - start, 1)
    log(f"{label}: {record['bits_per_byte']:.4f} bits per byte ({record['seconds']} s)")
    return record


def run(args: argparse.Namespace, log=print) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model_dir = Path(args.model) if args.model else default_model_dir()
    files = scored_files(args.bpb_files)
    prompts = [c.prompt for c in completion_cases(args.prompts, files=files)]
    converted: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for quant in ("int8", "awq"):
            start = time.monotonic()
            convert(model_dir, Path(tmp) / quant, quant=quant, progress=False)
            converted[quant] = round(time.monotonic() - start, 1)
            log(f"converted to {quant} in {converted[quant]} s")
        runs = {"reference": measure("reference", model_dir, files, prompts, args, log),
                "int8_weights": measure("int8 weights", Path(tmp) / "int8", files, prompts, args, log),
                "awq_4bit": measure("AWQ 4-bit", Path(tmp) / "awq", files, prompts, args, log),
                "int8_kv_cache": measure("int8 KV cache", model_dir, files, prompts, args, log,
                                         kv_cache_dtype="int8")}
    reference = runs["reference"]
    summary = {name: {"bits_per_byte": round(r["bits_per_byte"], 4),
                      "change": round(r["bits_per_byte"] / reference["bits_per_byte"] - 1, 5),
                      "greedy_vs_reference": agreement(r["greedy"], reference["greedy"])}
               for name, r in runs.items() if name != "reference"}
    result = {
        "date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "threads": torch.get_num_threads(), "model": str(model_dir), "metadata": read_metadata(model_dir),
        "reference": {"weights": reference["weights"], "dtype": reference["dtype"],
                      "bits_per_byte": round(reference["bits_per_byte"], 4)},
        "summary": summary,
        "held_out": {"calibration_package": CALIBRATION_PACKAGE, "scored_files": [f.name for f in files],
                     "scored_bytes": sum(len(f.text.encode()) for f in files), "window": WINDOW},
        "greedy": {"prompts": len(prompts), "max_tokens": args.max_tokens,
                   "what": "held-out signatures and docstrings (inference.heldout.completion_cases, seed 0)"},
        "convert_seconds": converted,
        "runs": {name: {k: v for k, v in r.items() if k != "greedy"} for name, r in runs.items()},
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    log(json.dumps(summary))
    return result


if __name__ == "__main__":
    run(parse_args(sys.argv[1:]))
