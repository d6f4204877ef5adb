"""A child that must not outlive its parent (a tensor-parallel worker blocked in an NCCL
collective, an engine process) dies when its parent is killed outright."""

import multiprocessing
import os
import signal
import time
from pathlib import Path

from inference.process_guard import die_with_parent


def _child(parent: int, guarded: bool, child_pid) -> None:
    if guarded:
        die_with_parent(parent)
    child_pid.value = os.getpid()  # (ready)
    time.sleep(600)  # as a worker waiting for a step that never comes


def _parent(guarded: bool, child_pid) -> None:
    multiprocessing.get_context("spawn").Process(target=_child, args=(os.getpid(), guarded, child_pid)).start()
    time.sleep(600)


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _orphan_survives(guarded: bool) -> bool:
    ctx = multiprocessing.get_context("spawn")
    child_pid = ctx.Value("i", 0)
    parent = ctx.Process(target=_parent, args=(guarded, child_pid))
    parent.start()
    while not child_pid.value:
        time.sleep(0.02)
    os.kill(parent.pid, signal.SIGKILL)
    parent.join()
    deadline = time.monotonic() + 10
    while _alive(child_pid.value) and time.monotonic() < deadline:
        time.sleep(0.02)
    survived = _alive(child_pid.value)
    if survived:
        os.kill(child_pid.value, signal.SIGKILL)
    return survived


def test_a_guarded_child_dies_with_its_parent_and_an_unguarded_one_does_not():
    assert not _orphan_survives(guarded=True)
    assert _orphan_survives(guarded=False)  # what the guard is for
