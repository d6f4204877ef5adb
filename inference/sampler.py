"""Batched sampling on the model's device.

Randomness is a pure function of (request seed, output position, token id): each row draws
exponential noise from a counter-based hash and takes argmax(probs / noise), which samples
exactly from `probs` (the exponential-race form of the Gumbel-max trick). A seeded request
therefore gets the same tokens alone, in any batch, and after being preempted and recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .sequence import Sequence
from .transfer import lists_to_device

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed 64-bit integer
_MIX1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_MIX2 = -7723592293110705685  # 0x94D049BB133111EB


def _mix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 tensors (multiplication wraps; shifts made logical)."""
    x = (x ^ ((x >> 30) & ((1 << 34) - 1))) * _MIX1
    x = (x ^ ((x >> 27) & ((1 << 37) - 1))) * _MIX2
    return x ^ ((x >> 31) & ((1 << 33) - 1))


def exponential_noise(seeds: torch.Tensor, positions: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """[B, vocab] float32 Exp(1) noise, determined by each row's (seed, position) alone."""
    row_key = _mix64(_mix64(seeds) + positions * _GOLDEN)
    cols = torch.arange(vocab_size, device=seeds.device, dtype=torch.int64) * _GOLDEN
    return -torch.log(uniform_from_bits(_mix64(row_key[:, None] ^ cols[None, :])))


def uniform_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """Uniform floats strictly inside (0, 1) from random int64 bits, exactly representable in
    float32 (23 bits and a half), so the exponential noise is never 0 or infinite."""
    return (((bits >> 41) & 0x7FFFFF).float() + 0.5) * (1.0 / (1 << 23))


@dataclass(slots=True)
class SamplingTensors:
    temperature: torch.Tensor  # [B] float32; 0 = greedy
    top_p: torch.Tensor
    top_k: torch.Tensor  # [B] int64; vocab size = off
    min_p: torch.Tensor
    seeds: torch.Tensor  # [B] int64
    positions: torch.Tensor  # [B] int64: index of the output token being sampled
    repetition_penalty: torch.Tensor | None  # the three only when some row uses penalties
    presence_penalty: torch.Tensor | None
    frequency_penalty: torch.Tensor | None
    output_counts: torch.Tensor | None  # [B, vocab] float32 counts of each output token
    prompt_mask: torch.Tensor | None  # [B, vocab] bool: token occurs in the prompt
    num_logprobs: int  # most alternatives any row asks for; -1 = no row wants logprobs
    all_greedy: bool
    any_top_k_top_p: bool  # host-side flags: testing the tensors would wait for the device
    any_min_p: bool

    @classmethod
    def build(cls, seqs: list[Sequence], vocab_size: int, device: torch.device) -> "SamplingTensors":
        ps = [s.params for s in seqs]
        penalties = any(p.uses_penalties for p in ps)
        floats = [[p.temperature for p in ps], [p.top_p for p in ps], [p.min_p for p in ps]]
        if penalties:
            floats += [[p.repetition_penalty for p in ps], [p.presence_penalty for p in ps],
                       [p.frequency_penalty for p in ps]]
        # the token being sampled is the last, pending, one of each sequence
        ints = [[p.top_k if p.top_k > 0 else vocab_size for p in ps], [s.seed for s in seqs],
                [s.num_output_tokens - 1 for s in seqs]]
        f, i = lists_to_device(floats, torch.float32, device), lists_to_device(ints, torch.int64, device)
        counts = mask = None
        if penalties:
            counts = _token_table(vocab_size, [s.output_token_ids[:-1] for s in seqs], device)
            mask = _token_table(vocab_size, [s.token_ids[:s.num_prompt_tokens] for s in seqs], device) > 0
        return cls(
            temperature=f[0], top_p=f[1], min_p=f[2], top_k=i[0], seeds=i[1], positions=i[2],
            repetition_penalty=f[3] if penalties else None,
            presence_penalty=f[4] if penalties else None,
            frequency_penalty=f[5] if penalties else None,
            output_counts=counts,
            prompt_mask=mask,
            num_logprobs=max((p.logprobs for p in ps if p.logprobs is not None), default=-1),
            all_greedy=all(p.greedy for p in ps),
            any_top_k_top_p=any(0 < p.top_k < vocab_size or p.top_p < 1 for p in ps),
            any_min_p=any(p.min_p > 0 for p in ps),
        )


def _token_table(vocab_size: int, rows: list[list[int]], device: torch.device) -> torch.Tensor:
    """[B, vocab] float32 count of each token in each row."""
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width + 1), vocab_size, dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.int64)
    table = torch.zeros(len(rows), vocab_size + 1, dtype=torch.float32, device=device)
    table.scatter_add_(1, ids.to(device), torch.ones(ids.shape, device=device))
    return table[:, :vocab_size]


