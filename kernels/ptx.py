"""Where the kernels' inline PTX runs."""

import torch


def runs_ptx(t: torch.Tensor) -> bool:
    """Whether kernels on t compile for an NVIDIA GPU, where inline PTX runs (not under Triton's
    interpreter, whose tensors are on the CPU, nor on another vendor's GPU)."""
    return t.is_cuda and torch.version.cuda is not None
