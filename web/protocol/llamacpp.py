"""llama.cpp server's native routes (/infill, /tokenize, /detokenize), which editor plugins such
as llama.vim and llama.vscode speak. Like llama.cpp, fields this server does not know (its many
sampler and cache knobs) are ignored rather than refused; the types of known ones are checked."""

from __future__ import annotations

import msgspec

from .common import Int64, StopList


class ExtraChunk(msgspec.Struct, kw_only=True):
    text: str
    filename: str = "tmp"


class InfillRequest(msgspec.Struct, kw_only=True):
    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[ExtraChunk] = []  # context from other files, put before the prefix
    prompt: str = ""  # appended to the prefix, as llama.cpp does
    n_predict: int = -1  # -1: until the end of the infill or of the context window
    # llama.cpp's defaults, so that its clients get what they expect
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    seed: Int64 = -1  # negative: random
    stop: StopList = []
    stream: bool = False
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    ignore_eos: bool = False


class InfillTimings(msgspec.Struct):
    prompt_n: int
    prompt_ms: float
    predicted_n: int
    predicted_ms: float
    predicted_per_second: float | None


class InfillResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A whole answer, a stream's last chunk (stop true), or a stream's text chunk (the rest left out)."""

    content: str
    stop: bool
    index: int = 0
    model: str | None = None
    stop_type: str | None = None  # "eos" (the infill ended, or a stop string) or "limit" (n_predict)
    tokens_predicted: int | None = None
    tokens_evaluated: int | None = None
    tokens_cached: int | None = None
    truncated: bool | None = None
    timings: InfillTimings | None = None


class TokenizeRequest(msgspec.Struct, kw_only=True):
    content: str
    add_special: bool = False  # prepend BOS
    with_pieces: bool = False


class TokenPiece(msgspec.Struct):
    id: int
    piece: str | list[int]  # the piece's text, or its bytes where they are not UTF-8 on their own


class TokenizeResponse(msgspec.Struct):
    tokens: list[int | TokenPiece]  # ids, or {id, piece} with with_pieces


class DetokenizeRequest(msgspec.Struct, kw_only=True):
    tokens: list[int]


class DetokenizeResponse(msgspec.Struct):
    content: str
