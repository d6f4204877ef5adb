"""The default model's held-out Python: whole standard-library packages it never trained on (nor
on their tests), so every machine with Python has them, and the evaluation cases built from them.
Quality figures of other work (quantization error, speculative acceptance) are measured here:

    from inference.heldout import held_out_files, infill_cases
    files = held_out_files()     # [SourceFile("json/decoder.py", "..."), ...], sorted by name

The packages' text differs a little between Python versions: compare figures within one run.
"""

from __future__ import annotations

import ast
import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .prompts import SPECIAL_TAGS
from .python_source import Function, documented_functions, instruct_request, parse, source_problem

HELD_OUT_PACKAGES = ("email", "http", "json", "unittest", "xml")
# The standard library's tests of those packages (test/test_json/, test/test_httplib.py, ...).
HELD_OUT_TESTS = ("test_email", "test_http", "test_json", "test_unittest", "test_xml", "test_minidom",
                  "test_pulldom", "test_sax")


@dataclass(frozen=True, slots=True)
class SourceFile:
    name: str  # the path inside the standard library, e.g. "json/decoder.py"
    text: str


@dataclass(frozen=True, slots=True)
class InfillCase:
    """One non-blank line of a held-out function masked: prefix + middle + suffix is the function."""

    name: str
    prefix: str
    middle: str
    suffix: str


@dataclass(frozen=True, slots=True)
class CompletionCase:
    name: str
    prompt: str  # a function's signature and docstring, ending with a newline


@dataclass(frozen=True, slots=True)
class ChatCase:
    name: str
    request: str  # "Write a Python function that ..."


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def is_held_out(relative: str | PurePosixPath) -> bool:
    """Whether a path inside the standard library is a held-out package's, or its tests'."""
    parts = PurePosixPath(relative).parts
    if parts[0].removesuffix(".py") in HELD_OUT_PACKAGES:
        return True
    return parts[0] == "test" and len(parts) > 1 and parts[1].startswith(HELD_OUT_TESTS)


def held_out_files() -> list[SourceFile]:
    """The held-out packages' modules (their own test folders left out), by the training data's
    rules: hand-written code that this Python parses."""
    root = stdlib_dir()
    found = []
    for package in HELD_OUT_PACKAGES:
        for path in (root / package).rglob("*.py"):
            name = path.relative_to(root).as_posix()
            if {"test", "tests"} & set(PurePosixPath(name).parts):
                continue
            text = path.read_text(encoding="utf-8")
            if source_problem(text) is None and parse(text) is not None:
                found.append(SourceFile(name, text))
    return sorted(found, key=lambda f: f.name)


def held_out_functions(files: list[SourceFile] | None = None) -> list[tuple[str, Function]]:
    """("file:line:function", Function) for every documented function of the held-out files."""
    return [(f"{f.name}:{fn.line}:{fn.name}", fn) for f in files or held_out_files()
            for fn in documented_functions(f.text)]


def infill_cases(n: int = 400, seed: int = 0, files: list[SourceFile] | None = None) -> list[InfillCase]:
    """Single-line infilling: in each of n functions drawn at random, one line of code of the
    body (not blank, not a comment, not inside a multi-line string) is the middle."""
    cases = []
    for name, fn in _drawn(held_out_functions(files), seed):
        lines = fn.source.splitlines(keepends=True)
        candidates = _code_lines(fn, lines)
        if candidates:
            i = random.Random(f"{seed}:{name}").choice(candidates)
            cases.append(InfillCase(name, "".join(lines[:i]), lines[i].rstrip("\n"), "\n" + "".join(lines[i + 1:])))
        if len(cases) == n:
            break
    return cases


def completion_cases(n: int = 200, seed: int = 0, files: list[SourceFile] | None = None,
                     max_body_lines: int = 20) -> list[CompletionCase]:
    """Complete a function from its signature and docstring (bodies of at most max_body_lines)."""
    fit = [(name, fn) for name, fn in held_out_functions(files) if fn.body.count("\n") <= max_body_lines]
    return [CompletionCase(name, fn.header) for name, fn in _drawn(fit, seed)[:n]]


def chat_cases(n: int = 200, seed: int = 0, files: list[SourceFile] | None = None) -> list[ChatCase]:
    """Ask for a function in the words of its docstring's first sentence."""
    requests = [(name, instruct_request(fn.docstring)) for name, fn in held_out_functions(files)]
    fit = [(name, r) for name, r in requests if r and not any(tag in r for tag in SPECIAL_TAGS)]
    return [ChatCase(name, request) for name, request in _drawn(fit, seed)[:n]]


def _drawn(items: list, seed: int) -> list:
    return random.Random(seed).sample(items, len(items))


def _code_lines(fn: Function, lines: list[str]) -> list[int]:
    tree = parse(fn.source)
    if tree is None:
        return []
    in_strings = {line - 1 for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.end_lineno > node.lineno
                  for line in range(node.lineno, node.end_lineno + 1)}
    first = fn.header.count("\n")
    return [i for i in range(first, len(lines))
            if lines[i].strip() and not lines[i].lstrip().startswith("#") and i not in in_strings]
