"""Programmatic dependent launch (Hopper and later) for the decode step's kernels.

A batch-1 decode step is a chain of short kernels, and each one's start (launch, blocks placed,
first loads in flight) used to wait for the one before it to finish. Launched with `launch_pdl`,
a kernel may start while the one before it still runs: every kernel here first lets the next one
launch (`gdc_launch_dependents`), then waits for the previous one to finish and its writes to be
visible (`gdc_wait`) before it reads or writes anything a kernel writes; the quantized GEMV streams
its first weight tile before waiting. Since each kernel waits for all of its predecessor, which
waited for its own, the order of every result is kept, also across kernels not launched this way
(cuBLAS, torch), which wait for the whole of theirs. Measured on an H200 (batch-1 7B decode, AWQ):
2.82 -> 2.70 ms per token; bf16, whose projections are cuBLAS's, unchanged (BENCHMARKS.md).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from .ptx import runs_ptx


def dependent_launch(t: torch.Tensor) -> bool:
    """Whether kernels working on t launch before their predecessor ends: an NVIDIA GPU of compute
    capability 9.0 or later (the instructions exist from sm_90 on)."""
    return runs_ptx(t) and _from_sm90(t.device.index)


@functools.cache  # a fact of the hardware, looked up once per device: prompts launch kernels eagerly
def _from_sm90(device_index: int) -> bool:
    return torch.cuda.get_device_capability(device_index)[0] >= 9


@triton.jit
def launch_next(PDL: tl.constexpr):
    """Let the next kernel launch now (it waits for this one before reading what it writes)."""
    if PDL:
        gdc_launch_dependents()


@triton.jit
def wait_for_previous(PDL: tl.constexpr):
    """Wait for the previous kernel to finish, its writes visible: before touching its results."""
    if PDL:
        gdc_wait()
