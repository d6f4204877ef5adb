"""A draft, how likely its tokens are to be accepted, and how that estimate learns per sequence.

A drafter gives each token a confidence: its estimate that the target model accepts the token,
given that the tokens before it were accepted. Both drafters start from the rule of succession:
a copy that has matched m tokens so far continues with probability (m + 1) / (m + 2), and each
drafted token lengthens the match (the suffix cache weighs that by how often the continuation
followed the context). The sequence's own history then calibrates it: exponential moving
averages of how many verified tokens were accepted and how many the drafter expected, and the
gap between the two, in log-odds, is added to every confidence. A sequence whose drafts keep
failing drafts less, or not at all (the cost model decides), and one whose drafts keep being
accepted drafts longer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PROMPT, SUFFIX = "prompt", "suffix"  # the drafters: prompt lookup, the suffix cache


def continuation_confidence(match_length: int) -> float:
    """Rule of succession: a copy that held for `match_length` tokens holds one more."""
    return (match_length + 1) / (match_length + 2)


@dataclass(frozen=True, slots=True)
class Draft:
    """Tokens proposed to follow a sequence. confidences[j] is the drafter's estimate that token j
    is accepted once tokens 0..j-1 are; probs[j] the same estimate after calibration (the
    drafter's own until then)."""

    tokens: tuple[int, ...]
    confidences: tuple[float, ...]
    source: str
    probs: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.probs is None:
            object.__setattr__(self, "probs", self.confidences)
        if not self.tokens or not len(self.tokens) == len(self.confidences) == len(self.probs):
            raise ValueError("a draft needs at least one token, and one confidence per token")

    def __len__(self) -> int:
        return len(self.tokens)

    def acceptance_curve(self) -> list[float]:
        """curve[j]: probability that tokens 0..j are all accepted, the expected gain of drafting
        token j; it never grows with j."""
        curve, p = [], 1.0
        for q in self.probs:
            p *= q
            curve.append(p)
        return curve

    def expected_accepted(self, length: int | None = None) -> float:
        """Expected number of accepted tokens when the first `length` (default all) are verified."""
        return sum(self.acceptance_curve()[:length])

    def truncated(self, length: int) -> "Draft | None":
        """The first `length` tokens (None for none), as the cost model may trim a draft."""
        if length <= 0:
            return None
        return Draft(self.tokens[:length], self.confidences[:length], self.source, self.probs[:length])


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


@dataclass(slots=True)
class Calibration:
    """One sequence's correction of one drafter's confidences (see the module docstring).
    Each verification keeps `decay` of the averages before it; `prior` pseudo-tokens, half
    accepted and half expected, keep the first corrections small."""

    decay: float = 0.9
    prior: float = 2.0
    verified: float = 0.0  # decayed count of the tokens verification observed
    accepted_avg: float = 0.0  # decayed count of those accepted
    expected_avg: float = 0.0  # decayed sum of their confidences

    @property
    def bias(self) -> float:
        """Log-odds of the acceptance seen minus that of the acceptance expected."""
        total = self.verified + self.prior
        return (_logit((self.accepted_avg + self.prior / 2) / total)
                - _logit((self.expected_avg + self.prior / 2) / total))

    def calibrate(self, draft: Draft) -> Draft:
        """The draft with its confidences corrected by this sequence's history."""
        bias = self.bias
        return Draft(draft.tokens, draft.confidences, draft.source,
                     tuple(1 / (1 + math.exp(-(_logit(c) + bias))) for c in draft.confidences))

    def update(self, draft: Draft, num_accepted: int) -> None:
        """After verifying `draft`: tokens before `num_accepted` were accepted, the one at
        `num_accepted` (if any) rejected; later ones tell nothing and are left out."""
        if not 0 <= num_accepted <= len(draft):
            raise ValueError(f"{num_accepted} accepted tokens of a draft of {len(draft)}")
        observed = draft.confidences[:num_accepted + 1]
        self.verified = self.decay * self.verified + len(observed)
        self.accepted_avg = self.decay * self.accepted_avg + num_accepted
        self.expected_avg = self.decay * self.expected_avg + sum(observed)
