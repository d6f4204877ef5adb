"""The paged KV pool: fixed-size blocks, per-sequence block tables, prefix caching.

    KV cache (one tensor per layer pair K/V):   [num_blocks, block_size, kv_heads, head_dim]

    seq A  "def add(a, b):\\n    return a + b\\n..."     block_table [7, 2, 9]
    seq B  "def add(a, b):\\n    return a + b\\n#"       block_table [7, 2, 4]
             |<-- block 7 -->|<-- block 2 -->|<- 9/4 ->|
             full, hashed      full, hashed    partial: owned by one sequence

    token t of a sequence lives in slot  block_table[t // block_size] * block_size + t % block_size

A full block whose keys/values are computed gets a chained hash, hash(previous block's hash,
its token ids), and is registered in the prefix cache. A later sequence whose prompt starts with
the same tokens takes those blocks (ref_count + 1) instead of computing them; hits are checked
against the stored token ids, not the hash alone. Freed blocks go to the end of an ordered free
list (a sequence's blocks in reverse, so its last blocks are reused first) and keep their hash
until reused, so the prefix cache is also an LRU cache of freed blocks. With prefix caching off,
a freed block forgets its hash; sequences alive at the same time still share (samples of n > 1).
"""

from __future__ import annotations

from collections import OrderedDict

from .sequence import Sequence


class Block:
    __slots__ = ("block_id", "ref_count", "hash", "token_ids")

    def __init__(self, block_id: int):
        self.block_id = block_id
        self.ref_count = 0
        self.hash: int | None = None
        self.token_ids: tuple[int, ...] | None = None


def chain_hash(previous: int | None, token_ids: tuple[int, ...]) -> int:
    return hash((previous, token_ids))


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.enable_prefix_caching = enable_prefix_caching
        self.pool = [Block(i) for i in range(num_blocks)]
        self._free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self._cached: dict[int, int] = {}  # hash -> block id
        self.prefix_queries = 0  # prompt tokens looked up in the prefix cache
        self.prefix_hits = 0  # of those, tokens found

    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    @property
    def usage(self) -> float:
        return 1.0 - len(self._free) / self.num_blocks

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    # --- admission and growth ------------------------------------------------------------------

    def find_cached_prefix(self, seq: Sequence) -> list[int]:
        """Blocks holding a computed prefix of seq's tokens. The last token is never taken from
        the cache (its logits are needed), so at most (num_tokens - 1) // block_size blocks."""
        hits, h, bs = [], None, self.block_size
        for i in range((seq.num_tokens - 1) // bs):
            tokens = tuple(seq.token_ids[i * bs:(i + 1) * bs])
            h = chain_hash(h, tokens)
            block_id = self._cached.get(h)
            if block_id is None or self.pool[block_id].token_ids != tokens:
                break
            hits.append(block_id)
        return hits

    def admit(self, seq: Sequence, cached: list[int], num_new_tokens: int) -> bool:
        """Give a waiting sequence the cached blocks plus room for num_new_tokens more tokens;
        False (and nothing changed) when the pool is too small right now."""
        reused_free = sum(1 for b in cached if self.pool[b].ref_count == 0)
        num_cached_tokens = len(cached) * self.block_size
        needed = self.blocks_for(num_cached_tokens + num_new_tokens) - len(cached)
        if needed > self.num_free_blocks - reused_free:
            return False
        for block_id in cached:
            block = self.pool[block_id]
            if block.ref_count == 0:
                del self._free[block_id]
            block.ref_count += 1
            seq.block_hashes.append(block.hash)
        seq.block_table = list(cached)
        seq.num_computed_tokens = num_cached_tokens
        if not seq.admitted:
            seq.num_cached_tokens = num_cached_tokens
            seq.admitted = True
            self.prefix_queries += seq.num_prompt_tokens
            self.prefix_hits += num_cached_tokens
        self._grow(seq, needed)
        return True

    def can_append(self, seq: Sequence, num_new_tokens: int) -> bool:
        needed = self.blocks_for(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table)
        return needed <= self.num_free_blocks

    def append_slots(self, seq: Sequence, num_new_tokens: int) -> None:
        """Room for num_new_tokens more computed tokens; call can_append first."""
        self._grow(seq, self.blocks_for(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table))

    def _grow(self, seq: Sequence, count: int) -> None:
        for _ in range(count):
            block_id, _ = self._free.popitem(last=False)
            block = self.pool[block_id]
            self._forget(block)
            block.ref_count = 1
            seq.block_table.append(block_id)

    # --- prefix cache ----------------------------------------------------------------------------

    def cache_computed_blocks(self, seq: Sequence, num_computed: int) -> None:
        """Register the blocks that the first num_computed tokens fill, once computed."""
        bs = self.block_size
        for i in range(len(seq.block_hashes), num_computed // bs):
            tokens = tuple(seq.token_ids[i * bs:(i + 1) * bs])
            h = chain_hash(seq.block_hashes[-1] if seq.block_hashes else None, tokens)
            seq.block_hashes.append(h)
            block = self.pool[seq.block_table[i]]
            if block.hash is None:
                block.hash, block.token_ids = h, tokens
                self._cached.setdefault(h, block.block_id)

    def _forget(self, block: Block) -> None:
        if block.hash is not None and self._cached.get(block.hash) == block.block_id:
            del self._cached[block.hash]
        block.hash = block.token_ids = None

    # --- release -----------------------------------------------------------------------------------

    def truncate(self, seq: Sequence, num_tokens: int) -> None:
        """Give back the blocks past the first num_tokens tokens (taken for drafted tokens that
        were rejected: never hashed, they go first in line for reuse)."""
        while len(seq.block_table) > self.blocks_for(num_tokens):
            block = self.pool[seq.block_table.pop()]
            block.ref_count -= 1
            if block.ref_count == 0:
                self._forget(block)
                self._free[block.block_id] = None
                self._free.move_to_end(block.block_id, last=False)

    def free(self, seq: Sequence) -> None:
        for block_id in reversed(seq.block_table):
            block = self.pool[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                if not self.enable_prefix_caching:
                    self._forget(block)
                self._free[block_id] = None
        seq.block_table = []
        seq.block_hashes = []
        seq.num_computed_tokens = 0
