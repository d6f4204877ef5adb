"""Stop-string matching on its own: the fast partial-match search agrees with the obvious one,
and a sequence keeps only the text it has not handed out yet (so matching stays linear)."""

import random

from inference import SamplingParams
from inference.detokenizer import IncrementalDetokenizer
from inference.output_processor import SequenceOutput, find_stop, partial_stop_length
from inference.tokenizer import Tokenizer
from tests.models import OWN_TOKENIZER


def _partial_by_brute_force(text: str, stops: list[str]) -> int:
    return max([k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])], default=0)


def test_partial_stop_length_agrees_with_brute_force():
    rng = random.Random(0)
    for _ in range(3000):
        text = "".join(rng.choice("ab ") for _ in range(rng.randint(0, 12)))
        stops = ["".join(rng.choice("ab ") for _ in range(rng.randint(1, 8))) for _ in range(rng.randint(1, 4))]
        assert partial_stop_length(text, stops) == _partial_by_brute_force(text, stops), (text, stops)


def test_find_stop_finds_the_earliest_stop_ending_in_the_new_text():
    assert find_stop("xxabcab", 5, ["cab", "bca"]) == 3
    assert find_stop("abcab", 5, ["ab"]) == -1  # nothing new
    assert find_stop("aab", 2, ["aab", "ab"]) == 0


def test_a_sequence_holds_only_unsent_text_and_streams_it_exactly():
    tok = Tokenizer(OWN_TOKENIZER)
    text = "def f(x):\n    return x + 1\n" * 200
    stops = ["\nclass ", "return y", "=" * 40]
    out = SequenceOutput(0, IncrementalDetokenizer(tok, started=False), SamplingParams(max_tokens=None, stop=stops),
                         eos_id=None, num_prompt_tokens=1, max_model_len=1 << 20)
    streamed, held = [], 0
    ids = tok.encode(text, bos=False)
    for token_id in ids:
        assert out.add_token(token_id, None) is None
        streamed.append(out.take_delta(None).text)
        held = max(held, len(out.unsent))
    streamed.append(out.take_delta("length").text)
    assert "".join(streamed) == tok.decode(ids) == text
    assert held < max(map(len, stops))
