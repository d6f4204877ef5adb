"""The `codellama` command. Each subcommand lives in its own module under
`inference.commands` (or `web.commands` for the HTTP ones) with `register(parser)` and
`run(args)`; heavy imports (torch, the web stack) happen inside `run`."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "generate": ("inference.commands.generate", "complete one prompt from the shell"),
    "chat": ("inference.commands.chat", "talk to a model in the console: completion, infilling, chat or python"),
    "convert": ("inference.commands.convert", "convert a Hugging Face checkpoint into a workspace"),
    "bench": ("inference.commands.bench", "measure speed on the GPU (random weights, real shapes)"),
    "serve": ("web.commands.serve", "run the OpenAI-compatible API server"),
    "client": ("web.commands.client", "talk to a running server from the console"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codellama", description="Serve and talk to Code Llama models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        mod = importlib.import_module(module)
        mod.register(cmd)
        cmd.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args._run(args) or 0
    except (ValueError, FileNotFoundError) as e:
        print(f"codellama {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
