"""A scripted model for the pages' tests: its greedy answers are known from construction.

    chat      <script>alert(1)</script> ... a fenced Python block ..., then an endless cycle
              (so Stop always lands mid-answer; a finite answer is asked for with max_tokens)
    infill    ▁<MID> -> a known middle, then ▁<EOT>
    complete  "def add(a, b):" -> a known continuation, then EOS

Every token is used once (a successor map is a function of the last token), so the texts are
spelled with distinct SentencePiece pieces, found by `distinct_pieces`."""

from __future__ import annotations

from dataclasses import dataclass

from inference.prompts import chat_prompt
from inference.tokenizer import BYTE, NORMAL, Tokenizer
from tests.models import OWN_TOKENIZER, chain

CHAT_TEXT = "<script>alert(1)</script> Use: ```python\nsorted(xs)```"
CYCLE_TEXT = " la di da"
INFILL_TEXT = "result = s.encode('ascii')"
COMPLETION_PROMPT = "def add(a, b):"
COMPLETION_TEXT = " return a + b"


def distinct_pieces(tok: Tokenizer, text: str, used: set[int]) -> list[int]:
    """Token ids that decode to `text`, none repeated nor in `used` (longest pieces first)."""
    by_text: dict[str, list[int]] = {}
    for i in range(tok.vocab_size):
        if tok.piece_kind[i] == NORMAL:
            by_text.setdefault(tok.piece_text[i], []).append(i)
        elif tok.piece_kind[i] == BYTE and tok.byte_value[i] < 128:
            by_text.setdefault(chr(tok.byte_value[i]), []).append(i)
    ids, at = [], 0
    while at < len(text):
        found = next(((n, i) for n in range(min(16, len(text) - at), 0, -1)
                      for i in by_text.get(text[at:at + n], []) if i not in used), None)
        assert found is not None, f"no unused piece spells {text[at:]!r}"
        n, i = found
        ids.append(i)
        used.add(i)
        at += n
    return ids


@dataclass(frozen=True)
class PageScript:
    tok: Tokenizer
    chat_ids: list[int]  # the finite part of the chat answer
    cycle_ids: list[int]
    infill_ids: list[int]
    completion_ids: list[int]

    @property
    def chat_text(self) -> str:
        return self.tok.decode(self.chat_ids)

    @property
    def infill_text(self) -> str:
        return self.tok.decode_infilling(self.infill_ids)

    @property
    def completion_text(self) -> str:
        prompt_ids = self.tok.encode(COMPLETION_PROMPT, bos=True)
        return self.tok.decode(prompt_ids + self.completion_ids)[len(self.tok.decode(prompt_ids)):]


def make_page_script() -> tuple[PageScript, dict[int, int]]:
    tok = Tokenizer(OWN_TOKENIZER)
    chat_last = chat_prompt(tok, [{"role": "user", "content": "hi"}]).token_ids[-1]
    completion_last = tok.encode(COMPLETION_PROMPT)[-1]
    used = {tok.bos_id, tok.eos_id, chat_last, completion_last, *(tok.infill_id(k) for k in
                                                                   ("prefix", "suffix", "middle", "eot"))}
    script = PageScript(tok, distinct_pieces(tok, CHAT_TEXT, used), distinct_pieces(tok, CYCLE_TEXT, used),
                        distinct_pieces(tok, INFILL_TEXT, used),
                        distinct_pieces(tok, COMPLETION_TEXT, used))
    successor = {**chain([chat_last, *script.chat_ids, *script.cycle_ids]), script.cycle_ids[-1]: script.cycle_ids[0],
                 **chain([tok.infill_id("middle"), *script.infill_ids, tok.infill_id("eot")]),
                 **chain([completion_last, *script.completion_ids, tok.eos_id])}
    return script, successor
