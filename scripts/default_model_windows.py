"""Where the default model's training windows start in the stream of examples, and how much of
each example's prompt they keep.

The examples (scripts/default_model_examples.py) are concatenated, each opening with BOS, and are
about as long as a window (a median of ~840 tokens against 1,024). A window that starts at a random
token usually cuts into an example: its answer is then trained without the start of its prompt
(an infilling middle without its ▁<PRE> and part of its prefix or suffix). Windows that start at
an example's BOS keep every example that begins inside them whole up to the window's end.

    starts = example_starts(data, bos_id, 1024)
    offsets = window_offsets(data, starts, 64, 1024, generator)   # None for starts: at random tokens
"""

from __future__ import annotations

import torch

WINDOW_POLICIES = ("random", "examples")


def example_starts(data: torch.Tensor, bos_id: int, seq_len: int) -> torch.Tensor:
    """The positions of the examples' BOS from which a whole window (seq_len + 1 tokens) fits."""
    starts = torch.nonzero(data == bos_id).flatten()
    return starts[starts < len(data) - seq_len - 1]


def window_offsets(data: torch.Tensor, starts: torch.Tensor | None, batch_size: int, seq_len: int,
                   generator: torch.Generator) -> torch.Tensor:
    """A batch's window offsets: at uniform tokens (starts None), or at uniformly drawn example starts."""
    if starts is None:
        return torch.randint(0, len(data) - seq_len - 1, (batch_size,), device=data.device, generator=generator)
    return starts[torch.randint(0, len(starts), (batch_size,), device=data.device, generator=generator)]


def answer_coverage(data: torch.Tensor, bos_id: int, middle_id: int, seq_len: int, policy: str) -> tuple[float, float]:
    """What windows of `policy` make of the infilling answers (the targets after an example's
    ▁<MID>): (the share of the answer targets they train that have the whole prompt, the example's
    BOS, inside the window; the share of answer targets they never train).

    A target p tokens past its BOS lies in seq_len random windows, of which seq_len + 1 - p hold
    the BOS; every window at an example start holds the BOS of each target it trains, and none
    reaches a target more than seq_len tokens past its BOS."""
    index = torch.arange(len(data), device=data.device)
    bos = torch.where(data == bos_id, index, -1).cummax(0).values  # each token's example start
    mid = torch.where(data == middle_id, index, -1).cummax(0).values
    answer = (mid >= bos) & (bos >= 0) & (data != middle_id)
    past = (index - bos)[answer].double()
    if not len(past):
        return 1.0, 0.0
    if policy == "random":
        return ((seq_len + 1 - past) / seq_len).clamp(0, 1).mean().item(), 0.0
    return 1.0, (past > seq_len).double().mean().item()
