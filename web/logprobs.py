"""Log-probabilities in the OpenAI formats: legacy completions (tokens / token_logprobs /
top_logprobs / text_offset) and chat (token, logprob, bytes, top_logprobs)."""

from __future__ import annotations

from inference.outputs import TokenLogprob
from inference.tokenizer import BYTE, CONTROL, Tokenizer

from .protocol.chat import ChatTokenLogprob, ChoiceLogprobs, TopLogprob
from .protocol.completions import CompletionLogprobs


def token_bytes(tok: Tokenizer, token_id: int) -> bytes:
    """The bytes a token adds to the text; a control token (BOS, EOS) is shown by its name."""
    kind = tok.piece_kind[token_id]
    if kind == BYTE:
        return bytes([tok.byte_value[token_id]])
    if kind == CONTROL:
        return tok.id_to_piece(token_id).encode()
    return tok.piece_text[token_id].encode()


def token_str(tok: Tokenizer, token_id: int) -> str:
    """As OpenAI writes a token that is not valid UTF-8 on its own: `bytes:\\xe2\\x80`."""
    raw = token_bytes(tok, token_id)
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


def completion_logprobs(tok: Tokenizer, logprobs: list[TokenLogprob], offset: int) -> tuple[CompletionLogprobs, int]:
    """The legacy format for these tokens, their text offsets counted from `offset`; also returns
    the offset after them (for the next chunk of a stream)."""
    tokens, offsets = [], []
    for lp in logprobs:
        tokens.append(token_str(tok, lp.token_id))
        offsets.append(offset)
        offset += _text_length(tok, lp.token_id)
    top = [{token_str(tok, t): v for t, v in lp.top} for lp in logprobs]
    return CompletionLogprobs(tokens, [lp.logprob for lp in logprobs], top, offsets), offset


def echoed_prompt_logprobs(tok: Tokenizer, prompt_token_ids: list[int],
                           prompt_logprobs: list[TokenLogprob]) -> tuple[CompletionLogprobs, int]:
    """An echoed prompt's part of the legacy format: its first token without a logprob (nothing
    precedes it), then the scored ones; and the offset after them."""
    first = prompt_token_ids[0]
    rest, offset = completion_logprobs(tok, prompt_logprobs, _text_length(tok, first))
    return CompletionLogprobs([token_str(tok, first)], [None], [None], [0]) + rest, offset


def _text_length(tok: Tokenizer, token_id: int) -> int:
    """How far a token moves the text on: a control token (BOS, EOS) adds nothing to it."""
    return 0 if tok.piece_kind[token_id] == CONTROL else len(token_str(tok, token_id))


def chat_logprobs(tok: Tokenizer, logprobs: list[TokenLogprob]) -> ChoiceLogprobs:
    def top(token_id: int, value: float) -> TopLogprob:
        return TopLogprob(token_str(tok, token_id), value, list(token_bytes(tok, token_id)))

    return ChoiceLogprobs([ChatTokenLogprob(token_str(tok, lp.token_id), lp.logprob,
                                            list(token_bytes(tok, lp.token_id)),
                                            [top(t, v) for t, v in lp.top]) for lp in logprobs])
