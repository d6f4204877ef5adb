"""Train the embedded default model, `codellama-tiny-python`, in one seeded command on one GPU:

    PYTHONUNBUFFERED=1 python3 -m scripts.train_default_model --out $OUT

1. data (scripts/default_model_data.py): the Python of this interpreter's standard library and
   of its permissively licensed distributions, deduplicated, without generated files or the
   held-out packages, turned by every core into Code Llama's training examples;
2. a Llama (transformers' `LlamaForCausalLM`: RoPE theta 1e6, GQA, tied embeddings) trained with
   bf16 autocast, through torch.compile on a GPU, on windows for `--train-seconds` (a wall-clock
   budget; the learning rate follows it), while the workers draw a second set of infilling
   splits; windows start at random tokens or, with `--windows examples`, at examples' starts
   (scripts/default_model_windows.py);
3. exported (scripts/default_model_export.py) as a Hugging Face directory, copied to
   $OUT/codellama-tiny-python (all but the unchanged tokenizer.model) before
4. the evaluation (scripts/eval_default_model.py) beside the seeded random model.

$OUT receives at most 8 files: the model's config.json, codellama.json, safetensors shards and
their index, manifest.json (sources, licences, counts), train.log and eval.json.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from inference.model_source import ASSETS, DEFAULT_MODEL_NAME
from inference.tokenizer import Tokenizer
from scripts import eval_default_model
from scripts.default_model_data import joined, prepare_corpus, tokenize_view, write_manifest
from scripts.default_model_export import PRESETS, export, model_config
from scripts.default_model_windows import WINDOW_POLICIES, answer_coverage, example_starts, window_offsets


TRAINING_SETTINGS = ("seed", "train_seconds", "preset", "batch_size", "seq_len", "lr", "min_lr_ratio", "warmup_steps",
                     "weight_decay", "max_source_mb", "windows", "compile")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="what comes back: model files, manifest, log, evaluation")
    p.add_argument("--work", default=None, help="scratch folder of the full model directory (default: a temporary one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-seconds", type=float, default=450, help="wall-clock budget of the training loop")
    p.add_argument("--total-seconds", type=float, default=585,
                   help="budget of the whole command: training ends early so that export and evaluation still fit")
    p.add_argument("--eval-seconds", type=float, default=90, help="time kept for export and evaluation")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default", help="model shape ('tiny': CPU check)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--windows", choices=WINDOW_POLICIES, default="random",
                   help="where training windows start: at random tokens (the shipped model's recipe) or at "
                        "examples' starts, so that an answer is trained with its whole prompt")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="train through torch.compile (default: on a GPU, where it trains 1.9x the tokens a second)")
    p.add_argument("--max-positions", type=int, default=2048, help="the config's max_position_embeddings")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--max-source-mb", type=float, default=None, help="use a seeded sample of this many MB of source")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch's CPU threads (a busy CPU runs best with 1)")
    p.add_argument("--log-seconds", type=float, default=10)
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--eval-args", default="", help="extra arguments of scripts/eval_default_model.py")
    args = p.parse_args(argv)
    if args.compile is None:
        args.compile = args.device.startswith("cuda")
    return args


class Log:
    """Progress to stdout (flushed, so a run's tail shows how it went) and to train.log."""

    def __init__(self, path: Path):
        self.path, self.start = path, time.monotonic()

    def __call__(self, message: str) -> None:
        line = f"[{time.monotonic() - self.start:6.1f}s] {message}"
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")


def learning_rate(args: argparse.Namespace, step: int, progress: float) -> float:
    """Linear warmup over steps, then a cosine over the wall-clock budget down to min_lr_ratio."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * cosine)


def to_device(tokens: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(tokens.astype(np.int32)).to(device)


def train(args: argparse.Namespace, config: dict, views: list[torch.Tensor], pending, log: Log):
    """The training loop on windows of the token views; `pending` (an AsyncResult of a further
    view, or None) joins the views when it is ready."""
    from transformers import LlamaConfig, LlamaForCausalLM

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in config.items() if k != "torch_dtype"}))
    model = model.float().to(device)  # fp32 master weights; on the GPU autocast computes in bf16
    params = sum(p.numel() for p in model.parameters())
    log(f"model: {params / 1e6:.2f} M parameters, {shape(config)}")
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": matrices, "weight_decay": args.weight_decay},
                                   {"params": vectors, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.95), fused=device.type == "cuda")
    gen = torch.Generator(device=device).manual_seed(args.seed)
    window = torch.arange(args.seq_len + 1, device=device)

    def loss_of(batch: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(input_ids=batch[:, :-1], use_cache=False).logits
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))

    if args.compile:  # fuses the norms, rotary, SiLU and the loss, and drops the per-layer Python; its compile
        loss_of = torch.compile(loss_of)  # time comes out of the training budget

    def view_starts(view: torch.Tensor) -> torch.Tensor | None:
        return example_starts(view, config["bos_token_id"], args.seq_len) if args.windows == "examples" else None

    starts = [view_starts(view) for view in views]
    step, tokens_seen, loss_sum, losses = 0, 0, torch.zeros((), device=device), 0
    start = last = time.monotonic()
    last_tokens = 0
    while (elapsed := time.monotonic() - start) < args.train_seconds:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(args, step, elapsed / args.train_seconds)
        data = views[step % len(views)]
        offsets = window_offsets(data, starts[step % len(views)], args.batch_size, args.seq_len, gen)
        batch = data[offsets[:, None] + window].long()
        loss = loss_of(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_sum += loss.detach()
        losses += 1
        step += 1
        tokens_seen += batch[:, 1:].numel()
        now = time.monotonic()
        if now - last >= args.log_seconds:
            log(f"step {step}  loss {loss_sum.item() / losses:.4f}  {(tokens_seen - last_tokens) / (now - last):,.0f} "
                f"tokens/s  lr {optimizer.param_groups[0]['lr']:.2e}  {tokens_seen / 1e6:.1f} M tokens  "
                f"{len(views)} view(s)")
            loss_sum.zero_()
            losses, last, last_tokens = 0, now, tokens_seen
        if pending is not None and pending.ready():
            views.append(to_device(joined(pending.get())[0], device))
            starts.append(view_starts(views[-1]))
            pending = None
            log(f"a second draw of the examples joined: {len(views[-1]) / 1e6:.1f} M tokens")
    log(f"trained {step} steps, {tokens_seen / 1e6:.1f} M tokens in {time.monotonic() - start:.0f} s")
    return model, {"steps": step, "tokens": tokens_seen, "parameters": params,
                   "seconds": round(time.monotonic() - start, 1)}


def shape(config: dict) -> str:
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")
    return ", ".join(f"{k} {config[k]}" for k in keys)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="default-model-"))
    log = Log(out / "train.log")
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = ASSETS / "tokenizer.model"
    log(f"python {sys.version.split()[0]}, torch {torch.__version__}, device {args.device}, {args.workers} workers")
    # workers run at a lower priority: while the GPU trains, they must not slow the loop feeding it
    with multiprocessing.get_context("spawn").Pool(args.workers, initializer=os.nice, initargs=(10,)) as pool:
        corpus = prepare_corpus(pool, args.seed, args.max_source_mb, log)
        results = tokenize_view(pool, corpus, str(tokenizer), view=0).get()
        tokens, stats = joined(results)
        write_manifest(out / "manifest.json", corpus, results, stats)
        log(f"examples: {dict(stats)}; {len(tokens) / 1e6:.1f} M tokens")
        del results
        pending = tokenize_view(pool, corpus, str(tokenizer), view=1)
        config = model_config(args.preset, 4096, args.max_positions)
        view = to_device(tokens, torch.device(args.device))
        middle_id = Tokenizer(str(tokenizer)).infill_id("middle")
        with_prompt, untrained = answer_coverage(view, config["bos_token_id"], middle_id, args.seq_len, args.windows)
        log(f"windows at {args.windows} positions: of the infilling answers' targets they train, {with_prompt:.1%} "
            f"have their whole prompt in the window; {untrained:.1%} of all answer targets lie beyond every window")
        left = args.total_seconds - args.eval_seconds - (time.monotonic() - log.start)
        if left < args.train_seconds:
            log(f"training for {left:.0f} s, not {args.train_seconds:.0f} s, to finish in {args.total_seconds:.0f} s")
            args.train_seconds = left
        model, training = train(args, config, [view], pending, log)
    model_dir = work / DEFAULT_MODEL_NAME
    shutil.rmtree(model_dir, ignore_errors=True)
    settings = {k: v for k, v in vars(args).items() if k in TRAINING_SETTINGS}
    files = export(model, config, model_dir, tokenizer, {**settings, **training})
    log(f"exported {', '.join(f'{f.name} ({f.stat().st_size / 2**20:.1f} MiB)' for f in files)}")
    returned = out / DEFAULT_MODEL_NAME
    shutil.rmtree(returned, ignore_errors=True)
    returned.mkdir()
    for f in model_dir.iterdir():
        if f.name != "tokenizer.model":  # the asset it was trained with, unchanged
            shutil.copyfile(f, returned / f.name)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if not args.no_eval:
        eval_args = eval_default_model.parse_args([str(model_dir), "--out", str(out / "eval.json"),
                                                   *args.eval_args.split()])
        eval_default_model.run(eval_args, log)
    log("done")


if __name__ == "__main__":
    main()
