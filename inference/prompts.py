"""Prompt formats of Code Llama's abilities, built at token level as Meta's reference does.

    completion   BOS + encode(text)
    infilling    PSM: BOS ▁<PRE> encode(prefix) ▁<SUF> encode_infilling(suffix) ▁<MID>
                 SPM: BOS ▁<PRE> ▁<SUF> encode_infilling(suffix) ▁<MID> encode(prefix)
                 generation stops at ▁<EOT>
    chat         per past turn  BOS encode("[INST] {user} [/INST] {answer} ") EOS
                 last turn      BOS encode("[INST] {user} [/INST]")
                 a system message is folded into the first user message in <<SYS>> tags
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .tokenizer import Tokenizer

FILL_MARKERS = ("<FILL_ME>", "<FILL>")
B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"


@dataclass(frozen=True, slots=True)
class Prompt:
    """Token ids to generate from, plus what the ability adds to the request."""

    token_ids: list[int]
    stop_token_ids: list[int] = field(default_factory=list)
    continues_prompt: bool = True  # the output's text continues the prompt's (see LLMEngine.make_request)


def completion_prompt(tok: Tokenizer, text: str) -> Prompt:
    if not text:
        raise ValueError("the prompt is empty")
    return Prompt(tok.encode(text, bos=True))


def split_fill(code: str) -> tuple[str, str]:
    """Split code at its one <FILL> (or <FILL_ME>) marker into (prefix, suffix)."""
    for marker in FILL_MARKERS:
        if marker in code:
            prefix, _, suffix = code.partition(marker)
            if any(m in suffix for m in FILL_MARKERS):
                raise ValueError("the code has more than one <FILL> marker; infilling fills one hole")
            return prefix, suffix
    raise ValueError("the code has no <FILL> marker to fill")


def infill_prompt(tok: Tokenizer, prefix: str, suffix: str, suffix_first: bool = False) -> Prompt:
    pre, suf, mid = tok.infill_id("prefix"), tok.infill_id("suffix"), tok.infill_id("middle")
    if suffix_first:
        ids = [tok.bos_id, pre, suf] + tok.encode_infilling(suffix) + [mid] + tok.encode(prefix, bos=False)
    else:
        ids = [tok.bos_id, pre] + tok.encode(prefix, bos=False) + [suf] + tok.encode_infilling(suffix) + [mid]
    return Prompt(ids, stop_token_ids=[tok.infill_id("eot")])


def chat_prompt(tok: Tokenizer, messages: list[dict]) -> Prompt:
    """messages: [{"role": "system" | "user" | "assistant", "content": str}, ...], an optional
    system message first, then user and assistant alternating, ending with the user."""
    if not messages:
        raise ValueError("messages is empty")
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                or not isinstance(m.get("content"), str):
            raise ValueError("each message needs a role (system, user or assistant) and a string content")
    dialog = [dict(m) for m in messages]
    if dialog[0]["role"] == "system":
        if len(dialog) < 2 or dialog[1]["role"] != "user":
            raise ValueError("a system message must be followed by a user message")
        dialog = [{"role": "user", "content": B_SYS + dialog[0]["content"] + E_SYS + dialog[1]["content"]}] + dialog[2:]
    roles = [m["role"] for m in dialog]
    if roles[::2] != ["user"] * len(roles[::2]) or roles[1::2] != ["assistant"] * len(roles[1::2]):
        raise ValueError("after the optional system message, roles must alternate user, assistant, user, ...")
    if roles[-1] != "user":
        raise ValueError("the last message must be the user's")
    ids: list[int] = []
    for user, answer in zip(dialog[::2], dialog[1::2]):
        ids += tok.encode(f"{B_INST} {user['content'].strip()} {E_INST} {answer['content'].strip()} ",
                          bos=True, eos=True)
    ids += tok.encode(f"{B_INST} {dialog[-1]['content'].strip()} {E_INST}", bos=True)
    return Prompt(ids, continues_prompt=False)
