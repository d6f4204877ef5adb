"""What the pages' scripted model answers (built by conftest.make_page_script):

    chat      <script>alert(1)</script> ... a fenced Python block ..., then " la di da" forever
    infill    ▁<MID> -> INFILL_TEXT, then ▁<EOT>
    complete  COMPLETION_PROMPT -> COMPLETION_TEXT, then EOS

A successor map is a function of the last token, so no token may come twice: the texts are
spelled with distinct SentencePiece pieces (byte pieces included), found by `distinct_pieces`."""

from __future__ import annotations

from inference.tokenizer import BYTE, NORMAL, Tokenizer

CHAT_TEXT = "<script>alert(1)</script> Use: ```python\nsorted(xs)```"
CYCLE_TEXT = " la di da"
INFILL_TEXT = "result = s.encode('ascii')"
COMPLETION_PROMPT = "def add(a, b):"
COMPLETION_TEXT = " return a + b"


def distinct_pieces(tok: Tokenizer, text: str, used: set[int]) -> list[int]:
    """Token ids that decode to `text`, none repeated nor in `used` (longest pieces first); the
    ids are added to `used`."""
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
