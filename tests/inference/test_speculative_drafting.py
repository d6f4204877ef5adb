"""Model-free drafting: prompt lookup over a sequence's own tokens, the suffix cache over recent
outputs, their confidences, and the per-sequence calibration that adapts draft lengths."""

import math
import random

import pytest

from inference.prompts import infill_prompt
from inference.speculative import (Calibration, Draft, PromptLookup, Speculator, StepTimes, SuffixCache,
                                   infill_suffix_span, plan)
from inference.speculative.draft import continuation_confidence
from inference.speculative.ngram_index import NgramIndex
from inference.tokenizer import Tokenizer
from tests.models import OWN_TOKENIZER


def distinct(n: int, start: int = 100) -> list[int]:
    return list(range(start, start + n))


# --- prompt lookup --------------------------------------------------------------------------------

def test_an_edit_copies_the_rest_of_the_file_it_was_given():
    file = random.Random(0).sample(range(100, 5000), 300)
    seq = PromptLookup([1] + file + [7, 8])  # the file, then the request to give it back
    seq.extend(file[:40])  # the model has rewritten its first 40 tokens
    draft = seq.propose(8)
    assert draft.tokens == tuple(file[40:48]) and draft.source == "prompt"
    # the match is 32 tokens or more (the cap on measuring it): confidence follows the rule of succession
    assert draft.probs == tuple(continuation_confidence(32 + j) for j in range(8))
    seq.extend(file[40:45])
    assert seq.propose(3).tokens == tuple(file[45:48])


def test_the_longest_match_wins_then_the_latest():
    a, b, c, x, y = 11, 12, 13, 14, 15
    seq = PromptLookup([a, b, c, 21, 22, x, b, c, 31, 32], sizes=[2])  # "b c" twice, after a and after x
    seq.extend([a, b, c])
    assert seq.propose(2).tokens == (21, 22)  # "a b c" matches three tokens there, two at the later one
    seq.extend([y, b, c])  # "y b c": both earlier "b c" match two tokens; the latest of them wins
    assert seq.propose(2).tokens == (y, b)


def test_the_sequences_own_output_is_drafted_from_too():
    seq = PromptLookup([1, 2, 3])
    loop = distinct(6)
    seq.extend(loop + loop[:3])  # the output repeats itself
    assert seq.propose(4).tokens == tuple(loop[3:6] + loop[:1])


def test_no_draft_without_an_earlier_occurrence():
    seq = PromptLookup(distinct(50))
    assert seq.propose(4) is None  # the last tokens occur only where they are
    seq.extend([7])
    assert seq.propose(4) is None
    assert PromptLookup([5, 6, 5, 6]).propose(0) is None


def test_an_infill_prefers_continuing_into_its_suffix_and_stops_where_it_ends():
    tok = Tokenizer(OWN_TOKENIZER)
    suf, mid = tok.infill_id("suffix"), tok.infill_id("middle")
    for suffix_first in (False, True):
        ids = infill_prompt(tok, "def area(r):\n    ", "\n    return pi * r * r\n", suffix_first).token_ids
        start, end = infill_suffix_span(ids, suf, mid)
        assert ids[start - 1] == suf and ids[end] == mid
        assert ids[start:end] == tok.encode_infilling("\n    return pi * r * r\n")
    assert infill_suffix_span(tok.encode("def f(): pass", bos=True), suf, mid) is None

    a, b = 11, 12
    prefix, suffix = [5, a, b, 21, 22], [a, b, 31, 32]
    ids = [1, 900] + prefix + [901] + suffix + [902]  # PSM with made-up control ids
    span = infill_suffix_span(ids, 901, 902)
    plain, infill = PromptLookup(ids), PromptLookup(ids, preferred=span)
    for seq in (plain, infill):
        seq.extend([a, b])
    assert plain.propose(4).tokens == (31, 32, 902, a)  # the latest match, straight on
    assert infill.propose(4).tokens == (31, 32)  # the suffix, and no ▁<MID>
    longer = PromptLookup(ids, preferred=span)
    longer.extend([5, a, b])  # "5 a b" matches three tokens in the prefix, two in the suffix
    assert longer.propose(2).tokens == (21, 22)  # the suffix is preferred among equal matches only


