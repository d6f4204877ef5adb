"""The edit workload of speculative decoding: held-out Python functions (inference/heldout.py),
each prompt holding one and asking for it back with a small change, the way an editor's "apply
this edit" or "next edit" request does. Most of the answer copies the prompt, so this is where
drafting from the prompt (and from recent outputs) should pay.

A case is one function and one change, made on its syntax tree so the edited code still parses:

    rename   a parameter or local variable renamed wherever the function uses it
    insert   a two-line guard put before the first statement after the docstring

and each case makes a request in two forms (`FORMS`):

    completion   the function, a comment saying what changed, the edited function up to and
                 including its first changed line; the answer is the rest (stops at the next
                 top-level statement, as a Python completion does)
    infill       the same prefix, the edited function's lines after the edited region as the
                 suffix; the middle is the edited region (REGION_LINES lines from the first
                 changed one)

    cases = edit_cases(tokenizer)                       # deterministic for a Python version
    requests = [edit_request(tokenizer, c, "infill") for c in cases]
"""

from __future__ import annotations

import ast
import random
import re
from dataclasses import dataclass

from ..heldout import SourceFile, held_out_functions
from ..prompts import Prompt, infill_prompt, python_prompt
from ..tokenizer import Tokenizer

FORMS = ("completion", "infill")
MODES = ("ngram", "suffix", "auto")  # the speculation modes measured, each against off
KINDS = ("rename", "insert")
REGION_LINES = 8  # the infill form's edited region
NEW_NAMES = ("value", "item", "entry", "result", "data", "text", "node", "current", "chunk", "token", "record",
             "target", "source", "piece", "element", "payload")
ANSWER_SLACK = 32  # tokens allowed past the expected answer's length


@dataclass(frozen=True, slots=True)
class EditCase:
    name: str  # "file:line:function rename a->b"
    kind: str
    description: str  # the comment the prompt carries, e.g. "Same as above, with `s` renamed to `text`."
    original: str  # the function, dedented
    edited: str
    first_changed: int  # index of the first line of `edited` that differs from `original`


@dataclass(frozen=True, slots=True)
class EditRequest:
    case: EditCase
    form: str
    prompt: Prompt
    expected: str  # the answer that makes exactly the edit
    max_tokens: int


def edit_cases(tokenizer: Tokenizer, n: int = 64, seed: int = 0, files: list[SourceFile] | None = None,
               max_function_tokens: int = 700, min_function_tokens: int = 80) -> list[EditCase]:
    """n cases, kinds alternating, from held-out functions drawn at random whose length in
    tokens fits twice into the model's window with room for the answer (the default bounds fit
    2,048 positions)."""
    functions = held_out_functions(files)
    cases = []
    for name, fn in random.Random(seed).sample(functions, len(functions)):
        if not min_function_tokens <= len(tokenizer.encode(fn.source, bos=False)) <= max_function_tokens:
            continue
        rng = random.Random(f"{seed}:{name}")
        preferred = KINDS[len(cases) % len(KINDS)]
        for kind in (preferred, *(k for k in KINDS if k != preferred)):
            case = _EDITS[kind](name, fn.source, rng)
            if case is not None:
                cases.append(case)
                break
        if len(cases) == n:
            break
    return cases


def edit_request(tokenizer: Tokenizer, case: EditCase, form: str) -> EditRequest:
    """The case's request in one of FORMS."""
    lines = case.edited.splitlines(keepends=True)
    head = f"{case.original}\n\n# {case.description}\n" + "".join(lines[:case.first_changed])
    if form == "completion":
        cut = case.first_changed + 1
        prompt = python_prompt(tokenizer, head + lines[case.first_changed], stop_at_top_level=True)
        expected = "".join(lines[cut:])
    elif form == "infill":
        end = min(case.first_changed + REGION_LINES, len(lines) - 1)  # a suffix of one line at least
        expected = "".join(lines[case.first_changed:end])
        prompt = infill_prompt(tokenizer, head, "".join(lines[end:]))
    else:
        raise ValueError(f"unknown form {form!r}: use one of {', '.join(FORMS)}")
    return EditRequest(case, form, prompt, expected, len(tokenizer.encode(expected, bos=False)) + ANSWER_SLACK)


def _rename(name: str, source: str, rng: random.Random) -> EditCase | None:
    """A parameter or assigned local (not self or cls) used at least twice, renamed to a word
    the function does not contain; every Name and parameter node of it changes, attributes,
    keywords of calls and strings do not."""
    tree = ast.parse(source)
    uses: dict[str, list[tuple[int, int]]] = {}
    assigned = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            uses.setdefault(node.arg, []).append((node.lineno, node.col_offset))
            assigned.add(node.arg)
        elif isinstance(node, ast.Name):
            uses.setdefault(node.id, []).append((node.lineno, node.col_offset))
            if isinstance(node.ctx, ast.Store):
                assigned.add(node.id)
    candidates = sorted(n for n in assigned - {"self", "cls"} if len(uses[n]) >= 2)
    words = set(re.findall(r"\w+", source))
    fresh = [w for w in NEW_NAMES if w not in words]
    if not candidates or not fresh:
        return None
    old, new = rng.choice(candidates), rng.choice(fresh)
    lines = [line.encode() for line in source.splitlines(keepends=True)]
    for lineno, col in sorted(uses[old], reverse=True):  # right to left: offsets stay valid
        line = lines[lineno - 1]
        lines[lineno - 1] = line[:col] + new.encode() + line[col + len(old.encode()):]
    edited = b"".join(lines).decode()
    return _case(f"{name} rename {old}->{new}", "rename", f"Same as above, with `{old}` renamed to `{new}`.",
                 source, edited)


def _insert(name: str, source: str, rng: random.Random) -> EditCase | None:
    """`if p is None: raise ValueError(...)` for a parameter p, before the first statement after
    the docstring."""
    fn = ast.parse(source).body[0]
    params = [a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs if a.arg not in ("self", "cls")]
    if not params or len(fn.body) < 2:
        return None
    param, statement = rng.choice(params), fn.body[1]
    lines = source.splitlines(keepends=True)
    at = min([statement.lineno] + [d.lineno for d in getattr(statement, "decorator_list", [])]) - 1
    indent = lines[at][:len(lines[at]) - len(lines[at].lstrip())]
    guard = f"{indent}if {param} is None:\n{indent}    raise ValueError(\"{param} must not be None\")\n"
    edited = "".join(lines[:at]) + guard + "".join(lines[at:])
    return _case(f"{name} insert guard {param}", "insert", f"Same as above, raising ValueError when `{param}` is None.",
                 source, edited)


def _case(name: str, kind: str, description: str, original: str, edited: str) -> EditCase:
    before, after = original.splitlines(), edited.splitlines()
    first = next(i for i, (a, b) in enumerate(zip(before, after)) if a != b)
    return EditCase(name, kind, description, original, edited, first)


_EDITS = {"rename": _rename, "insert": _insert}
