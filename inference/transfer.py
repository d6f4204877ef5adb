"""Host-to-device copies of a step's small inputs."""

from __future__ import annotations

import torch


def lists_to_device(lists: list[list], dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    """Several lists of numbers as tensors on `device`, in a single copy. On the GPU the copy
    comes from pinned memory, so it does not wait for the work already queued."""
    flat = torch.tensor([v for values in lists for v in values], dtype=dtype)
    if device.type == "cuda":
        flat = flat.pin_memory().to(device, non_blocking=True)
    return list(flat.split([len(values) for values in lists]))
