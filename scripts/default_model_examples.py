"""Training examples of the default model, as Code Llama was trained, built in worker processes:

- each file is cut at blank lines into documents of about `max_chars` characters;
- a document is, with probability `fim_rate`, an infilling example: split at two character
  positions drawn uniformly into prefix / middle / suffix (Code Llama's split) or, with probability
  `line_hole_rate`, around one to three whole lines (the hole an editor asks to fill: the model
  trained on uniform splits alone never learned where a line's middle ends: 0 of 400 held-out
  single-line holes, benchmarks/2026-12-01-h200-default-model-eval.json), half of them in the
  editor's layout, the last line's newline left in the suffix (a cursor on an emptied line: the
  evaluation's holes), laid out as `inference/prompts.py`'s
  `infill_prompt` lays it out (half prefix-suffix-middle, half suffix-prefix-middle), then the
  middle as `encode_infilling` encodes it, then `▁<EOT>`; otherwise plain text, BOS ... EOS;
- with probability `instruct_rate`, a documented function becomes a chat example in Meta's
  format (`chat_prompt`'s layout of a past turn): "Write a Python function that ..." from its
  docstring's first sentence, answered with the function in a ```python block; half of them
  with the console's default system message.

Every choice is drawn from a generator seeded by (seed, view, the file's content hash), so the
data does not depend on how the work is spread over processes.
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.prompts import DEFAULT_SYSTEM, SPECIAL_TAGS, chat_prompt, infill_prompt
from inference.python_source import documented_functions, instruct_request, parse
from inference.tokenizer import Tokenizer


@dataclass(frozen=True, slots=True)
class ExampleSettings:
    tokenizer: str
    seed: int
    fim_rate: float = 0.9
    instruct_rate: float = 0.5
    system_rate: float = 0.5
    max_chars: int = 3000
    line_hole_rate: float = 0.5


@functools.cache
def _tokenizer(path: str) -> Tokenizer:
    return Tokenizer(path)


def file_tokens(job: tuple[str, str, int, ExampleSettings]) -> tuple[np.ndarray, Counter]:
    """(the token ids of one file's examples, counts of examples and tokens by kind); a file this
    Python cannot parse gives none."""
    path, digest, view, settings = job
    text = Path(path).read_text(encoding="utf-8")
    tree = parse(text)
    if tree is None:
        return np.zeros(0, np.uint16), Counter(unparsable=1)
    tok = _tokenizer(settings.tokenizer)
    rng = random.Random(f"{settings.seed}:{view}:{digest}")
    stats: Counter = Counter()
    ids: list[int] = []

    def add(kind: str, example: list[int]) -> None:
        ids.extend(example)
        stats[kind] += 1
        stats[kind + "_tokens"] += len(example)

    for doc in documents(text, settings.max_chars):
        if rng.random() < settings.fim_rate:
            suffix_first = rng.random() < 0.5
            whole_lines = rng.random() < settings.line_hole_rate
            add("spm" if suffix_first else "psm", infill_example(tok, doc, rng, suffix_first, whole_lines))
        else:
            add("plain", tok.encode(doc, bos=True, eos=True))
    for fn in documented_functions(text, tree):
        request = instruct_request(fn.docstring)
        if request and not any(t in request + fn.source for t in SPECIAL_TAGS) \
                and rng.random() < settings.instruct_rate:
            system = DEFAULT_SYSTEM if rng.random() < settings.system_rate else None
            add("instruct", chat_example(tok, request, f"```python\n{fn.source}```", system))
    return np.asarray(ids, dtype=np.uint16), stats


def documents(text: str, max_chars: int) -> list[str]:
    """`text` cut at blank lines into pieces of at most `max_chars` (a longer paragraph at line
    ends); joined, the pieces are the text (less pieces of only whitespace)."""
    paragraphs, current = [], ""
    for line in text.splitlines(keepends=True):
        current += line
        if not line.strip():
            paragraphs.append(current)
            current = ""
    paragraphs.append(current)
    docs, doc = [], ""
    for para in paragraphs:
        pieces = [para] if len(para) <= max_chars else _by_lines(para, max_chars)
        for piece in pieces:
            if doc and len(doc) + len(piece) > max_chars:
                docs.append(doc)
                doc = ""
            doc += piece
    return [d for d in docs + [doc] if d.strip()]


def _by_lines(text: str, max_chars: int) -> list[str]:
    pieces, piece = [], ""
    for line in text.splitlines(keepends=True):
        if piece and len(piece) + len(line) > max_chars:
            pieces.append(piece)
            piece = ""
        piece += line
    return pieces + [piece]


def infill_example(tok: Tokenizer, doc: str, rng: random.Random, suffix_first: bool,
                   whole_lines: bool = False) -> list[int]:
    """The infilling prompt of `doc` split at two uniform character positions (or around one to
    three whole lines), then the middle and ▁<EOT>: what the model must answer to
    `LLM.infill(prefix, suffix)`."""
    i, j = line_hole(doc, rng) if whole_lines else sorted(rng.randint(0, len(doc)) for _ in range(2))
    prefix, middle, suffix = doc[:i], doc[i:j], doc[j:]
    prompt = infill_prompt(tok, prefix, suffix, suffix_first)
    return prompt.token_ids + tok.encode_infilling(middle) + [tok.infill_id("eot")]


def line_hole(doc: str, rng: random.Random) -> tuple[int, int]:
    """Character positions around one to three whole lines of `doc`, drawn uniformly; half the
    time the hole ends before the last line's newline, as an editor's emptied line does (never
    emptying a hole of one blank line: no editor asks to fill nothing)."""
    lines = doc.splitlines(keepends=True)
    first = rng.randrange(len(lines))
    last = min(len(lines), first + rng.randint(1, 3))
    start = sum(map(len, lines[:first]))
    end = start + sum(map(len, lines[first:last]))
    keeps_newline = rng.random() < 0.5 or not lines[last - 1].endswith("\n") or end - 1 == start
    return start, end if keeps_newline else end - 1


def chat_example(tok: Tokenizer, request: str, answer: str, system: str | None = None) -> list[int]:
    """One answered turn as `chat_prompt` encodes past turns: BOS [INST] ... [/INST] answer EOS.
    Those are the ids before the BOS of a following user turn."""
    dialog = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": request}, {"role": "assistant", "content": answer},
        {"role": "user", "content": "next"}]
    ids = chat_prompt(tok, dialog).token_ids
    return ids[:len(ids) - 1 - ids[::-1].index(tok.bos_id)]
