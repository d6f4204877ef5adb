"""When speculation pays: a step's time predicted from a table measured on the GPU, and the draft
lengths that maximise the expected tokens per second of a step.

At batch 1 a decode step reads every weight to compute one token, so scoring a few more tokens
costs almost nothing; at batch 256 the step is bound by arithmetic and each verified token costs
about as much as a generated one, so a rejected draft is time lost for the whole batch. The
table (`codellama bench verify` writes it) holds the step time of B decoding sequences that each
verify k extra tokens, for a few B and k = 0..K; between them times are interpolated linearly.

The plan: a draft's j-th token adds P(tokens 0..j all accepted) expected tokens, and that gain
never grows with j, so for any number N of drafted tokens verified in a step, the N largest
gains of the batch (a prefix of each draft) give the most expected tokens. The plan takes the N
(0 included: no speculation) whose (B + gains) / step time is largest. Without a table (a card
or shape not measured), it verifies the tokens whose gain is at least MIN_GAIN.

A step that verifies drafts also costs host time the table does not hold: drafting needs the
tokens of the step before, so that step's outputs, the drafting and the launch run while the GPU
waits, where plain decode steps hide them behind the GPU's work. The engine measures that time
(`host_ms`) and the plan adds it to every step that verifies something.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .draft import Draft

MIN_GAIN = 0.3


@dataclass(frozen=True, slots=True)
class StepTimes:
    """ms[b][k]: milliseconds of a step of batch_sizes[b] decoding sequences, each scoring k
    drafted tokens beside its last token (k = 0: plain decoding)."""

    batch_sizes: tuple[int, ...]
    ms: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        if not self.batch_sizes or list(self.batch_sizes) != sorted(set(self.batch_sizes)) or self.batch_sizes[0] < 1:
            raise ValueError(f"batch sizes must be distinct, ascending and >= 1, got {self.batch_sizes}")
        widths = {len(row) for row in self.ms}
        if len(self.ms) != len(self.batch_sizes) or len(widths) != 1 or widths.pop() < 2:
            raise ValueError("the table needs one row per batch size, each with the same k = 0, 1, ... columns")
        if any(not v > 0 for row in self.ms for v in row):
            raise ValueError("step times must be positive")

    @classmethod
    def from_record(cls, record: dict, verify_graph_batches: int = 0) -> "StepTimes":
        """From the JSON record `codellama bench verify` writes: decode steps (k = 0) replayed
        from CUDA graphs, verifying steps of at most `verify_graph_batches` sequences from graphs
        too (as the engine replays them, inference/verify_graphs.py), larger ones eagerly."""
        if record["extra_tokens"] != list(range(len(record["extra_tokens"]))):
            raise ValueError(f"the record's extra tokens must be 0, 1, 2, ...: {record['extra_tokens']}")
        rows = zip(record["batch_sizes"], record["ms"], record["eager_ms"])
        return cls(tuple(record["batch_sizes"]), tuple((graph[0], *(graph if b <= verify_graph_batches else eager)[1:])
                                                       for b, graph, eager in rows))

    @classmethod
    def load(cls, path: str | Path, verify_graph_batches: int = 0) -> "StepTimes":
        """From the file `codellama bench verify --out FILE` wrote."""
        record = json.loads(Path(path).read_text())
        return cls.from_record(record.get("verify", record), verify_graph_batches)

    @property
    def max_extra(self) -> int:
        return len(self.ms[0]) - 1

    def step_ms(self, batch_size: int, extra_tokens: float) -> float:
        """Predicted milliseconds of a step of `batch_size` decoding sequences that verify
        `extra_tokens` drafted tokens in all. Past the largest batch measured, time grows in
        proportion to the batch (the arithmetic-bound regime)."""
        if batch_size < 1 or extra_tokens < 0:
            raise ValueError(f"no step of {batch_size} sequences with {extra_tokens} extra tokens")
        k = extra_tokens / batch_size
        sizes = self.batch_sizes
        if batch_size <= sizes[0]:
            return self._row_ms(0, k)
        if batch_size >= sizes[-1]:
            return self._row_ms(len(sizes) - 1, k) * batch_size / sizes[-1]
        hi = bisect.bisect_left(sizes, batch_size)
        lo = hi - 1
        w = (batch_size - sizes[lo]) / (sizes[hi] - sizes[lo])
        return (1 - w) * self._row_ms(lo, k) + w * self._row_ms(hi, k)

    def _row_ms(self, row: int, k: float) -> float:
        """Row `row` at k extra tokens per sequence (fractional: interpolated; past the last
        column: extrapolated along the last segment)."""
        times = self.ms[row]
        i = min(int(k), len(times) - 2)
        return times[i] + (k - i) * (times[i + 1] - times[i])

    def plain_rate(self, batch_size: int, host_ms: float) -> float:
        """Tokens per millisecond of plain decode steps, which overlap their host time."""
        return batch_size / max(self.step_ms(batch_size, 0), host_ms)

    def may_pay(self, batch_size: int, max_tokens: int, host_ms: float = 0.0) -> bool:
        """Whether drafts of at most `max_tokens` tokens could speed a step of this batch up even
        if every drafted token were accepted: when not, drafting is not worth its host time."""
        plain = self.plain_rate(batch_size, host_ms)
        return any(batch_size * (1 + k) / (self.step_ms(batch_size, batch_size * k) + host_ms) > plain
                   for k in range(1, max_tokens + 1))


def plan(drafts: Sequence[Draft | None], times: StepTimes | None, host_ms: float = 0.0) -> list[int]:
    """How many tokens of each sequence's draft to verify in the next step (0: none), for a
    batch of len(drafts) decoding sequences (None: nothing drafted); `host_ms`: what a step that
    verifies drafts adds on the host."""
    if not drafts:  # every decoding sequence is at its last token: nothing has room for a draft
        return []
    if times is None:
        return [0 if d is None else sum(g >= MIN_GAIN for g in d.acceptance_curve()) for d in drafts]
    batch = len(drafts)
    gains = sorted(((gain, j, i) for i, draft in enumerate(drafts) if draft is not None
                    for j, gain in enumerate(draft.acceptance_curve())), key=lambda g: (-g[0], g[1]))
    best_rate, best_n, expected = times.plain_rate(batch, host_ms), 0, 0.0
    for n, (gain, _, _) in enumerate(gains, 1):
        expected += gain
        rate = (batch + expected) / (times.step_ms(batch, n) + host_ms)
        if rate > best_rate:
            best_rate, best_n = rate, n
    lengths = [0] * batch
    for _, _, i in gains[:best_n]:
        lengths[i] += 1
    return lengths
