"""SentencePiece tokenizer and the incremental detokenizer, against SentencePiece itself."""

import random

import pytest

from inference.detokenizer import IncrementalDetokenizer
from inference.tokenizer import Tokenizer
from tests.models import CODELLAMA_LIKE_TOKENIZER, OWN_TOKENIZER, SHARED_TESTDATA

TOKENIZERS = [OWN_TOKENIZER] + ([CODELLAMA_LIKE_TOKENIZER] if CODELLAMA_LIKE_TOKENIZER.exists() else [])
SAMPLES = ["def f(x):\n    return x + 1\n", "  leading spaces", "中文 and emoji 😀\tend", "a<PRE>b", "x"]


@pytest.fixture(scope="module", params=TOKENIZERS, ids=lambda p: p.stem)
def tok(request):
    return Tokenizer(request.param)


def test_round_trip_with_bos_and_eos(tok):
    for text in SAMPLES:
        ids = tok.encode(text, bos=True, eos=True)
        assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
        assert tok.decode(ids) == text


def test_infill_pieces_are_found_by_name(tok):
    assert tok.can_infill
    for name, piece in [("prefix", "▁<PRE>"), ("suffix", "▁<SUF>"), ("middle", "▁<MID>"), ("eot", "▁<EOT>")]:
        assert tok.id_to_piece(tok.infill_id(name)) == piece


def test_encode_infilling_matches_metas_reference(tok):
    for text in SAMPLES + [" starts with a space", "\n    indented"]:
        meta = tok.sp.encode("☺" + text)[2:]  # Meta's `encode_infilling`
        assert tok.encode_infilling(text) == meta
        assert tok.decode_infilling(tok.encode_infilling(text)) == text
        # plain encoding adds the implicit leading space that infilling must not
        assert tok.decode(tok.encode_infilling(text)) == text.removeprefix(" ")


@pytest.mark.skipif(not (SHARED_TESTDATA / "llama2-tokenizer.model").exists(), reason="needs ../shared/testdata")
def test_a_tokenizer_without_infill_pieces_cannot_infill():
    tok = Tokenizer(SHARED_TESTDATA / "llama2-tokenizer.model")
    assert not tok.can_infill
    with pytest.raises(ValueError, match="cannot infill"):
        tok.infill_id("middle")


def test_incremental_decoding_equals_sentencepiece_on_random_ids(tok):
    rng = random.Random(0)
    byte_ids = [tok.sp.piece_to_id(f"<0x{b:02X}>") for b in "中😀é".encode() + b"\n a\xff"]
    for _ in range(2000):
        ids = [rng.randrange(tok.vocab_size) for _ in range(rng.randrange(12))]
        ids = [rng.choice(byte_ids) if rng.random() < 0.6 else i for i in ids]
        detok = IncrementalDetokenizer(tok, started=False)
        streamed = "".join(detok.push(i) for i in ids) + detok.flush()
        assert streamed == tok.decode(ids), ids


def test_deltas_continue_the_prompt_and_hold_partial_characters(tok):
    prompt = tok.encode("x =")
    output = tok.encode(" '中😀' + y", bos=False)
    detok = IncrementalDetokenizer(tok, started=tok.has_text(prompt))
    deltas = [detok.push(i) for i in output]
    assert "".join(deltas) == tok.decode(prompt + output)[len(tok.decode(prompt)):]
    assert "".join(deltas).startswith(" ")
    assert all("\ufffd" not in d for d in deltas)
