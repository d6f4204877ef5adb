"""The default model's training corpus: the Python files of the running interpreter's standard
library and of its installed distributions under a permissive licence, leaving out the held-out
packages (inference/heldout.py), vendored copies of other projects, and our own package.

Licences are read from each distribution's metadata: the SPDX `License-Expression` if it has
one, else its `License ::` classifiers, else the free-text `License` field.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import re
from dataclasses import dataclass, field
from pathlib import Path

from inference.heldout import held_out_files, is_held_out, stdlib_dir
from inference.python_source import source_problem

STDLIB = "python-stdlib"
STDLIB_LICENCE = "PSF-2.0"
OWN_DISTRIBUTION = "codellama-serve"
# SPDX identifiers (by prefix) of permissive licences: MIT, BSD, Apache, PSF and their kin.
PERMISSIVE_SPDX = ("MIT", "BSD", "0BSD", "APACHE-", "PSF-", "PYTHON-", "CNRI-PYTHON", "ISC", "ZLIB", "CC0-",
                   "UNLICENSE", "HPND", "BSL-1.0")
PERMISSIVE_WORDS = re.compile(r"\bMIT\b|\bBSD\b|Apache|\bPSF\b|Python Software Foundation|\bISC\b|Zlib|"
                              r"Permission is hereby granted|Redistribution and use", re.IGNORECASE)
RESTRICTIVE_WORDS = re.compile(r"GPL|General Public|Mozilla|\bMPL\b|proprietary|commercial|EULA|"
                               r"Creative Commons Attribution", re.IGNORECASE)
GENERIC_CLASSIFIERS = ("OSI Approved", "DFSG approved")
VENDORED_DIRS = {"_vendor", "vendor", "_vendored", "vendored", "extern", "_extern", "third_party", "_vendored_packages"}


@dataclass(slots=True)
class Source:
    """One distribution (or the standard library) and the Python files it brings."""

    name: str
    version: str
    licence: str
    permissive: bool
    files: list[Path] = field(default_factory=list)


def spdx_is_permissive(expression: str) -> bool:
    """An SPDX expression: any alternative of a plain `A OR B` may be chosen; otherwise every
    licence named must be permissive. Exceptions (`WITH ...`) only add permissions."""
    expression = re.sub(r"\s+WITH\s+\S+", "", expression)
    ids = [t for t in re.split(r"[\s()]+", expression) if t and t.upper() not in ("AND", "OR")]
    ok = [i.upper().startswith(PERMISSIVE_SPDX) for i in ids]
    plain_choice = " OR " in expression.upper() and " AND " not in expression.upper() and "(" not in expression
    return bool(ids) and (any(ok) if plain_choice else all(ok))


def classifiers_are_permissive(names: list[str]) -> bool:
    return all(PERMISSIVE_WORDS.search(n) and not RESTRICTIVE_WORDS.search(n) for n in names)


def text_is_permissive(text: str) -> bool:
    head = text[:300]
    return bool(PERMISSIVE_WORDS.search(head)) and not RESTRICTIVE_WORDS.search(head)


def licence_of(metadata) -> tuple[str, bool]:
    """(the licence as the metadata states it, whether it is permissive)."""
    expression = metadata.get("License-Expression")
    if expression:
        return expression, spdx_is_permissive(expression)
    names = [c.split("::")[-1].strip() for c in metadata.get_all("Classifier") or [] if c.startswith("License ::")]
    names = [n for n in names if n not in GENERIC_CLASSIFIERS]
    if names:
        return " / ".join(names), classifiers_are_permissive(names)
    text = (metadata.get("License") or "").strip()
    if text and text.upper() != "UNKNOWN":
        return " ".join(text.split())[:80], text_is_permissive(text)
    return "unknown", False


def stdlib_source() -> Source:
    """The standard library's modules and tests, less the held-out packages and site-packages."""
    import platform

    root = stdlib_dir()
    files = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if {"site-packages", "dist-packages"} & set(relative.parts) or is_held_out(relative.as_posix()):
            continue
        files.append(path)
    return Source(STDLIB, platform.python_version(), STDLIB_LICENCE, True, files)


def distribution_sources() -> list[Source]:
    """Every installed distribution (first of a name on the path), with its Python files
    outside vendored folders; files only for the permissive ones."""
    sources: dict[str, Source] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        key = re.sub(r"[-_.]+", "-", (name or "").lower())
        if not name or key in sources or key == OWN_DISTRIBUTION:
            continue
        licence, permissive = licence_of(dist.metadata)
        source = sources[key] = Source(name, dist.version, licence, permissive)
        if not permissive:
            continue
        for entry in dist.files or []:
            if entry.suffix != ".py" or VENDORED_DIRS & set(entry.parts):
                continue
            path = Path(dist.locate_file(entry))
            if path.is_file():
                source.files.append(path)
    return sorted(sources.values(), key=lambda s: s.name.lower())


def held_out_copy(text: str, min_chars: int = 40) -> bool:
    """Whether most long lines of `text` are lines of the held-out files (a copy of held-out code
    shipped by another distribution)."""
    lines = [s for s in (line.strip() for line in text.splitlines()) if len(s) >= min_chars]
    held_out = _held_out_lines(min_chars)
    return len(lines) >= 10 and sum(line in held_out for line in lines) > len(lines) / 2


@functools.cache
def _held_out_lines(min_chars: int) -> frozenset[str]:
    return frozenset(s for f in held_out_files() for s in (line.strip() for line in f.text.splitlines())
                     if len(s) >= min_chars)


def inspect_file(path: Path) -> tuple[str, str | None, int]:
    """(content hash, why the file is left out or None, size in bytes)."""
    data = path.read_bytes()
    digest = hashlib.sha1(data).hexdigest()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return digest, "not utf-8", len(data)
    problem = source_problem(text) or ("copy of held-out code" if held_out_copy(text) else None)
    return digest, problem, len(data)
