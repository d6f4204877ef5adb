"""Verifying drafts: how many drafted tokens the target model accepts, and the token after them.

A sequence with draft d[0..k-1] is scored in k + 1 rows (its last token, then each draft token):
row j holds the target's logits for output position base + j, given d[0..j-1]. Each row is
sampled exactly as plain decoding samples that position: the same temperature, top-k, top-p,
min-p, penalties counting d[0..j-1] as output, and the same exponential noise keyed by
(seed, position). Draft token j is accepted while it equals row j's sample; the first row whose
sample differs (or row k, when all are accepted) gives the token after the accepted ones.

That is the standard speculative-sampling rule for a deterministic draft q = δ(x). The sampler's
exponential race picks x with probability p(x): accepted with probability min(1, p(x)/q(x)).
When it picks another token y, y is distributed as p with x removed, renormalised: the residual
norm(max(p − q, 0)). And since the rule draws on the very noise plain decoding draws on at that
position, its output is not only equal in distribution: it is, token for token, what the same
request (same seed) generates without speculation, greedy or sampled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from ..sampler import SamplerOutput, SamplingTensors, sample
from ..transfer import lists_to_device

T = TypeVar("T")


@dataclass(slots=True)
class Verification:
    rows: SamplerOutput  # every verifying row's sample (and logprobs), sequence by sequence
    num_accepted: torch.Tensor  # [B] int64: draft tokens accepted per sequence
    next_tokens: torch.Tensor  # [B] int64: the token after the accepted ones (the last one emitted)


def verify(logits: torch.Tensor, t: SamplingTensors, drafts: Sequence[Sequence[int]]) -> Verification:
    """logits: [sum(len(d) + 1), vocab], the verifying rows of each sequence in turn. `t` is built
    as for a plain decode step of the same sequences (`positions`: the output position each
    samples next). Runs on the logits' device without waiting for it."""
    owner, offset, proposed, starts, count_rows, count_tokens = [], [], [], [], [], []
    for i, draft in enumerate(drafts):
        first = len(owner)
        starts.append(first)
        owner.extend([i] * (len(draft) + 1))
        offset.extend(range(len(draft) + 1))
        proposed.extend(draft)
        proposed.append(-1)  # the last row of a sequence has no draft token: it never matches
        for j, token in enumerate(draft):  # token j is output in the rows after it
            count_rows.extend(range(first + j + 1, first + len(draft) + 1))
            count_tokens.extend([token] * (len(draft) - j))
    owner_t, offset_t, proposed_t, starts_t, rows_t, tokens_t = lists_to_device(
        [owner, offset, proposed, starts, count_rows, count_tokens], torch.int64, logits.device)
    counts = None
    if t.output_counts is not None:
        counts = t.output_counts[owner_t]
        counts.index_put_((rows_t, tokens_t), torch.ones_like(rows_t, dtype=counts.dtype), accumulate=True)

    def per_row(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x[owner_t]

    rows = sample(logits, dataclasses.replace(
        t, temperature=per_row(t.temperature), top_p=per_row(t.top_p), top_k=per_row(t.top_k),
        min_p=per_row(t.min_p), seeds=per_row(t.seeds), positions=t.positions[owner_t] + offset_t,
        repetition_penalty=per_row(t.repetition_penalty), presence_penalty=per_row(t.presence_penalty),
        frequency_penalty=per_row(t.frequency_penalty), output_counts=counts, prompt_mask=per_row(t.prompt_mask)))
    # each sequence's first row whose sample is not its draft token, counted from its first row
    total = len(owner)
    num_accepted = torch.full((len(drafts),), total, dtype=torch.int64, device=logits.device)
    num_accepted.scatter_reduce_(0, owner_t, torch.where(rows.tokens != proposed_t, offset_t, total), reduce="amin")
    return Verification(rows, num_accepted, rows.tokens[starts_t + num_accepted])


def emitted_tokens(rows: Sequence[T], drafts: Sequence[Sequence[int]], num_accepted: Sequence[int]) -> list[list[T]]:
    """On the host, once read back: each sequence's new tokens (or whatever stands for them, one
    per verifying row): its accepted draft tokens and the token after them."""
    out, first = [], 0
    for draft, accepted in zip(drafts, num_accepted):
        out.append(list(rows[first:first + accepted + 1]))
        first += len(draft) + 1
    return out
