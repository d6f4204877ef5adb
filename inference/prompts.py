"""Prompt formats of Code Llama's abilities, built at token level as Meta's reference does.

    completion   BOS + encode(text)                        (python: the same, for Python models)
    infilling    PSM: BOS ▁<PRE> encode(prefix) ▁<SUF> encode_infilling(suffix) ▁<MID>
                 SPM: BOS ▁<PRE> ▁<SUF> encode_infilling(suffix) ▁<MID> encode(prefix)
                 generation stops at ▁<EOT>
    chat         per past turn  BOS encode("[INST] {user} [/INST] {answer} ") EOS
                 last turn      BOS encode("[INST] {user} [/INST]")
                 a system message is folded into the first user message in <<SYS>> tags
    chat (70B)   when the tokenizer has <step>: BOS, then per message
                 encode(" Source: {role}[\nDestination: {destination}]") [encode("\n\n {content}")] <step>,
                 then encode(" Source: assistant\nDestination: user") encode("\n\n "); stops at <step>
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .sampling_params import SamplingParams
from .tokenizer import Tokenizer

FILL_MARKERS = ("<FILL_ME>", "<FILL>")
B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
# Meta's reference refuses dialogs that contain these (they would let a user forge turns).
SPECIAL_TAGS = (B_INST, E_INST, "<<SYS>>", "<</SYS>>", "<step>")
DEFAULT_SYSTEM = "Provide answers in Python"
# A new top-level Python statement after the first line ends a code completion.
TOP_LEVEL_STOPS = ["\ndef ", "\nclass ", "\nasync def ", "\n@", "\nif ", "\nfor ", "\nwhile ", "\nwith ",
                   "\ntry:", "\nimport ", "\nfrom ", "\nprint(", "\n#", "\n```"]


@dataclass(frozen=True, slots=True)
class Prompt:
    """Token ids to generate from, plus what the ability adds to the request."""

    token_ids: list[int]
    stop_token_ids: list[int] = field(default_factory=list)
    continues_prompt: bool = True  # the output's text continues the prompt's (see EngineRequest)
    stop: list[str] = field(default_factory=list)  # stop strings the format adds

    def sampling_params(self, params: SamplingParams) -> SamplingParams:
        """`params` with this prompt's stop tokens and stop strings added."""
        return dataclasses.replace(
            params, stop_token_ids=params.stop_token_ids + [t for t in self.stop_token_ids
                                                            if t not in params.stop_token_ids],
            stop=params.stop + [s for s in self.stop if s not in params.stop])


def completion_prompt(tok: Tokenizer, text: str) -> Prompt:
    if not text:
        raise ValueError("the prompt is empty")
    return Prompt(tok.encode(text, bos=True))


def python_prompt(tok: Tokenizer, code: str, stop_at_top_level: bool = False) -> Prompt:
    """Code completion for the Python models; optionally stops at a new top-level statement."""
    prompt = completion_prompt(tok, code)
    return dataclasses.replace(prompt, stop=list(TOP_LEVEL_STOPS)) if stop_at_top_level else prompt


def split_fill(code: str) -> tuple[str, str]:
    """Split code at its one <FILL> (or <FILL_ME>) marker into (prefix, suffix)."""
    found = [m for m in FILL_MARKERS for _ in range(code.count(m))]
    if not found:
        raise ValueError("the code has no <FILL> marker to fill")
    if len(found) > 1:
        raise ValueError("the code has more than one <FILL> marker; infilling fills one hole")
    prefix, _, suffix = code.partition(found[0])
    return prefix, suffix


