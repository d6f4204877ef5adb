"""`codellama client URL`: talk to a running `codellama serve` from the console, streaming.

End an input with a line `!!`; `reset` forgets the conversation, `exit` or Ctrl-D quits, Ctrl-C
stops the answer being written (or drops the input being typed)."""

from __future__ import annotations

import argparse
import sys

from inference.commands.line_reader import let_ctrl_c_interrupt
from inference.commands.options import add_sampling_options, sampling_kwargs

CAPS = ("chat", "completion", "infilling", "python")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL", help="the server, e.g. http://127.0.0.1:23333 (or 127.0.0.1:23333)")
    parser.add_argument("--api-key", help="sent as `Authorization: Bearer KEY`")
    parser.add_argument("--cap", choices=CAPS,
                        help="what to ask for (default: chat when the model can, else completion)")
    parser.add_argument("--sys-instruct", "--meta-instruct",
                        help='chat: the system instruction (default "Provide answers in Python"; \'\' for none)')
    add_sampling_options(parser)


def run(args: argparse.Namespace) -> int:
    import httpx

    from web.console_client import DEFAULT_SYSTEM, ConsoleClient, ServerError
    from web.line_input import read_input

    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    client = ConsoleClient(args.url, sys.stdout, args.api_key, sampling_kwargs(args))
    try:
        card = client.model()
    except (httpx.HTTPError, ServerError) as e:
        raise ValueError(f"cannot reach a server at {client.url}: {e}") from None
    cap = args.cap or ("chat" if "chat" in card["capabilities"] else "completion")
    system = args.sys_instruct if args.sys_instruct is not None else DEFAULT_SYSTEM
    ask = {"chat": lambda text: client.chat(text, system), "completion": client.complete,
           "infilling": client.infill, "python": client.python}[cap]
    interactive = sys.stdin.isatty()
    if interactive:  # piped input gets answers only, as `codellama chat` does
        let_ctrl_c_interrupt()
        print(f"{card['id']} at {client.url} ({cap}). End your input with a line !!; "
              f"'reset' starts over, 'exit' or Ctrl-D quits, Ctrl-C stops an answer.", flush=True)
    try:
        while True:
            try:
                text = read_input() if interactive else read_input(prompt="", more="")
            except KeyboardInterrupt:
                print()
                continue
            if text is None or text == "exit":
                return 0
            if text == "reset":
                client.reset()
                print("[conversation reset]", flush=True)
                continue
            if not text.strip():
                continue
            try:
                ask(text)
            except KeyboardInterrupt:
                print("\n[stopped]", flush=True)
            except (ServerError, ValueError) as e:
                print(f"error: {e}", flush=True)
            except httpx.HTTPError as e:
                print(f"error: the connection failed: {e}", flush=True)
    finally:
        client.close()
