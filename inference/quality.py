"""How well a model writes Python, measured through the engine on the held-out packages
(inference/heldout.py): bits per byte, single-line infilling, completions that parse, and chat
answers that hold a function. Every generation is greedy and batched through one `LLM`.

    from inference import LLM
    from inference.heldout import held_out_files
    from inference.quality import bits_per_byte
    bits_per_byte(LLM(), held_out_files())
"""

from __future__ import annotations

import ast
import dataclasses
import math
import textwrap

from .heldout import ChatCase, CompletionCase, InfillCase, SourceFile
from .llm import LLM
from .prompts import Prompt, chat_prompt, infill_prompt, python_prompt
from .python_source import parse
from .sampling_params import SamplingParams

WINDOW = 1024  # tokens scored per request: the length the default model was trained on
EXAMPLES = 5  # outputs kept in a report (up to CLIP characters each), to see what a figure means
CLIP = 400


def bits_per_byte(llm: LLM, files: list[SourceFile], window: int = WINDOW) -> float:
    """-log2 p(text) / UTF-8 bytes over the files, each tokenized whole and scored in windows of
    `window` tokens, each window after a BOS (the engine's prompt logprobs)."""
    tok = llm.tokenizer
    window = min(window, llm.engine.config.max_model_len - 2)
    prompts = []
    for f in files:
        ids = tok.encode(f.text, bos=False)
        prompts += [[tok.bos_id] + ids[i:i + window] for i in range(0, len(ids), window)]
    params = SamplingParams(max_tokens=1, temperature=0, prompt_logprobs=0)
    outs = llm.run_requests([(p, params) for p in prompts])
    nats = -sum(lp.logprob for out in outs for lp in out.prompt_logprobs)
    return nats / math.log(2) / sum(len(f.text.encode()) for f in files)


def infill_exact_match(llm: LLM, cases: list[InfillCase], max_tokens: int = 64) -> dict:
    """The share of masked lines filled exactly (stripped), and of filled functions that parse."""
    prompts = [infill_prompt(llm.tokenizer, c.prefix, c.suffix) for c in cases]
    middles = _greedy(llm, prompts, max_tokens)
    exact = [m.strip() == c.middle.strip() for c, m in zip(cases, middles)]
    parses = [parse(c.prefix + m + c.suffix) is not None for c, m in zip(cases, middles)]
    return {"exact_match": _share(exact), "parses": _share(parses), "cases": len(cases),
            "examples": [{"name": c.name, "expected": c.middle, "got": m[:CLIP]}
                         for c, m in zip(cases[:EXAMPLES], middles)]}


def completions_that_parse(llm: LLM, cases: list[CompletionCase], max_tokens: int = 256) -> dict:
    """The share of functions completed from signature and docstring (up to the end of the
    model's answer or the first line back at column 0) that parse with a statement after the
    docstring."""
    tok = llm.tokenizer
    eot = [tok.infill_id("eot")] if tok.can_infill else []
    prompts = [dataclasses.replace(python_prompt(tok, c.prompt, stop_at_top_level=True), stop_token_ids=eot)
               for c in cases]
    bodies = [cut_at_dedent(text) for text in _greedy(llm, prompts, max_tokens)]
    parses = [has_a_body(c.prompt + body) for c, body in zip(cases, bodies)]
    return {"parse_rate": _share(parses), "cases": len(cases),
            "examples": [{"name": c.name, "prompt": c.prompt, "got": b[:CLIP]}
                         for c, b in zip(cases[:EXAMPLES], bodies)]}


def chat_answers_with_a_function(llm: LLM, cases: list[ChatCase], max_tokens: int = 384) -> dict:
    """The share of answers to "[INST] Write a Python function that ... [/INST]" whose code (the
    first ``` block, or the whole answer) parses and defines a function."""
    prompts = [chat_prompt(llm.tokenizer, [{"role": "user", "content": c.request}]) for c in cases]
    answers = _greedy(llm, prompts, max_tokens)
    ok = [defines_a_function(answer_code(a)) for a in answers]
    return {"function_rate": _share(ok), "cases": len(cases),
            "examples": [{"request": c.request, "got": a[:CLIP]} for c, a in zip(cases[:EXAMPLES], answers)]}


def cut_at_dedent(text: str) -> str:
    """A function body's completion up to its first non-blank line at column 0."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.strip() and not line[0].isspace():
            return "\n".join(lines[:i]) + "\n"
    return text


def answer_code(answer: str) -> str:
    """The code of a chat answer: its first ``` block (without the language tag), else all of it."""
    if "```" not in answer:
        return answer
    block = answer.split("```")[1]
    tag, newline, rest = block.partition("\n")
    return rest if newline and (not tag.strip() or tag.strip().isidentifier()) else block


def has_a_body(function: str) -> bool:
    """Whether the source of one documented function parses and has more than its docstring."""
    tree = parse(function)
    return tree is not None and isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)) \
        and len(tree.body[0].body) > 1


def defines_a_function(code: str) -> bool:
    tree = parse(textwrap.dedent(code))
    return tree is not None and any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(tree))


def _greedy(llm: LLM, prompts: list[Prompt], max_tokens: int) -> list[str]:
    """The greedy text of each prompt, batched: what `LLM.infill` / `LLM.chat` / `LLM.generate`
    answer one prompt at a time."""
    params = SamplingParams(max_tokens=max_tokens, temperature=0)
    outs = []
    for continues in (True, False):  # chat answers are decoded on their own
        batch = [(i, p) for i, p in enumerate(prompts) if p.continues_prompt == continues]
        results = llm.run_requests([(p.token_ids, p.sampling_params(params)) for _, p in batch], continues)
        outs += [(i, r.outputs[0].text) for (i, _), r in zip(batch, results)]
    return [text for _, text in sorted(outs)]


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0
