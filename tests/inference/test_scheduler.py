"""The scheduler in plain Python: token budget, chunked prefill, preemption order, abort."""

from inference.config import EngineConfig
from inference.detokenizer import IncrementalDetokenizer
from inference.output_processor import SequenceOutput
from inference.sampling_params import SamplingParams
from inference.scheduler import Scheduler
from inference.sequence import Sequence, Status
from inference.tokenizer import Tokenizer
from tests.models import OWN_TOKENIZER


def make(num_blocks=16, block_size=4, **cfg):
    config = EngineConfig(block_size=block_size, **{"max_num_batched_tokens": 8, "max_num_seqs": 4, **cfg})
    return Scheduler(config, num_blocks)


def add(sched, seq_id, prompt_len, max_tokens=100):
    s = Sequence(seq_id, f"r{seq_id}", 0, list(range(10, 10 + prompt_len)), prompt_len,
                 SamplingParams(max_tokens=max_tokens), seed=0)
    sched.add(s)
    return s


def step(sched, token=7):
    batch = sched.schedule()
    sampled = [[token] if batch.samples[i] else None for i in range(len(batch))]
    sched.postprocess(batch, sampled)
    return batch


def test_long_prompt_is_prefilled_in_chunks_and_decodes_go_first():
    sched = make()
    a = add(sched, 0, 3)
    step(sched)  # a prefilled and sampled
    b = add(sched, 1, 20)
    batch = step(sched)
    assert batch.seqs == [a, b] and batch.num_new_tokens == [1, 7]  # decode first, then a chunk
    assert b.num_computed_tokens == 7 and b.num_output_tokens == 0
    step(sched)
    batch = step(sched)
    assert batch.num_new_tokens == [1, 6] and b.num_output_tokens == 1  # last chunk samples


def test_max_num_seqs_bounds_the_running_set():
    sched = make(max_num_seqs=2, max_num_batched_tokens=64)
    seqs = [add(sched, i, 2) for i in range(4)]
    step(sched)
    assert [s.status for s in seqs] == [Status.RUNNING, Status.RUNNING, Status.WAITING, Status.WAITING]


def test_preemption_takes_the_newest_and_recomputes_its_output():
    sched = make(num_blocks=4, block_size=4, max_num_batched_tokens=64)
    old = add(sched, 0, 7)
    new = add(sched, 1, 7)
    step(sched)  # both admitted with 2 blocks each: the pool is full
    step(sched)  # the 8th token still fits
    assert old.num_tokens == new.num_tokens == 9 and sched.num_preemptions == 0
    step(sched)  # both need a third block: the newest is preempted
    assert sched.num_preemptions == 1
    assert new.status is Status.WAITING and new.block_table == [] and new.num_computed_tokens == 0
    assert new.num_output_tokens == 2  # its output is kept, to be recomputed with the prompt
    assert old.status is Status.RUNNING and old.num_output_tokens == 3


def test_abort_frees_blocks_at_once():
    sched = make()
    a = add(sched, 0, 9)
    step(sched)
    assert sched.block_manager.num_free_blocks < 16
    assert sched.abort("r0") == [a]
    assert a.finish_reason == "abort" and sched.block_manager.num_free_blocks == 16 and not sched.running and not sched.waiting


def test_stop_conditions_finish_sequences():
    """EOS, max_tokens and the context window, decided by each sequence's output processor and
    applied by the scheduler's `finish`."""
    sched = make(max_num_batched_tokens=64, max_model_len=12)
    eos = add(sched, 0, 3)
    length = add(sched, 1, 3, max_tokens=2)
    window = add(sched, 2, 10)
    tokenizer = Tokenizer(OWN_TOKENIZER)
    outputs = {s.seq_id: SequenceOutput(0, IncrementalDetokenizer(tokenizer, True), s.params, 2, s.num_prompt_tokens,
                                        12) for s in (eos, length, window)}

    def step_with_stops(tokens):
        batch = sched.schedule()
        for seq, taken in zip(batch.seqs, sched.postprocess(batch, [[t] for t in tokens[:len(batch)]])):
            if taken is not None and (reason := outputs[seq.seq_id].add_token(taken[0], None)):
                sched.finish(seq, reason)

    step_with_stops([2, 7, 7])
    assert eos.finish_reason == "stop"
    step_with_stops([7, 7])
    assert length.finish_reason == "length" and window.finish_reason == "length"
    assert window.num_tokens == 12 and sched.block_manager.num_free_blocks == 16
