"""The default model's data, from source files to token ids, spread over a process pool:
the corpus (scripts/default_model_corpus.py) inspected and deduplicated by content hash, then
turned into training examples (scripts/default_model_examples.py), and the manifest of what went in.
"""

from __future__ import annotations

import json
import platform
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inference.heldout import HELD_OUT_PACKAGES, HELD_OUT_TESTS, held_out_files
from scripts.default_model_corpus import Source, distribution_sources, inspect_file, stdlib_source
from scripts.default_model_examples import ExampleSettings, file_tokens


@dataclass(slots=True)
class Corpus:
    sources: list[Source]
    files: list[tuple[str, str, int]] = field(default_factory=list)  # (path, content hash, source index)
    dropped: Counter = field(default_factory=Counter)  # files left out, by reason
    seed: int = 0


def prepare_corpus(pool, seed: int, max_source_mb: float | None, log) -> Corpus:
    """Every candidate file inspected by the pool; kept once per content, in source order.
    With `max_source_mb`, a seeded sample of the kept files of about that size."""
    corpus = Corpus([stdlib_source()] + distribution_sources(), seed=seed)
    candidates = [(i, path) for i, source in enumerate(corpus.sources) for path in source.files]
    log(f"{len(candidates)} candidate files from {sum(s.permissive for s in corpus.sources)} permissive "
        f"sources ({sum(not s.permissive for s in corpus.sources)} distributions left out for their licence)")
    seen: set[str] = set()
    kept = []
    for (i, path), (digest, problem, size) in zip(candidates, pool.imap(inspect_file, [p for _, p in candidates],
                                                                        chunksize=32)):
        if problem or digest in seen:
            corpus.dropped[problem or "duplicate"] += 1
            continue
        seen.add(digest)
        kept.append((str(path), digest, i, size))
    if max_source_mb:
        chosen, total = set(), 0
        for n in random.Random(seed).sample(range(len(kept)), len(kept)):
            if total + kept[n][3] <= max_source_mb * 1e6:
                chosen.add(n)
                total += kept[n][3]
        corpus.dropped["left out of the sample"] += len(kept) - len(chosen)
        kept = [item for n, item in enumerate(kept) if n in chosen]
    corpus.files = [(path, digest, i) for path, digest, i, _ in kept]
    log(f"{len(kept)} files, {sum(item[3] for item in kept) / 1e6:.1f} MB kept; left out: {dict(corpus.dropped)}")
    return corpus


def tokenize_view(pool, corpus: Corpus, tokenizer: str, view: int):
    """An AsyncResult of the examples of every file, drawn for `view` (see `joined`)."""
    settings = ExampleSettings(tokenizer, corpus.seed)
    return pool.map_async(file_tokens, [(path, digest, view, settings) for path, digest, _ in corpus.files],
                          chunksize=8)


def joined(results: list[tuple[np.ndarray, Counter]]) -> tuple[np.ndarray, Counter]:
    """All files' token ids in one array, and the summed counts."""
    stats: Counter = Counter()
    for _, counts in results:
        stats.update(counts)
    return np.concatenate([ids for ids, _ in results]), stats


def write_manifest(path: Path, corpus: Corpus, results: list[tuple[np.ndarray, Counter]], stats: Counter) -> None:
    """What went into the training data: each source with its licence and the files and bytes
    it gave, the distributions left out for their licence, the held-out packages, the counts."""
    files, size = Counter(), Counter()
    for (file, _, i), (ids, counts) in zip(corpus.files, results):
        if "unparsable" not in counts:
            files[i] += 1
            size[i] += Path(file).stat().st_size
    held_out = held_out_files()
    manifest = {
        "python": platform.python_version(), "seed": corpus.seed,
        "sources": [{"name": s.name, "version": s.version, "licence": s.licence, "files": files[i], "bytes": size[i]}
                    for i, s in enumerate(corpus.sources) if files[i]],
        "left_out_for_licence": [{"name": s.name, "version": s.version, "licence": s.licence}
                                 for s in corpus.sources if not s.permissive],
        "held_out": {"packages": list(HELD_OUT_PACKAGES), "tests": list(HELD_OUT_TESTS), "files": len(held_out),
                     "bytes": sum(len(f.text.encode()) for f in held_out)},
        "files_left_out": dict(corpus.dropped + Counter(unparsable=stats["unparsable"])),
        "examples": {k: v for k, v in stats.items() if k != "unparsable"},
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n")
