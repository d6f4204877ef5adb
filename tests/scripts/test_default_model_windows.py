"""Where the default model's training windows start, and what they make of the infilling answers:
checked by counting over every window a policy can draw."""

import random

import pytest
import torch

from scripts.default_model_windows import answer_coverage, example_starts, window_offsets

BOS, MID = 1, 5
SEQ = 16


@pytest.fixture(scope="module")
def stream() -> torch.Tensor:
    """Examples of 3-40 tokens: BOS, a prompt, ▁<MID>, an answer (ids 7+ are ordinary tokens)."""
    rng, ids = random.Random(0), []
    for _ in range(200):
        prompt, answer = rng.randint(1, 25), rng.randint(1, 14)
        ids += [BOS] + [rng.randint(7, 99) for _ in range(prompt)] + [MID] + [rng.randint(7, 99) for _ in range(answer)]
    return torch.tensor(ids)


def counted(data: torch.Tensor, offsets: list[int]) -> tuple[float, float]:
    """answer_coverage by brute force: each window's answer targets, with or without their BOS."""
    ids = data.tolist()
    bos_of, mid_of, last_bos, last_mid = [], [], -1, -1
    for i, t in enumerate(ids):
        last_bos = i if t == BOS else last_bos
        last_mid = i if t == MID else last_mid
        bos_of.append(last_bos)
        mid_of.append(last_mid)
    is_answer = [mid_of[i] > bos_of[i] and ids[i] != MID for i in range(len(ids))]
    trained, with_prompt, reached = 0, 0, set()
    for o in offsets:
        for i in range(o + 1, o + SEQ + 1):
            if is_answer[i]:
                trained += 1
                with_prompt += bos_of[i] >= o
                reached.add(i)
    first, last = min(offsets) + SEQ, max(offsets)  # away from the stream's ends, every window reaches
    inside = [i for i in range(first, last) if is_answer[i]]
    return with_prompt / trained, sum(i not in reached for i in inside) / len(inside)


def test_random_windows_cut_into_answers_as_counted(stream):
    with_prompt, untrained = answer_coverage(stream, BOS, MID, SEQ, "random")
    want, never = counted(stream, list(range(len(stream) - SEQ - 1)))
    assert with_prompt == pytest.approx(want, abs=0.01) and 0 < with_prompt < 1
    assert untrained == never == 0


def test_windows_at_example_starts_keep_prompts_whole_and_miss_only_far_answers(stream):
    starts = example_starts(stream, BOS, SEQ)
    with_prompt, untrained = answer_coverage(stream, BOS, MID, SEQ, "examples")
    want, never = counted(stream, starts.tolist())
    assert with_prompt == want == 1.0
    assert untrained == pytest.approx(never, abs=0.02) and untrained > 0


def test_offsets_are_example_starts_with_a_whole_window_after_them(stream):
    starts = example_starts(stream, BOS, SEQ)
    assert all(stream[s] == BOS and s + SEQ + 1 <= len(stream) for s in starts.tolist())
    gen = torch.Generator().manual_seed(0)
    offsets = window_offsets(stream, starts, 64, SEQ, gen)
    assert set(offsets.tolist()) <= set(starts.tolist()) and len(set(offsets.tolist())) > 1
    anywhere = window_offsets(stream, None, 256, SEQ, gen)
    assert (stream[anywhere] != BOS).any() and anywhere.max() < len(stream) - SEQ - 1
