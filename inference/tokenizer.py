"""SentencePiece tokenizer with Code Llama's infilling pieces and Meta's encode/decode semantics."""

from __future__ import annotations

from pathlib import Path

import sentencepiece as spm

# Piece kinds, as the incremental detokenizer needs them.
NORMAL, CONTROL, BYTE, UNKNOWN = 0, 1, 2, 3

INFILL_PIECES = {"prefix": "▁<PRE>", "suffix": "▁<SUF>", "middle": "▁<MID>", "eot": "▁<EOT>"}
_INFILL_MARKER = "☺"  # Meta's trick to encode/decode without the implicit leading space


class Tokenizer:
    def __init__(self, model_file: str | Path):
        model_file = Path(model_file)
        if not model_file.is_file():
            raise FileNotFoundError(f"{model_file}: no SentencePiece tokenizer.model")
        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.path = model_file
        self.vocab_size: int = self.sp.vocab_size()
        self.bos_id: int = self.sp.bos_id()
        self.eos_id: int = self.sp.eos_id()
        self._infill = {name: self._piece_id(piece) for name, piece in INFILL_PIECES.items()}
        self.step_id = self._piece_id("<step>")  # 70B Instruct's turn separator
        self._marker_ids = self.sp.encode(_INFILL_MARKER)
        self.piece_text, self.piece_kind, self.byte_value = self._piece_table()
        self.max_piece_chars = max(map(len, self.piece_text))  # the most text one token stands for

    def _piece_id(self, piece: str) -> int | None:
        idx = self.sp.piece_to_id(piece)
        # piece_to_id answers unk for a piece the vocabulary lacks
        return None if idx == self.sp.unk_id() and piece != self.sp.id_to_piece(idx) else idx

    def _piece_table(self) -> tuple[list[str], bytearray, bytearray]:
        sp = self.sp
        text, kind, value = [], bytearray(self.vocab_size), bytearray(self.vocab_size)
        for i in range(self.vocab_size):
            piece = sp.id_to_piece(i)
            if sp.is_control(i):
                kind[i], t = CONTROL, ""
            elif sp.is_unknown(i):
                kind[i], t = UNKNOWN, " \u2047 "  # how SentencePiece decodes <unk>
            elif sp.is_byte(i):
                kind[i], t = BYTE, ""
                value[i] = int(piece[3:5], 16)
            else:
                t = piece.replace("▁", " ")
            text.append(t)
        return text, kind, value

    # --- plain text ---------------------------------------------------------------------------

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        ids = self.sp.encode(text)
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode(list(ids))

    def has_text(self, ids: list[int]) -> bool:
        """Whether ids decode to any text (control pieces such as BOS decode to none)."""
        return any(self.piece_kind[i] != CONTROL for i in ids)

    def id_to_piece(self, idx: int) -> str:
        return self.sp.id_to_piece(idx)

    # --- infilling ----------------------------------------------------------------------------

    @property
    def can_infill(self) -> bool:
        return all(v is not None for v in self._infill.values())

    def infill_id(self, name: str) -> int:
        """Id of an infilling piece: "prefix", "suffix", "middle" or "eot"."""
        idx = self._infill[name]
        if idx is None:
            raise ValueError(f"this tokenizer has no {INFILL_PIECES[name]!r} piece: the model cannot infill")
        return idx

    def encode_infilling(self, text: str) -> list[int]:
        """Encode without the implicit leading space (Meta's `encode_infilling`)."""
        ids = self.sp.encode(_INFILL_MARKER + text)
        n = len(self._marker_ids)
        if ids[:n] != self._marker_ids:
            raise ValueError(f"cannot encode {text[:20]!r} for infilling: the marker merged with the text")
        return ids[n:]

    def decode_infilling(self, ids: list[int]) -> str:
        """Decode keeping a leading space as a real space (Meta's `decode_infilling`)."""
        return self.sp.decode(self._marker_ids + list(ids))[len(_INFILL_MARKER):]
