"""Speculative decoding on the edit workload (edit_workload.py): each speculation mode against
`off` on the same requests, greedy, at several batch sizes, on a trained model.

What a pass measures, device-independent first:

    identical            requests whose tokens equal the `off` pass's (greedy: all of them)
    steps_per_token      forward passes per generated token, per sequence: the steps that gave
                         a sequence tokens over the tokens it got (1.0 without speculation)
    acceptance           accepted / drafted tokens
    accepted_per_draft   mean accepted length per verifying step (a sequence's draft in one step)
    engine_steps         forward passes of the whole batch
    seconds, output_tok_s   wall time on the device the engine runs on
    projected_ms         with a step-time table (`codellama bench verify`): the decoding steps'
                         time on the table's shape and card, each step priced at its decoding
                         sequences and drafted tokens (prefill left out: the same in every mode)

    rows = run(make_engine, requests_by_form, modes=("ngram", "suffix", "auto"), batch_sizes=(1, 8, 64))
    record = measure(model_dir, device="cpu")   # the same on a model directory, with its record
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import EngineConfig
from ..engine import LLMEngine
from ..model_info import read_metadata
from ..sampling_params import SamplingParams
from ..speculative import StepTimes
from ..tokenizer import Tokenizer
from .common import device_record
from .edit_workload import FORMS, MODES, EditRequest, edit_cases, edit_request


def run_pass(engine, requests: list[EditRequest]) -> dict:
    """Generate every request greedily on `engine` (up to its max_num_seqs at once); the
    tokens of each and the pass's counters."""
    for i, r in enumerate(requests):
        params = r.prompt.sampling_params(SamplingParams(max_tokens=r.max_tokens, temperature=0))
        engine.add(engine.make_request(str(i), r.prompt.token_ids, params, r.prompt.continues_prompt))
    before = _counters(engine)
    tokens = {str(i): [] for i in range(len(requests))}
    texts = dict.fromkeys(tokens, "")
    token_steps = dict.fromkeys(tokens, 0)
    step_log = []  # (sequences that decoded in the step, drafted tokens it verified)
    start = time.perf_counter()
    while engine.has_unfinished:
        drafted = engine.stats.draft_tokens
        decoding = 0
        for out in engine.step():
            gained = out.outputs[0].token_ids
            if gained:
                decoding += bool(tokens[out.request_id])  # its first token came with its prompt
                tokens[out.request_id] += gained
                texts[out.request_id] += out.outputs[0].text
                token_steps[out.request_id] += 1
        if decoding:
            step_log.append((decoding, engine.stats.draft_tokens - drafted))
    seconds = time.perf_counter() - start
    steps, drafted, accepted, drafts = (now - then for now, then in zip(_counters(engine), before))
    generated = sum(map(len, tokens.values()))
    ids = [str(i) for i in range(len(requests))]
    return {"tokens": [tokens[i] for i in ids], "texts": [texts[i] for i in ids], "generated": generated,
            "seconds": seconds, "output_tok_s": generated / seconds, "engine_steps": steps,
            "steps_per_token": sum(token_steps.values()) / generated, "drafted": drafted, "accepted": accepted,
            "drafts": drafts, "acceptance": accepted / drafted if drafted else None,
            "accepted_per_draft": accepted / drafts if drafts else None, "step_log": step_log}


def _counters(engine) -> tuple[int, int, int, int]:
    s = engine.stats
    return s.steps, s.draft_tokens, s.accepted_tokens, s.drafts


def projected_ms(step_log: list[tuple[int, int]], times: StepTimes) -> float:
    return sum(times.step_ms(decoding, drafted) for decoding, drafted in step_log)


