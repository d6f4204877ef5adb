"""`codellama generate [MODEL] PROMPT`: stream one completion to stdout."""

from __future__ import annotations

import argparse
import sys

from .options import (add_engine_options, add_sampling_options, engine_cpu_threads, engine_kwargs, sampling_kwargs,
                      use_cpu_threads)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="+", metavar="[MODEL] PROMPT",
                        help="a model directory (default: the embedded model) and the prompt; '-' reads stdin")
    add_engine_options(parser, max_num_seqs=1, max_num_seqs_help="sequences batched together (one answer here)")
    add_sampling_options(parser)


def run(args: argparse.Namespace) -> int:
    if len(args.args) > 2:
        raise ValueError("expected [MODEL] PROMPT; quote a prompt that has spaces")
    model, prompt = (None, args.args[0]) if len(args.args) == 1 else args.args
    if prompt == "-":
        prompt = sys.stdin.read()
    kwargs = engine_kwargs(args, model)
    from inference import LLMEngine, SamplingParams

    use_cpu_threads(engine_cpu_threads(args))
    engine = LLMEngine(model, **kwargs)
    params = SamplingParams(**sampling_kwargs(args))
    engine.add_request("cli", prompt, params)
    sys.stdout.write(prompt)
    reason = None
    while engine.has_unfinished:
        for out in engine.step():
            sys.stdout.write(out.outputs[0].text)
            sys.stdout.flush()
            reason = out.outputs[0].finish_reason or reason
    sys.stdout.write("\n")
    print(f"[finish: {reason}]", file=sys.stderr)
    return 0