def infill_prompt(tok: Tokenizer, prefix: str, suffix: str, suffix_first: bool = False) -> Prompt:
    """The output decodes as Meta's `decode_infilling` would: the prompt holds text, so the
    middle's first piece keeps its leading space as a real one."""
    pre, suf, mid = tok.infill_id("prefix"), tok.infill_id("suffix"), tok.infill_id("middle")
    if suffix_first:
        ids = [tok.bos_id, pre, suf] + tok.encode_infilling(suffix) + [mid] + tok.encode(prefix, bos=False)
    else:
        ids = [tok.bos_id, pre] + tok.encode(prefix, bos=False) + [suf] + tok.encode_infilling(suffix) + [mid]
    return Prompt(ids, stop_token_ids=[tok.infill_id("eot")])


def chat_prompt(tok: Tokenizer, messages: list[dict]) -> Prompt:
    """messages: [{"role": "system" | "user" | "assistant", "content": str}, ...], an optional
    system message first, then user and assistant alternating, ending with the user. With a
    tokenizer that has <step> (70B Instruct), a message may carry a "destination" too."""
    system, turns = _split_dialog(messages)
    if tok.step_id is not None:
        return _step_chat_prompt(tok, [{"role": "system", "content": ""} if system is None else system] + turns)
    if system is not None:
        turns = [{"role": "user", "content": B_SYS + system["content"] + E_SYS + turns[0]["content"]}] + turns[1:]
    ids: list[int] = []
    for user, answer in zip(turns[::2], turns[1::2]):
        ids += tok.encode(f"{B_INST} {user['content'].strip()} {E_INST} {answer['content'].strip()} ",
                          bos=True, eos=True)
    ids += tok.encode(f"{B_INST} {turns[-1]['content'].strip()} {E_INST}", bos=True)
    return Prompt(ids, continues_prompt=False)


def replayed_chat(tok: Tokenizer, messages: list[dict]) -> list[dict]:
    """A conversation as a client replays it (role and content only, as OpenAI's format keeps
    it), with what the 70B format's replies carried: each was generated after `Destination:
    user`, and Meta's chat_completion returns it with that destination."""
    if tok.step_id is None:
        return messages
    return [{**m, "destination": "user"} if m["role"] == "assistant" and m.get("destination") is None else m
            for m in messages]


def _step_chat_prompt(tok: Tokenizer, dialog: list[dict]) -> Prompt:
    """Meta's `dialog_prompt_tokens`: the system turn (possibly empty) then alternating user and
    assistant turns, each closed by <step>; the reply is decoded on its own."""
    ids = [tok.bos_id]
    for m in dialog:
        headers = [f"Source: {m['role'].strip()}"]
        if m.get("destination") is not None:
            headers.append(f"Destination: {m['destination'].strip()}")
        ids += tok.encode(" " + "\n".join(headers), bos=False)
        if m["content"]:
            ids += tok.encode("\n\n " + m["content"].strip(), bos=False)
        ids.append(tok.step_id)
    ids += tok.encode(" Source: assistant\nDestination: user", bos=False) + tok.encode("\n\n ", bos=False)
    return Prompt(ids, stop_token_ids=[tok.step_id], continues_prompt=False)


def _split_dialog(messages: list[dict]) -> tuple[dict | None, list[dict]]:
    """(the system message or None, the user/assistant turns), validated."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                or not isinstance(m.get("content"), str):
            raise ValueError("each message needs a role (system, user or assistant) and a string content")
        if not isinstance(m.get("destination", ""), (str, type(None))):
            raise ValueError("a message's destination must be a string")
        tags = [t for t in SPECIAL_TAGS if t in m["content"]]
        if tags:
            raise ValueError(f"messages may not contain Code Llama's special tags ({', '.join(tags)})")
    system, turns = (messages[0], messages[1:]) if messages[0]["role"] == "system" else (None, messages)
    roles = [m["role"] for m in turns]
    if not roles:
        raise ValueError("a system message must be followed by a user message")
    if roles[::2] != ["user"] * len(roles[::2]) or roles[1::2] != ["assistant"] * len(roles[1::2]):
        raise ValueError("after the optional system message, roles must alternate user, assistant, user, ...")
    if roles[-1] != "user":
        raise ValueError("the last message must be the user's")
    return system, list(turns)
