"""Reading one input from the console, in the convention of LMDeploy's Code Llama console: lines
until a line `!!`, so pasted code with blank lines stays one input. A first line that is a
command (`reset`, `exit`) counts at once."""

from __future__ import annotations

END_OF_INPUT = "!!"


def read_input(commands: tuple[str, ...] = ("reset", "exit"), prompt: str = ">>> ", more: str = "... ") -> str | None:
    """One input without its `!!` line; None at the end of input (Ctrl-D) with nothing typed.
    Ctrl-C (KeyboardInterrupt) propagates: the caller drops the lines typed so far."""
    lines: list[str] = []
    while True:
        try:
            line = input(more if lines else prompt)
        except EOFError:
            return "\n".join(lines) if lines else None
        if line.rstrip() == END_OF_INPUT:
            return "\n".join(lines)
        if not lines and line.strip() in commands:
            return line.strip()
        lines.append(line)
