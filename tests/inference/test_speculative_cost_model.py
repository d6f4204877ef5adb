"""The cost model: step times read from a measured table (here a made-up one), and the draft
lengths that maximise a step's expected tokens per second."""

import itertools
import json

import pytest

from inference.config import EngineConfig
from inference.model_shapes import shape_name
from inference.speculative import Draft, StepTimes, plan
from inference.speculative.step_tables import shipped_step_times

# made up, shaped like the real thing: batch 1 bound by reading the weights (extra tokens almost
# free), batch 256 by arithmetic (every extra token costs about what a sequence's token does)
TABLE = StepTimes((1, 8, 64, 256), (
    (6.0, 6.1, 6.2, 6.3, 6.4, 6.5, 6.6, 6.7, 6.8),
    (7.0, 7.4, 7.8, 8.2, 8.6, 9.0, 9.4, 9.8, 10.2),
    (12.0, 16.0, 20.0, 24.0, 28.0, 32.0, 36.0, 40.0, 44.0),
    (30.0, 62.0, 94.0, 126.0, 158.0, 190.0, 222.0, 254.0, 286.0),
))


def draft(*probs: float) -> Draft:
    return Draft(tuple(range(len(probs))), tuple(probs), "prompt")


def test_step_times_are_the_table_between_its_points_and_grow_with_the_batch_past_it():
    assert TABLE.step_ms(8, 8 * 3) == 8.2
    assert TABLE.step_ms(8, 4) == pytest.approx(7.2)  # half an extra token per sequence
    assert TABLE.step_ms(36, 0) == pytest.approx(9.5)  # halfway from batch 8 to 64
    assert TABLE.step_ms(36, 36 * 2) == pytest.approx((7.8 + 20.0) / 2)
    assert TABLE.step_ms(512, 0) == pytest.approx(60.0)
    assert TABLE.step_ms(1, 10) == pytest.approx(7.0)  # past k = 8: along the last segment
    with pytest.raises(ValueError):
        TABLE.step_ms(0, 0)


def test_the_table_is_checked_and_read_from_the_benchmarks_record(tmp_path):
    record = {"batch_sizes": [1, 8], "extra_tokens": [0, 1, 2], "ms": [[5.0, 5.1, 5.2], [6.0, 6.5, 7.0]],
              "eager_ms": [[9.0, 9.1, 9.2], [9.5, 9.9, 10.4]]}
    graphs = StepTimes.from_record(record, verify_graph_batches=8)
    assert graphs.batch_sizes == (1, 8) and graphs.ms == ((5.0, 5.1, 5.2), (6.0, 6.5, 7.0)) and graphs.max_extra == 2
    # decode steps from graphs; verifying steps from graphs up to the engine's largest verify graph, then eager
    assert StepTimes.from_record(record, verify_graph_batches=4).ms == ((5.0, 5.1, 5.2), (6.0, 9.9, 10.4))
    assert StepTimes.from_record(record).ms == ((5.0, 9.1, 9.2), (6.0, 9.9, 10.4))
    path = tmp_path / "verify.json"
    path.write_text(json.dumps({"benchmark": "verify", "verify": record}))
    assert StepTimes.load(path) == StepTimes.from_record(record)
    assert StepTimes.load(path, verify_graph_batches=4) == StepTimes.from_record(record, verify_graph_batches=4)
    for bad in [((8, 1), ((1.0, 2.0), (1.0, 2.0))), ((1,), ((1.0,),)), ((1, 8), ((1.0, 2.0),)),
                ((1,), ((0.0, 1.0),))]:
        with pytest.raises(ValueError):
            StepTimes(*bad)
    with pytest.raises(ValueError):
        StepTimes.from_record({**record, "extra_tokens": [0, 2, 4]})


def test_without_a_table_the_tokens_likely_enough_to_be_kept_are_verified():
    assert plan([draft(0.9, 0.8, 0.5, 0.5), None, draft(0.2, 0.9)], None) == [3, 0, 0]  # gains .9 .72 .36 .18 / .2


def test_a_batch_without_room_for_drafts_plans_nothing():
    assert plan([], TABLE) == plan([], None) == []


