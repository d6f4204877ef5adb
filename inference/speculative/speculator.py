"""Drafting for one engine: each sequence's prompt lookup and the server's suffix cache.

    mode     drafters
    auto     prompt lookup and the suffix cache: the draft with more tokens expected accepted
    ngram    prompt lookup only
    suffix   the suffix cache only
    off      none

A sequence's drafting state lives beside the sequence (`start` makes it); the suffix cache is
shared by all sequences and fed by `finish`. Everything here runs on the engine's one thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .draft import PROMPT, SUFFIX, Calibration, Draft
from .prompt_lookup import PromptLookup
from .suffix_cache import SuffixCache

MODES = ("auto", "ngram", "suffix", "off")


def check_speculation(mode: str, num_speculative_tokens: int) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown speculation mode {mode!r}: use one of {', '.join(MODES)}")
    if not 1 <= num_speculative_tokens <= 16:
        raise ValueError(f"num_speculative_tokens must be in [1, 16], got {num_speculative_tokens}")


@dataclass(slots=True)
class SequenceDrafting:
    """A sequence's final tokens (indexed for prompt lookup) and its calibration of each drafter."""

    lookup: PromptLookup
    num_prompt_tokens: int
    calibrations: dict[str, Calibration] = field(default_factory=lambda: {PROMPT: Calibration(),
                                                                          SUFFIX: Calibration()})


class Speculator:
    def __init__(self, mode: str = "auto", num_speculative_tokens: int = 8, suffix_cache_tokens: int = 1 << 17):
        check_speculation(mode, num_speculative_tokens)
        self.mode, self.num_speculative_tokens = mode, num_speculative_tokens
        self.suffix = SuffixCache(suffix_cache_tokens) if mode in ("auto", "suffix") else None

    def start(self, prompt: Sequence[int], preferred: tuple[int, int] | None = None) -> SequenceDrafting:
        """A new sequence's state; `preferred` is an infilling prompt's suffix region (see
        `infill_suffix_span`)."""
        return SequenceDrafting(PromptLookup(prompt, preferred=preferred), len(prompt))

    def extend(self, seq: SequenceDrafting, tokens: Sequence[int]) -> None:
        """Tokens the sequence gained and will keep (sampled, or accepted and the one after)."""
        seq.lookup.extend(tokens)

    def propose(self, seq: SequenceDrafting, max_tokens: int | None = None) -> Draft | None:
        """The sequence's draft for its next step, at most `max_tokens` (and
        num_speculative_tokens) long, its probabilities calibrated by the sequence's history."""
        limit = self.num_speculative_tokens if max_tokens is None else min(max_tokens, self.num_speculative_tokens)
        drafts = []
        if self.mode in ("auto", "ngram"):
            drafts.append(seq.lookup.propose(limit))
        if self.suffix is not None:
            drafts.append(self.suffix.propose(seq.lookup.tokens[-self.suffix.context_size:], limit))
        calibrated = [seq.calibrations[d.source].calibrate(d) for d in drafts if d is not None]
        return max(calibrated, key=Draft.expected_accepted, default=None)

    def record(self, seq: SequenceDrafting, draft: Draft, num_accepted: int) -> None:
        """After verifying `draft` (as `propose` gave it, or a prefix of it)."""
        seq.calibrations[draft.source].update(draft, num_accepted)

    def finish(self, seq: SequenceDrafting) -> None:
        """The sequence ended: its output joins the suffix cache."""
        if self.suffix is not None:
            tokens, n = seq.lookup.tokens, seq.num_prompt_tokens
            self.suffix.add(tokens[n:], tokens[max(0, n - self.suffix.context_size):n])
