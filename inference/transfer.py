"""Host-to-device copies of a step's small inputs: several lists in one flat tensor, each part
starting 16-byte aligned (Triton specialises kernels on pointer alignment: an unaligned part
would compile a new kernel variant in mid-serving). Tensor-parallel ranks receive the flat
tensors and split them the same way."""

from __future__ import annotations

import torch

_ALIGN = 16  # bytes


def aligned_sizes(lengths: list[int], dtype: torch.dtype) -> list[int]:
    """The room each part takes in the flat tensor: its length rounded up to 16 bytes."""
    per_align = _ALIGN // torch.empty((), dtype=dtype).element_size()
    return [-(-n // per_align) * per_align for n in lengths]


def split_aligned(flat: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
    """The parts of a flat tensor laid out by `flat_to_device`, as views."""
    sizes = aligned_sizes(lengths, flat.dtype)
    return [part[:n] for part, n in zip(flat.split(sizes), lengths)]


def flat_to_device(lists: list[list], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Several lists of numbers in one tensor on `device`, in a single copy. On the GPU the copy
    comes from pinned memory, so it does not wait for the work already queued."""
    flat_values = []
    for values, size in zip(lists, aligned_sizes([len(v) for v in lists], dtype)):
        flat_values.extend(values)
        flat_values.extend([0] * (size - len(values)))
    flat = torch.tensor(flat_values, dtype=dtype)
    if device.type == "cuda":
        flat = flat.pin_memory().to(device, non_blocking=True)
    return flat


def lists_to_device(lists: list[list], dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    return split_aligned(flat_to_device(lists, dtype, device), [len(v) for v in lists])