@dataclass(slots=True)
class SamplerOutput:
    tokens: torch.Tensor  # [B] int64
    logprobs: torch.Tensor | None  # [B] float32, the sampled token's
    top_ids: torch.Tensor | None  # [B, k] int64
    top_logprobs: torch.Tensor | None  # [B, k] float32


def apply_penalties(logits: torch.Tensor, t: SamplingTensors) -> torch.Tensor:
    """Repetition penalty over prompt and output tokens (as transformers), then presence and
    frequency penalties over output tokens (as OpenAI)."""
    seen = t.prompt_mask | (t.output_counts > 0)
    rep = t.repetition_penalty[:, None]
    logits = torch.where(seen, torch.where(logits > 0, logits / rep, logits * rep), logits)
    return (logits - t.frequency_penalty[:, None] * t.output_counts
            - t.presence_penalty[:, None] * (t.output_counts > 0).float())


def _filter(probs: torch.Tensor, t: SamplingTensors) -> torch.Tensor:
    """Zero the probabilities that top-k, top-p and min-p exclude (the top token always stays)."""
    vocab = probs.shape[-1]
    if t.any_top_k_top_p:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        ranks = torch.arange(vocab, device=probs.device)[None, :]
        drop = ranks >= t.top_k[:, None]
        drop |= (sorted_p.cumsum(-1) - sorted_p) > t.top_p[:, None]
        drop[:, 0] = False
        probs = probs.scatter(1, order, sorted_p.masked_fill(drop, 0.0))
    if t.any_min_p:
        threshold = t.min_p[:, None] * probs.max(dim=-1, keepdim=True).values
        probs = probs.masked_fill(probs < threshold, 0.0)
    return probs


def sample(logits: torch.Tensor, t: SamplingTensors) -> SamplerOutput:
    """logits: [B, vocab] float32, the model's raw scores for the next token of each row."""
    raw = logits
    if t.output_counts is not None:
        logits = apply_penalties(logits, t)
    greedy_tokens = logits.argmax(dim=-1)
    if t.all_greedy:
        tokens = greedy_tokens
    else:
        temperature = torch.where(t.temperature > 0, t.temperature, torch.ones_like(t.temperature))
        probs = _filter(torch.softmax(logits / temperature[:, None], dim=-1), t)
        noise = exponential_noise(t.seeds, t.positions, logits.shape[-1])
        tokens = torch.where(t.temperature > 0, (probs / noise).argmax(dim=-1), greedy_tokens)
    if t.num_logprobs < 0:
        return SamplerOutput(tokens, None, None, None)
    return score(raw, tokens, t.num_logprobs)


def score(logits: torch.Tensor, tokens: torch.Tensor, k: int) -> SamplerOutput:
    """The logprob of each row's token under the model's raw scores, and the k likeliest."""
    logprobs = torch.log_softmax(logits, dim=-1)
    chosen = logprobs.gather(1, tokens[:, None])[:, 0]
    top = logprobs.topk(k, dim=-1) if k > 0 else None
    return SamplerOutput(tokens, chosen, top and top.indices, top and top.values)