def run(make_engine: Callable, requests_by_form: dict[str, list[EditRequest]], modes=MODES,
        batch_sizes=(1, 8, 64), step_times: StepTimes | None = None, require_identical: bool = True,
        on_row: Callable[[dict], None] = lambda row: None) -> list[dict]:
    """One row per (form, batch size, mode), `off` first. `make_engine(max_num_seqs=, speculate=)`
    builds a fresh engine (an empty suffix cache and prefix cache) for every pass. With
    `require_identical`, a speculative pass whose tokens differ from `off`'s raises."""
    rows = []
    for form, requests in requests_by_form.items():
        for batch in batch_sizes:
            base = None
            for mode in ("off", *modes):
                engine = make_engine(max_num_seqs=batch, speculate=mode)
                result = run_pass(engine, requests)
                del engine
                tokens, texts, log = result.pop("tokens"), result.pop("texts"), result.pop("step_log")
                if base is None:
                    base = result | {"tokens": tokens}
                    # answers that make exactly the edit asked for: the model's quality, not speculation's
                    exact = sum(t.rstrip() == r.expected.rstrip() for t, r in zip(texts, requests))
                identical = sum(a == b for a, b in zip(tokens, base["tokens"]))
                if require_identical and identical != len(requests):
                    raise AssertionError(f"{form}, batch {batch}, {mode}: {len(requests) - identical} of "
                                         f"{len(requests)} outputs differ from speculation off")
                row = {"form": form, "batch": batch, "mode": mode, "requests": len(requests),
                       "identical": identical, "exact_edits": exact, **result,
                       "engine_steps_vs_off": result["engine_steps"] / base["engine_steps"],
                       "wall_speedup_vs_off": base["seconds"] / result["seconds"]}
                if step_times is not None:
                    row["projected_ms"] = projected_ms(log, step_times)
                    base.setdefault("projected_ms", row["projected_ms"])
                    row["projected_speedup_vs_off"] = base["projected_ms"] / row["projected_ms"]
                rows.append(row)
                on_row(row)
    return rows



def measure(model: str | Path | None = None, device: str | None = None, dtype: str = "float32", cases: int = 64,
            batch_sizes=(1, 8, 64), modes=MODES, forms=FORMS, num_speculative_tokens: int = 5,
            step_times: StepTimes | None = None, require_identical: bool = True, seed: int = 0) -> dict:
    """The workload on a model directory (default: the embedded default model), every pass on a
    fresh engine with room for each sequence at full length (no preemption); float32 by
    default, so that verifying and decoding steps agree to rounding on a GPU too."""
    config = EngineConfig(model, device=device, dtype=dtype)
    model_dir, window, block = config.model_dir, config.max_model_len, config.block_size
    tokenizer, on_gpu = Tokenizer(model_dir / "tokenizer.model"), config.torch_device.type == "cuda"
    chosen = edit_cases(tokenizer, cases, seed, max_function_tokens=(window - 2 * ANSWER_ROOM) // 2)
    requests = {form: [edit_request(tokenizer, c, form) for c in chosen] for form in forms}
    longest = max(len(r.prompt.token_ids) + r.max_tokens for rs in requests.values() for r in rs)
    if longest > window:
        raise ValueError(f"a request needs {longest} positions, more than the model's {window}")

    def make_engine(max_num_seqs: int, speculate: str) -> LLMEngine:
        if on_gpu:
            torch.cuda.empty_cache()
        return LLMEngine(model_dir, device=config.device, dtype=dtype, max_num_seqs=max_num_seqs,
                         num_kv_blocks=max_num_seqs * -(-window // block), speculate=speculate,
                         num_speculative_tokens=num_speculative_tokens)

    rows = run(make_engine, requests, modes, batch_sizes, step_times, require_identical, on_row=_print_row)
    return {"benchmark": "edits", "device": device_record(on_gpu), "model": _model_record(model_dir),
            "dtype": dtype, "num_speculative_tokens": num_speculative_tokens,
            "step_times": step_times is not None, "cases": [c.name for c in chosen], "rows": rows}


ANSWER_ROOM = 96  # positions for the prompt's comment and the answer's slack


def _print_row(row: dict) -> None:
    drafts = f"acceptance {row['acceptance']:.3f}, {row['accepted_per_draft']:.2f} per draft" if row["drafts"] \
        else "nothing drafted"
    print(f"{row['form']:10s} batch {row['batch']:3d} {row['mode']:6s}: {row['steps_per_token']:.3f} steps/token, "
          f"{row['engine_steps']} steps ({row['engine_steps_vs_off']:.3f} of off), {drafts}, "
          f"{row['output_tok_s']:.1f} tok/s, identical {row['identical']}/{row['requests']}", flush=True)


def _model_record(model_dir: Path) -> dict:
    """Which weights were measured (the default model may be replaced by a fine-tuned one)."""
    digest = hashlib.sha256()
    for path in sorted(model_dir.glob("*.safetensors")):
        digest.update(path.read_bytes())
    meta = read_metadata(model_dir) or {}
    return {"dir": str(model_dir), "name": meta.get("model_name"), "date": meta.get("date"),
            "training": meta.get("training"), "weights_sha256": digest.hexdigest()}
