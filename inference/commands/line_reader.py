"""Reading the console's input lines so that Ctrl-C always interrupts the wait.

Ctrl-C's SIGINT goes to any thread that does not block it, torch's worker threads included. A
main thread blocked in `input()` (or readline) is then not interrupted, and its
KeyboardInterrupt waits for the next Enter. Here the main thread waits in `select()` on stdin
and on the signal module's wakeup pipe, which the C signal handler writes to from whatever
thread it runs on, so the wait ends and the KeyboardInterrupt is raised at once. A terminal is
read through a non-blocking descriptor of its own: Ctrl-C also flushes the terminal's input, so
a line that select() saw can be gone by the time it is read. Line editing is the terminal's own
(canonical mode: backspace, Ctrl-U, Ctrl-W; Ctrl-D ends the input).
"""

from __future__ import annotations

import os
import select
import signal
import sys


class LineReader:
    def __init__(self, fd: int | None = None):
        self.fd = sys.stdin.fileno() if fd is None else fd
        self._pending = b""  # bytes read but not yet returned (a paste arrives in one read)
        self._eof = False

    def __enter__(self) -> "LineReader":
        self._read_fd = _own_nonblocking_descriptor(self.fd) if os.isatty(self.fd) else self.fd
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._previous = signal.set_wakeup_fd(self._wake_write, warn_on_full_buffer=False)
        return self

    def __exit__(self, *exc) -> None:
        signal.set_wakeup_fd(self._previous)
        for fd in (self._wake_read, self._wake_write) + ((self._read_fd,) if self._read_fd != self.fd else ()):
            os.close(fd)

    def read_line(self, prompt: str = "") -> str | None:
        """The next line without its line break; None at the end of the input."""
        if prompt:
            sys.stdout.write(prompt)
            sys.stdout.flush()
        while b"\n" not in self._pending and not self._eof:
            ready, _, _ = select.select([self._read_fd, self._wake_read], [], [])
            if self._wake_read in ready:  # a signal arrived: its handler runs as this returns
                while os.read(self._wake_read, 512) == 512:
                    pass
            if self._read_fd in ready:
                try:
                    chunk = os.read(self._read_fd, 1 << 16)
                except BlockingIOError:  # flushed by a Ctrl-C since select()
                    continue
                self._pending += chunk
                self._eof = not chunk
        if not self._pending:
            return None
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode("utf-8", errors="replace").removesuffix("\r")

    def discard(self) -> None:
        """Forget lines read ahead (the rest of a paste interrupted by Ctrl-C)."""
        self._pending = b""


def let_ctrl_c_interrupt() -> None:
    """Make Ctrl-C raise KeyboardInterrupt even if this process was started with SIGINT ignored
    (a background job of a script, some launchers): Python then installs no handler of its own,
    and a console whose Ctrl-C stops answers would have a Ctrl-C that does nothing."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _own_nonblocking_descriptor(tty_fd: int) -> int:
    """The terminal opened anew, so that O_NONBLOCK does not leak to the shell sharing it."""
    try:
        return os.open(os.ttyname(tty_fd), os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:  # no name to open it by: read it blocking, as input() would
        return tty_fd
