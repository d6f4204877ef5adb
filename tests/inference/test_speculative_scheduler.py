"""The scheduler with drafts, in plain Python: drafted tokens are budgeted, never preempt anyone,
count as computed only once accepted, and the blocks taken for rejected ones go back."""

import pytest

from inference.config import EngineConfig
from inference.sampling_params import SamplingParams
from inference.scheduler import Scheduler
from inference.sequence import PENDING, Sequence


@pytest.fixture
def make(tiny_model):
    """A scheduler over a pool of `num_blocks` (the model only gives the config its shape)."""
    def scheduler(num_blocks=16, block_size=4, **cfg):
        config = EngineConfig(tiny_model[0], block_size=block_size,
                              **{"max_num_batched_tokens": 16, "max_num_seqs": 4, **cfg})
        return Scheduler(config, num_blocks)
    return scheduler


def decoding(sched, seq_id, prompt_len=6, **params):
    """A sequence whose prompt is computed and whose first token (7) is read back."""
    seq = Sequence(seq_id, f"r{seq_id}", 0, list(range(100 * seq_id + 10, 100 * seq_id + 10 + prompt_len)), prompt_len,
                   SamplingParams(**{"max_tokens": 100, **params}), seed=0)
    sched.add(seq)
    batch = sched.schedule()
    sched.postprocess(batch, [[7] if samples else None for samples in batch.samples])
    return seq


def test_a_verified_draft_keeps_its_accepted_tokens_and_gives_back_the_rest(make):
    sched = make()
    seq = decoding(sched, 0)  # 7 tokens, the last uncomputed: 2 blocks
    free = sched.block_manager.num_free_blocks
    batch = sched.schedule({0: (50, 51, 52, 53, 54)})
    assert batch.num_new_tokens == [6] and batch.drafts == [(50, 51, 52, 53, 54)] and batch.starts == [6]
    assert seq.token_ids[-2:] == [7, PENDING] and seq.num_computed_tokens == 7  # as after a plain decode step
    assert len(seq.block_table) == 3 and sched.block_manager.num_free_blocks == free - 1  # positions 6..11
    sched.postprocess(batch, [[50, 51, 99]])  # two accepted, then the model's own token
    assert seq.token_ids[6:] == [7, 50, 51, 99] and seq.num_computed_tokens == 9 and seq.num_uncomputed_tokens == 1
    assert len(seq.block_table) == 3  # positions 0..8: three blocks of 4
    assert seq.block_hashes and len(seq.block_hashes) == 2  # the two full blocks hold accepted tokens only
    batch = sched.schedule({0: (60, 61)})
    sched.postprocess(batch, [[5]])  # nothing accepted
    assert seq.token_ids[-2:] == [99, 5] and seq.num_computed_tokens == 10 and len(seq.block_table) == 3
    assert sched.block_manager.num_free_blocks == free - 1


def test_drafts_are_cut_to_the_budget_and_dropped_rather_than_preempt(make):
    sched = make(max_num_batched_tokens=4)
    decoding(sched, 0)
    batch = sched.schedule({0: (1, 2, 3, 4, 5, 6)})
    assert batch.drafts == [(1, 2, 3)] and batch.num_new_tokens == [4]
    sched.postprocess(batch, [[1, 2, 3, 4]])

    sched = make(num_blocks=4)
    decoding(sched, 0), decoding(sched, 1)  # 7 and 6 computed tokens: all four blocks taken
    assert sched.block_manager.num_free_blocks == 0
    batch = sched.schedule({0: (1, 2, 3)})  # would need a fifth block
    assert batch.drafts == [(), ()] and batch.num_new_tokens == [1, 1] and sched.num_preemptions == 0


def test_a_verifying_step_must_be_read_back_before_its_sequence_runs_again(make):
    sched = make()
    decoding(sched, 0)
    first = sched.schedule({0: (1, 2)})
    sched.schedule()  # too early: the verifying step's tokens are not read back
    with pytest.raises(RuntimeError, match="read back"):
        sched.postprocess(first, [[1, 9]])


def test_draft_room_leaves_space_for_every_token_a_step_can_sample(make):
    sched = make(max_model_len=12)
    seq = decoding(sched, 0, max_tokens=5)  # 1 of 5 output tokens, 7 of 12 positions
    assert sched.draft_room(seq) == 3  # up to 4 tokens more: 3 drafted and the one after them
    seq = decoding(sched, 1, prompt_len=9)  # 10 of 12 positions
    assert sched.draft_room(seq) == 1
    sched.schedule()
    assert sched.draft_room(seq) == 0  # its next token is PENDING
