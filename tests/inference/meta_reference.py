"""Meta's reference prompt formats (codellama `llama/generation.py` and `llama/tokenizer.py`),
re-derived here on raw SentencePiece so the project's formats are checked against an
independent implementation, not against themselves."""

from __future__ import annotations

from pathlib import Path

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2


class MetaTokenizer:
    def __init__(self, path: Path):
        self.sp = spm.SentencePieceProcessor(model_file=str(path))
        self.bos_id, self.eos_id = self.sp.bos_id(), self.sp.eos_id()
        # Meta looks the pieces up with `piece_to_id(...) or None` (unknown pieces answer 0)
        self.prefix_id = self.sp.piece_to_id("▁<PRE>") or None
        self.suffix_id = self.sp.piece_to_id("▁<SUF>") or None
        self.middle_id = self.sp.piece_to_id("▁<MID>") or None
        self.eot_id = self.sp.piece_to_id("▁<EOT>") or None
        self.step_id = self.sp.piece_to_id("<step>") or None

    def encode(self, s: str, bos: bool, eos: bool) -> list[int]:
        return [self.bos_id] * bos + self.sp.encode(s) + [self.eos_id] * eos

    def encode_infilling(self, s: str) -> list[int]:
        return self.sp.encode("☺" + s)[2:]

    def decode_infilling(self, t: list[int]) -> str:
        return self.sp.decode([self.sp.piece_to_id("☺")] + t)[1:]


def infilling_prompt_tokens(tok: MetaTokenizer, pre: str, suf: str, suffix_first: bool = False) -> list[int]:
    if suffix_first:
        return ([tok.bos_id, tok.prefix_id, tok.suffix_id] + tok.encode_infilling(suf) + [tok.middle_id]
                + tok.encode(pre, bos=False, eos=False))
    return ([tok.bos_id, tok.prefix_id] + tok.encode(pre, bos=False, eos=False) + [tok.suffix_id]
            + tok.encode_infilling(suf) + [tok.middle_id])


def chat_completion_tokens(tok: MetaTokenizer, dialog: list[dict]) -> list[int]:
    """The prompt `Llama.chat_completion` builds for one dialog (tokenizer without <step>)."""
    if dialog[0]["role"] == "system":
        system = "<<SYS>>\n" + dialog[0]["content"] + "\n<</SYS>>\n\n"
        dialog = [{"role": dialog[1]["role"], "content": system + dialog[1]["content"]}] + dialog[2:]
    tokens: list[int] = []
    for prompt, answer in zip(dialog[::2], dialog[1::2]):
        tokens += tok.encode(f"[INST] {prompt['content'].strip()} [/INST] {answer['content'].strip()} ",
                             bos=True, eos=True)
    return tokens + tok.encode(f"[INST] {dialog[-1]['content'].strip()} [/INST]", bos=True, eos=False)


def dialog_prompt_tokens(tok: MetaTokenizer, dialog: list[dict]) -> list[int]:
    """The prompt `Llama._chat_completion_turns` builds (70B Instruct, tokenizer with <step>)."""
    if dialog[0]["role"] != "system":
        dialog = [{"role": "system", "content": ""}] + dialog
    tokens = [tok.bos_id]
    for message in dialog:
        header = [f"Source: {message['role'].strip()}"]
        if message.get("destination") is not None:
            header.append(f"Destination: {message['destination'].strip()}")
        tokens += tok.encode(" " + "\n".join(header), bos=False, eos=False)
        if message["content"]:
            tokens += tok.encode("\n\n " + message["content"].strip(), bos=False, eos=False)
        tokens.append(tok.step_id)
    tokens += tok.encode(" " + "\n".join(["Source: assistant", "Destination: user"]), bos=False, eos=False)
    return tokens + tok.encode("\n\n ", bos=False, eos=False)


def with_step_piece(src: Path, dst: Path) -> Path:
    """A copy of a SentencePiece model with a `<step>` piece, as the 70B Instruct tokenizer has
    (at id 32015 there, replacing the last padding piece; appended to smaller vocabularies)."""
    proto = model_pb2.ModelProto()
    proto.ParseFromString(src.read_bytes())
    step = model_pb2.ModelProto.SentencePiece(piece="<step>", score=0.0,
                                              type=model_pb2.ModelProto.SentencePiece.USER_DEFINED)
    if len(proto.pieces) == 32016:
        proto.pieces[32015].CopyFrom(step)
    else:
        proto.pieces.append(step)
    dst.write_bytes(proto.SerializeToString())
    return dst
