"""The `codellama` command. Each subcommand lives in its own module under
`inference.commands` (or `web.commands` for the HTTP ones) with `register(parser)` and
`run(args)`; heavy imports (torch, the web stack) happen inside `run`, so that a mistyped
argument is answered at once. LMDeploy's spellings of the commands are translated first
(see inference/commands/lmdeploy.py)."""

from __future__ import annotations

import argparse
import importlib
import sys

from .commands.lmdeploy import GuideFlagError, normalize_flags, translate

COMMANDS = {
    "generate": ("inference.commands.generate", "complete one prompt from the shell"),
    "chat": ("inference.commands.chat", "talk to a model in the console: completion, infilling, chat or python"),
    "convert": ("inference.commands.convert", "convert a Hugging Face checkpoint into a workspace"),
    "bench": ("inference.commands.bench", "measure speed on the GPU (random weights, real shapes)"),
    "serve": ("web.commands.serve", "run the OpenAI-compatible API server and the playground"),
    "client": ("web.commands.client", "talk to a running server from the console"),
}


class HelpFormatter(argparse.HelpFormatter):
    """Shows a metavar that spells out its own shape (`[MODEL] PROMPT`) as written, instead of
    argparse's `[MODEL] PROMPT [[MODEL] PROMPT ...]` for a list of arguments."""

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        if action.nargs == argparse.ONE_OR_MORE and isinstance(action.metavar, str) and " " in action.metavar:
            return action.metavar
        return super()._format_args(action, default_metavar)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codellama", description="Serve and talk to Code Llama models.",
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        mod = importlib.import_module(module)
        mod.register(cmd)
        cmd.set_defaults(_run=mod.run)
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def main(argv: list[str] | None = None) -> int:
    argv = translate(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    commands = _subcommands(parser)
    if argv and argv[0] in commands:
        try:
            argv = argv[:1] + normalize_flags(argv[1:], commands[argv[0]])
        except GuideFlagError as e:
            print(f"codellama {argv[0]}: {e}", file=sys.stderr)
            return 2
    args = parser.parse_args(argv)
    try:
        return args._run(args) or 0
    except (ValueError, FileNotFoundError) as e:
        print(f"codellama {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
