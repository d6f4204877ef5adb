"""Child processes that cannot outlive their parent: a tensor-parallel worker waiting in a
collective, or an engine process, would otherwise linger after a parent killed with SIGKILL (which
cannot stop its children itself)."""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent exits (elsewhere: nothing); exit now if
    the parent is already gone."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not Linux
        return
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)
