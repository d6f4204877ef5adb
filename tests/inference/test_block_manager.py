"""The paged KV pool on its own: allocation, reference counts, prefix hashing, LRU reuse."""

from inference.block_manager import BlockManager
from inference.sampling_params import SamplingParams
from inference.sequence import Sequence


def seq(tokens, seq_id=0):
    return Sequence(seq_id, str(seq_id), 0, list(tokens), len(tokens), SamplingParams(), seed=0)


def compute_all(bm, s):
    assert bm.admit(s, bm.find_cached_prefix(s), s.num_tokens)
    s.num_computed_tokens = s.num_tokens
    bm.cache_computed_blocks(s, s.num_tokens)


def test_slots_and_growth():
    bm = BlockManager(num_blocks=8, block_size=4)
    s = seq(range(6))
    assert bm.admit(s, [], 6)
    assert len(s.block_table) == 2 and bm.num_free_blocks == 6
    s.num_computed_tokens = 6
    assert bm.can_append(s, 2)
    bm.append_slots(s, 2)  # fills block 2 exactly
    assert len(s.block_table) == 2
    bm.append_slots(s, 3)
    assert len(s.block_table) == 3
    bm.free(s)
    assert bm.num_free_blocks == 8 and s.block_table == []


def test_prefix_hits_share_blocks_and_never_cover_the_last_token():
    bm = BlockManager(num_blocks=8, block_size=4)
    a = seq(range(12), 0)
    compute_all(bm, a)
    b = seq(list(range(8)) + [99, 98], 1)
    hits = bm.find_cached_prefix(b)
    assert hits == a.block_table[:2]
    assert bm.admit(b, hits, b.num_tokens - 8)
    assert bm.pool[hits[0]].ref_count == 2 and b.num_computed_tokens == 8
    assert bm.prefix_hits == 8
    # an identical prompt still recomputes its last block so that its logits exist
    c = seq(range(12), 2)
    assert bm.find_cached_prefix(c) == a.block_table[:2]
    for s in (a, b):
        bm.free(s)
    assert bm.num_free_blocks == 8


def test_hash_collisions_are_checked_against_token_ids():
    bm = BlockManager(num_blocks=4, block_size=2)
    a = seq([5, 6, 7], 0)
    compute_all(bm, a)
    block = bm.pool[a.block_table[0]]
    block.token_ids = (9, 9)  # as if another block had the same hash
    assert bm.find_cached_prefix(seq([5, 6, 1], 1)) == []
    bm.free(a)


def test_freed_blocks_stay_cached_and_a_sequences_last_block_is_reused_first():
    bm = BlockManager(num_blocks=3, block_size=2)
    a = seq([1, 2, 3, 4, 5], 0)  # three blocks: the whole pool
    compute_all(bm, a)
    first, second, last = a.block_table
    bm.free(a)
    assert bm.num_free_blocks == 3
    c = seq([7, 7], 2)
    assert bm.admit(c, [], 2)
    assert c.block_table == [last]
    assert bm.find_cached_prefix(seq([1, 2, 3, 4, 0], 1)) == [first, second]
    bm.free(c)


def test_without_prefix_caching_freed_blocks_forget_their_hash():
    bm = BlockManager(num_blocks=4, block_size=2, enable_prefix_caching=False)
    a = seq([1, 2, 3, 4, 5], 0)
    compute_all(bm, a)
    live = seq([1, 2, 3, 4, 9], 1)
    assert len(bm.find_cached_prefix(live)) == 2  # shared while a is alive
    bm.free(a)
    assert bm.find_cached_prefix(live) == []


def test_admit_fails_cleanly_when_the_pool_is_short():
    bm = BlockManager(num_blocks=2, block_size=2)
    s = seq(range(5))
    assert not bm.admit(s, [], 5)
    assert bm.num_free_blocks == 2 and s.block_table == []
