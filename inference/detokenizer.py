"""Incremental detokenizer for streaming.

It reproduces SentencePiece's decoding one token at a time: control pieces decode to nothing,
`▁` becomes a space, the first piece of a text loses one leading space, and runs of byte pieces
(byte fallback) are assembled into UTF-8 characters. Only whole characters are emitted, so the
concatenation of all deltas equals `decode(prompt + output)[len(decode(prompt)):]`.
"""

from __future__ import annotations

from .tokenizer import BYTE, CONTROL, NORMAL, Tokenizer


def _utf8_length(lead: int) -> int:
    """Length of the UTF-8 sequence a lead byte starts; 0 if it cannot start one."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


class IncrementalDetokenizer:
    __slots__ = ("_tok", "_started", "_pending")

    def __init__(self, tokenizer: Tokenizer, started: bool):
        """`started`: whether text precedes the output (then its first piece keeps its leading
        space, as in `decode(prompt + output)`); False decodes the output as a text of its own."""
        self._tok = tokenizer
        self._started = started
        self._pending = bytearray()  # byte pieces of a character not yet complete

    def push(self, token_id: int) -> str:
        """Text completed by one more token (possibly empty)."""
        kind = self._tok.piece_kind[token_id]
        if kind == BYTE:
            self._pending.append(self._tok.byte_value[token_id])
            self._started = True
            return self._drain(final=False)
        if kind == CONTROL:
            return ""
        out = self._drain(final=True)
        text = self._tok.piece_text[token_id]
        if not self._started and kind == NORMAL and text.startswith(" "):
            text = text[1:]
        self._started = True
        return out + text

    def flush(self) -> str:
        """Whatever bytes are still pending, as replacement characters (end of stream)."""
        return self._drain(final=True)

    def _drain(self, final: bool) -> str:
        """Decode complete characters from the pending bytes; an invalid byte becomes U+FFFD,
        as SentencePiece does. With final=False an incomplete tail stays pending."""
        buf, out, i = self._pending, [], 0
        while i < len(buf):
            n = _utf8_length(buf[i])
            if n == 0:
                out.append("\ufffd")
                i += 1
                continue
            if i + n > len(buf):
                valid_so_far = all(0x80 <= b <= 0xBF for b in buf[i + 1:])
                if not final and valid_so_far:
                    break
                out.append("\ufffd")
                i += 1
                continue
            try:
                out.append(bytes(buf[i:i + n]).decode("utf-8"))
                i += n
            except UnicodeDecodeError:
                out.append("\ufffd")
                i += 1
        del buf[:i]
        return "".join(out)
