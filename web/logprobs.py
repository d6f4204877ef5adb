"""Log-probabilities in the OpenAI formats: legacy completions (tokens / token_logprobs /
top_logprobs / text_offset) and chat (token, logprob, bytes, top_logprobs).

Tokens join up to the text they come with: where the tokens begin a text of their own (an
echoed prompt, a chat answer), the first word piece loses the leading space that decoding drops
(SentencePiece's dummy prefix), in its string, its bytes and its length."""

from __future__ import annotations

from inference.outputs import TokenLogprob
from inference.tokenizer import BYTE, CONTROL, NORMAL, Tokenizer

from .protocol.chat import ChatTokenLogprob, ChoiceLogprobs, TopLogprob
from .protocol.completions import CompletionLogprobs


def token_bytes(tok: Tokenizer, token_id: int, first: bool = False) -> bytes:
    """The bytes a token adds to the text (`first`: as the first piece of a text); a control
    token (BOS, EOS) is shown by its name."""
    kind = tok.piece_kind[token_id]
    if kind == BYTE:
        return bytes([tok.byte_value[token_id]])
    if kind == CONTROL:
        return tok.id_to_piece(token_id).encode()
    text = tok.piece_text[token_id]
    return (text[1:] if first and kind == NORMAL and text.startswith(" ") else text).encode()


def token_str(tok: Tokenizer, token_id: int, first: bool = False) -> str:
    """As OpenAI writes a token that is not valid UTF-8 on its own: `bytes:\\xe2\\x80`."""
    raw = token_bytes(tok, token_id, first)
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


def first_text_token(tok: Tokenizer, token_ids: list[int]) -> int | None:
    """Index of the first token with text (control tokens have none), None if there is none."""
    return next((i for i, t in enumerate(token_ids) if tok.piece_kind[t] != CONTROL), None)


def completion_logprobs(tok: Tokenizer, logprobs: list[TokenLogprob], offset: int,
                        fresh: bool = False) -> tuple[CompletionLogprobs, int]:
    """The legacy format for these tokens, their text offsets counted from `offset`; also returns
    the offset after them (for the next chunk of a stream). `fresh`: they begin a text. Each
    position's alternatives include the token chosen there, as OpenAI's do (up to k + 1)."""
    first = first_text_token(tok, [lp.token_id for lp in logprobs]) if fresh else None
    tokens, offsets, top = [], [], []
    for i, lp in enumerate(logprobs):
        token = token_str(tok, lp.token_id, i == first)
        tokens.append(token)
        offsets.append(offset)
        offset += 0 if tok.piece_kind[lp.token_id] == CONTROL else len(token)
        alternatives = {token_str(tok, t, i == first): v for t, v in lp.top}
        alternatives.setdefault(token, lp.logprob)
        top.append(alternatives)
    return CompletionLogprobs(tokens, [lp.logprob for lp in logprobs], top, offsets), offset


def echoed_prompt_logprobs(tok: Tokenizer, prompt_token_ids: list[int],
                           prompt_logprobs: list[TokenLogprob]) -> tuple[CompletionLogprobs, int]:
    """An echoed prompt's part of the legacy format: its first token without a logprob (nothing
    precedes it), then the scored ones; and the offset after them."""
    lead = prompt_token_ids[0]
    text = tok.piece_kind[lead] != CONTROL
    first = token_str(tok, lead, first=True)
    rest, offset = completion_logprobs(tok, prompt_logprobs, len(first) if text else 0, fresh=not text)
    return CompletionLogprobs([first], [None], [None], [0]) + rest, offset


def chat_logprobs(tok: Tokenizer, logprobs: list[TokenLogprob], fresh: bool = False) -> ChoiceLogprobs:
    """`fresh`: these tokens begin the answer (whose content loses its leading space)."""
    first = first_text_token(tok, [lp.token_id for lp in logprobs]) if fresh else None

    def top(token_id: int, value: float, at_first: bool) -> TopLogprob:
        return TopLogprob(token_str(tok, token_id, at_first), value, list(token_bytes(tok, token_id, at_first)))

    return ChoiceLogprobs([ChatTokenLogprob(token_str(tok, lp.token_id, i == first), lp.logprob,
                                            list(token_bytes(tok, lp.token_id, i == first)),
                                            [top(t, v, i == first) for t, v in lp.top])
                           for i, lp in enumerate(logprobs)])
