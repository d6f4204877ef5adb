"""`codellama chat [MODEL] --cap completion|infilling|chat|python`: talk to a model in the console.

An input is every line up to a line `!!`, so pasted code with blank lines arrives whole; `reset`
or `exit` alone on the first line are commands. Piped input may end without `!!`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..model_info import ABILITIES
from ..prompts import DEFAULT_SYSTEM
from .line_reader import LineReader, let_ctrl_c_interrupt
from .options import (add_engine_options, add_model_identity_options, add_sampling_options, engine_cpu_threads,
                      engine_kwargs, sampling_kwargs, use_cpu_threads)

if TYPE_CHECKING:
    from ..session import Session

END_OF_INPUT = "!!"
COMMANDS = ("exit", "reset")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", metavar="MODEL",
                        help="a workspace or Hugging Face directory (default: the embedded model)")
    parser.add_argument("--cap", choices=ABILITIES,
                        help="the ability to use (default: chat if the model has it, else completion)")
    parser.add_argument("--sys-instruct", "--meta-instruct", default=DEFAULT_SYSTEM, metavar="TEXT",
                        help=f"chat: the system instruction (default {DEFAULT_SYSTEM!r}; '' for none; "
                             f"--meta-instruct is LMDeploy's newer name)")
    parser.add_argument("--suffix-first", action="store_true", help="infilling: suffix-prefix-middle order")
    parser.add_argument("--stop-at-top-level", action=argparse.BooleanOptionalAction,
                        help="completion / python: stop at a new top-level statement (default: on for python)")
    add_model_identity_options(parser)
    add_engine_options(parser, max_num_seqs=1, max_num_seqs_help="sequences batched together (one answer at a time)")
    add_sampling_options(parser)


def run(args: argparse.Namespace) -> int:
    kwargs = engine_kwargs(args, args.model)
    from .. import LLMEngine, SamplingParams
    from ..session import Session

    use_cpu_threads(engine_cpu_threads(args))
    engine = LLMEngine(args.model, model_name=args.model_name, capabilities=args.capabilities, **kwargs)
    ability = args.cap or ("chat" if "chat" in engine.model_info.capabilities else "completion")
    top_level = args.stop_at_top_level if args.stop_at_top_level is not None else ability == "python"
    session = Session(engine, ability, SamplingParams(**sampling_kwargs(args)), system=args.sys_instruct,
                      suffix_first=args.suffix_first, stop_at_top_level=top_level)
    interactive = sys.stdin.isatty()
    if interactive:
        let_ctrl_c_interrupt()
        hint = " Put <FILL> where the code should go." if ability == "infilling" else ""
        print(f"{engine.model_info.name}: {ability}. End an input with a line {END_OF_INPUT}.{hint} "
              f"'reset' starts over, 'exit' or Ctrl-D quits, Ctrl-C stops an answer.")
    with LineReader() as reader:
        for text in _inputs(reader, interactive):
            if text == "exit":
                break
            if text == "reset":
                session.reset()
                print("(history cleared)")
                continue
            _answer(session, text)
    return 0


def _inputs(reader: LineReader, interactive: bool) -> Iterator[str]:
    """Each input in turn; Ctrl-C while typing discards the input being typed."""
    while True:
        try:
            text = _read_input(reader, interactive)
        except KeyboardInterrupt:
            reader.discard()
            print()
            continue
        if text is None:
            return
        yield text


def _read_input(reader: LineReader, interactive: bool) -> str | None:
    """Lines up to a line `!!` (a command alone on the first line needs none); None at the end
    of the input. At the end of piped input, lines not yet ended by `!!` still count."""
    lines: list[str] = []
    while True:
        line = reader.read_line((">>> " if not lines else "... ") if interactive else "")
        if line is None:
            if interactive:
                print()
            return "\n".join(lines) if lines and not interactive else None
        if line.strip() == END_OF_INPUT:
            return "\n".join(lines)
        if not lines and line.strip() in COMMANDS:
            return line.strip()
        lines.append(line)


def _answer(session: Session, text: str) -> None:
    def write(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    try:
        with _interrupt_flag() as interrupted:
            answer = session.ask(text, write, interrupted)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return
    print()
    if answer.finish_reason == "abort":
        print("[stopped]")
    elif answer.finish_reason == "length":
        print("[max tokens reached]", file=sys.stderr)
    if answer.full_text is not None and answer.finish_reason != "abort":
        print(f"--- filled code ---\n{answer.full_text}")


@contextmanager
def _interrupt_flag() -> Iterator[Callable[[], bool]]:
    """While generating, Ctrl-C only raises a flag that the step loop checks, so an answer stops
    between two steps, never inside one."""
    flag = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: flag.set())
    try:
        yield flag.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