def test_the_ngram_index_keeps_the_latest_positions_per_ngram_and_forgets_the_oldest():
    index = NgramIndex([2, 3], per_key=2)
    for end in (10, 20, 30):
        index.add([5, 6, 7], end)
    index.add([6, 7], 35)  # a window shorter than the longest size: its 2-gram only
    assert index.longest([9, 6, 7]) == (2, [35, 30])
    assert index.longest([5, 6, 7]) == (3, [30, 20])
    assert index.longest([8, 7]) is None
    index.drop_before(25)
    assert index.longest([5, 6, 7]) == (3, [30])
    index.forget([5, 6, 7], 30)  # the 3-gram's occurrences all evicted; "6 7" ended at 35 too
    assert index.longest([5, 6, 7]) == (2, [35, 30]) and len(index) == 1
    with pytest.raises(ValueError):
        NgramIndex([0, 2], 4)


# --- the suffix cache -----------------------------------------------------------------------------

def test_a_repeated_request_drafts_the_previous_answer_from_its_first_token():
    prompt, answer = distinct(30), distinct(40, start=1000)
    cache = SuffixCache()
    cache.add(answer, prompt)
    draft = cache.propose(prompt, 8)  # nothing generated yet: the prompt's end leads to the answer
    assert draft.tokens == tuple(answer[:8]) and draft.source == "suffix"
    assert cache.propose(prompt + answer[:20], 5).tokens == tuple(answer[20:25])
    assert cache.propose(prompt + answer, 5) is None  # the answer ended there: nothing follows


def test_the_most_frequent_continuation_is_drafted_with_its_frequency():
    ctx, x, y, z = [1, 2, 3], 50, 60, 70
    cache = SuffixCache(sizes=[2, 3])
    for tail in ([x, y, 80], [x, z, 81], [x, y, 82]):
        cache.add(tail, ctx)
    draft = cache.propose([9] + ctx, 3)
    assert draft.tokens[:2] == (x, y)
    # x follows "1 2 3" in all three outputs; y follows "1 2 3 x" in two of three; then 80 or 82 (one each)
    assert draft.probs[0] == pytest.approx(3 / 3 * continuation_confidence(3))
    assert draft.probs[1] == pytest.approx(2 / 3 * continuation_confidence(4))
    assert draft.tokens[2] == 82 and draft.probs[2] == pytest.approx(1 / 2 * continuation_confidence(5))


def test_drafts_never_run_from_one_stored_output_into_the_next():
    cache = SuffixCache()
    cache.add([10, 11, 12])
    cache.add([13, 14, 15])
    assert cache.propose([10, 11], 5).tokens == (12,)


def test_the_cache_is_bounded_and_forgets_its_oldest_outputs():
    cache = SuffixCache(max_tokens=200, sizes=[2, 3, 4])
    rng = random.Random(1)
    outputs = [rng.sample(range(100, 30000), 30) for _ in range(100)]
    for out in outputs:
        cache.add(out, [7, 8])
    assert cache.num_tokens <= 200 and cache.num_outputs == 200 // 32
    assert cache.propose(outputs[0][:5], 3) is None  # evicted
    assert cache.propose(outputs[-1][:5], 3).tokens == tuple(outputs[-1][5:8])
    # memory stays bounded too: the ring of tokens and the n-grams indexed
    assert len(cache._ring) <= 2 * 200 + 2 * 32 and len(cache._index) <= 3 * 200 + 3
    assert all(len(links) <= 2 * 200 + 2 * 32 for links in cache._index._previous.values())
    huge = list(range(1000, 1500))
    cache.add(huge)
    assert cache.num_outputs == 1 and cache.propose(huge[-10:-5], 2).tokens == tuple(huge[-5:-3])


def test_a_backlog_of_outputs_is_indexed_newest_first_within_its_budget():
    """Outputs stored while nobody proposed (a busy server) are indexed at the next proposal,
    only the newest that fit in index_backlog tokens; the cache keeps working past them."""
    cache = SuffixCache(max_tokens=400, sizes=[2, 3], index_backlog=60)
    outputs = [distinct(28, start=1000 + 100 * i) for i in range(6)]  # 30 tokens each with their context
    for out in outputs:
        cache.add(out, [7, 8])
    assert cache.propose(outputs[-1][:4], 2).tokens == tuple(outputs[-1][4:6])
    assert cache.propose(outputs[-2][:4], 2).tokens == tuple(outputs[-2][4:6])
    assert cache.propose(outputs[0][:4], 2) is None  # too old when indexed: never matched
    for i in range(20):  # evicting the unindexed outputs forgets nothing the newer ones hold
        cache.add(distinct(28, start=5000 + 100 * i), [7, 8])
        assert cache.propose([5000 + 100 * i, 5001 + 100 * i], 1).tokens == (5002 + 100 * i,)
    assert cache.num_tokens <= 400


# --- calibration and adaptive lengths -------------------------------------------------------------

