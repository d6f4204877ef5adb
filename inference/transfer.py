"""Host-to-device copies of a step's small inputs."""

from __future__ import annotations

import torch

_ALIGN = 16  # bytes: Triton specialises kernels on pointer alignment, so every part starts aligned


def lists_to_device(lists: list[list], dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    """Several lists of numbers as tensors on `device`, in a single copy. On the GPU the copy
    comes from pinned memory, so it does not wait for the work already queued."""
    per_align = _ALIGN // torch.empty((), dtype=dtype).element_size()
    padded = [-(-len(values) // per_align) * per_align for values in lists]
    flat_values = []
    for values, size in zip(lists, padded):
        flat_values.extend(values)
        flat_values.extend([0] * (size - len(values)))
    flat = torch.tensor(flat_values, dtype=dtype)
    if device.type == "cuda":
        flat = flat.pin_memory().to(device, non_blocking=True)
    return [part[:len(values)] for part, values in zip(flat.split(padded), lists)]