def test_at_batch_1_drafting_pays_even_at_low_acceptance():
    assert plan([draft(0.9, 0.9, 0.9, 0.9)], TABLE) == [4]
    assert plan([draft(0.3, 0.3, 0.3)], TABLE) == [3]


def test_at_batch_256_drafting_is_off_and_not_even_worth_trying():
    assert plan([draft(0.8, 0.8, 0.8)] * 256, TABLE) == [0] * 256
    assert not TABLE.may_pay(256, 8)
    assert TABLE.may_pay(1, 8) and TABLE.may_pay(64, 8)


def test_the_host_time_a_verifying_step_cannot_hide_counts_against_it():
    # batch 64, one token each at even odds: 96 expected tokens in 16 ms beat 64 in 12 ms on the GPU alone
    drafts = [draft(0.5)] * 64
    assert plan(drafts, TABLE) == [1] * 64
    # but not once the verifying step also waits 10 ms for the host, which plain steps hide
    assert plan(drafts, TABLE, host_ms=10.0) == [0] * 64
    # a host slower than the GPU bounds plain steps too
    assert TABLE.plain_rate(64, 10.0) == 64 / 12.0 and TABLE.plain_rate(64, 20.0) == 64 / 20.0
    assert TABLE.may_pay(8, 8, host_ms=10.0) and not TABLE.may_pay(256, 8, host_ms=10.0)


def test_the_plan_gives_the_tokens_to_the_drafts_most_likely_to_be_kept():
    drafts = [draft(0.95, 0.95, 0.95, 0.95)] * 8 + [draft(0.2, 0.2)] * 8 + [None] * 48
    lengths = plan(drafts, TABLE)
    assert lengths[:8] == [4] * 8 and lengths[8:] == [0] * 56
    three = draft(0.9, 0.5, 0.1).truncated(2)  # what a step verifies of a draft the plan trims
    assert (three.tokens, three.probs) == ((0, 1), (0.9, 0.5)) and draft(0.9).truncated(0) is None


def test_the_plan_is_the_best_allocation_of_drafted_tokens():
    """Against every allocation (each sequence 0..len tokens) on a small batch: none has a better
    expected tokens per second."""
    drafts = [draft(0.9, 0.7, 0.5), draft(0.6, 0.6), None, draft(0.3)]
    for batch_times in [TABLE, StepTimes((4,), ((10.0, 13.0, 16.0, 19.0),))]:
        def rate(lengths):
            expected = sum(d.expected_accepted(n) for d, n in zip(drafts, lengths) if d is not None)
            return (len(drafts) + expected) / batch_times.step_ms(len(drafts), sum(lengths))

        choices = [range(len(d) + 1) if d is not None else [0] for d in drafts]
        best = max(itertools.product(*choices), key=rate)
        assert rate(plan(drafts, batch_times)) == pytest.approx(rate(best))


def test_the_tables_shipped_for_a_card_and_shape_are_found_and_read():
    path = shipped_step_times("NVIDIA H200", shape_name(32, 4096, 32, 32, 11008))
    times = StepTimes.load(path, verify_graph_batches=64)
    assert times.batch_sizes == (1, 8, 64, 256) and times.max_extra == 8
    assert times.may_pay(1, 5) and times.step_ms(1, 4) < 1.2 * times.step_ms(1, 0)  # batch 1: nearly free
    assert shipped_step_times("NVIDIA H100 80GB HBM3", "7b") is None
    assert shape_name(48, 8192, 64, 8, 22016) == "34b" and shape_name(2, 64, 4, 4, 128) is None
    assert shipped_step_times("NVIDIA H200", None) is None


def test_speculation_is_off_by_default_where_no_table_was_measured(tiny_model):
    cpu = EngineConfig(tiny_model[0], device="cpu")
    assert cpu.speculate == "off" and cpu.speculative_step_times is None
    asked = EngineConfig(tiny_model[0], device="cpu", speculate="auto")
    assert asked.speculate == "auto" and asked.speculative_step_times is None  # drafts kept by MIN_GAIN