def test_rejections_shorten_the_drafts_to_none_and_acceptances_lengthen_them_again():
    times = StepTimes((1, 8), ((10.0, 10.1, 10.2, 10.3, 10.4), (10.0, 12.0, 14.0, 16.0, 18.0)))
    cal = Calibration()
    raw = Draft((1, 2, 3, 4), (0.8, 0.8, 0.8, 0.8), "prompt")
    assert cal.calibrate(raw).probs == pytest.approx(raw.probs)

    def length() -> int:  # a batch of 8 sequences with this draft
        return plan([cal.calibrate(raw)] * 8, times)[0]

    lengths = [length()]
    while lengths[-1] and len(lengths) < 20:
        cal.update(cal.calibrate(raw), 0)  # the first token rejected every time
        lengths.append(length())
    assert lengths[0] == 4 and lengths[-1] == 0 and lengths == sorted(lengths, reverse=True), lengths
    for _ in range(20):
        if length() == 4:
            break
        cal.update(cal.calibrate(raw), 4)
    assert length() == 4
    for _ in range(10):
        cal.update(cal.calibrate(raw), 4)
    assert cal.calibrate(raw).probs[0] > 0.9  # better than the drafter expected
    with pytest.raises(ValueError):
        cal.update(raw, 5)


def test_calibration_learns_only_from_the_tokens_verification_observed():
    cal = Calibration(decay=0.5, prior=2.0)
    draft = Draft((1, 2, 3, 4), (0.9, 0.8, 0.7, 0.6), "suffix")
    cal.update(draft, 1)  # token 0 accepted, token 1 rejected, tokens 2 and 3 unobserved
    seen, expected = (1 + 1) / (2 + 2), (0.9 + 0.8 + 1) / (2 + 2)  # with one pseudo-token each
    assert cal.bias == pytest.approx(math.log(seen / (1 - seen)) - math.log(expected / (1 - expected)))
    cal.update(draft, 4)
    seen, expected = (0.5 * 1 + 4 + 1) / (0.5 * 2 + 4 + 2), (0.5 * 1.7 + 3.0 + 1) / (0.5 * 2 + 4 + 2)
    assert cal.bias == pytest.approx(math.log(seen / (1 - seen)) - math.log(expected / (1 - expected)))
    assert cal.calibrate(draft).confidences == draft.confidences and cal.calibrate(draft).probs[0] > 0.9


# --- the speculator -------------------------------------------------------------------------------

def test_modes_choose_the_drafters():
    prompt, answer = distinct(20), distinct(30, start=500)
    with pytest.raises(ValueError):
        Speculator("sometimes")
    spec = {mode: Speculator(mode, num_speculative_tokens=4) for mode in ("auto", "ngram", "suffix", "off")}
    for s in spec.values():
        first = s.start(prompt)
        s.extend(first, answer)
        s.finish(first)
    states = {mode: s.start(prompt) for mode, s in spec.items()}
    assert spec["suffix"].propose(states["suffix"]).tokens == tuple(answer[:4])  # the earlier answer
    assert spec["auto"].propose(states["auto"]).source == "suffix"
    assert spec["ngram"].propose(states["ngram"]) is None  # the prompt alone does not repeat
    assert spec["off"].propose(states["off"]) is None
    for mode in ("auto", "ngram"):
        spec[mode].extend(states[mode], prompt[:6])  # the output starts repeating the prompt
        assert spec[mode].propose(states[mode], max_tokens=3).tokens == tuple(prompt[6:9])
    assert spec["suffix"].propose(states["suffix"], max_tokens=2).tokens == tuple(answer[:2])


def test_auto_takes_the_draft_expected_to_keep_more_tokens():
    spec = Speculator("auto", num_speculative_tokens=6)
    answer = [60, 61, 62, 63, 8, 9, 300, 301, 302, 303, 304, 305]
    for _ in range(3):
        other = spec.start([5, 6, 7])
        spec.extend(other, answer)
        spec.finish(other)
    seq = spec.start([70, 71, 8, 9, 400, 401, 402, 403, 404, 405])
    spec.extend(seq, answer[:6])  # "8 9" matches two tokens in the prompt, six in the stored answers
    suffix, prompt = spec.suffix.propose(answer[:6], 6), seq.lookup.propose(6)
    assert suffix.expected_accepted() > prompt.expected_accepted()
    assert spec.propose(seq).tokens == suffix.tokens == tuple(answer[6:])
    for _ in range(5):  # this sequence's suffix drafts keep failing: prompt lookup takes over
        spec.record(seq, seq.calibrations["suffix"].calibrate(suffix), 0)
    assert spec.propose(seq).tokens == prompt.tokens == (400, 401, 402, 403, 404, 405)
