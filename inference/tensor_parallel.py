"""Tensor parallelism over processes: one per GPU (or CPU processes over gloo, for tests).

    engine process (rank 0)                      worker process (rank r)
    schedule -> prepare inputs                   wait for a header
    broadcast header + inputs         ------->   receive inputs
    run its shard of the model   <== all-reduce in every row-parallel layer ==>   run its shard
    sample from the logits                       (its logits are not used)

Every rank holds the shard of the weights and of the KV cache for its heads; the embedding and
the LM head are replicated, so rank 0 samples alone and the sampled tokens never travel. Inputs
travel by broadcast on the device, so tokens still pending on rank 0's GPU reach the workers
without a round trip through the host.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .attention import AttentionMetadata
from .config import EngineConfig
from .model import TensorParallel
from .model_info import tensor_parallel_size
from .process_guard import die_with_parent
from .runner import ModelRunner, StepInputs
from .scheduler import Batch
from .transfer import aligned_sizes, flat_to_device, split_aligned


@dataclass(frozen=True, slots=True)
class StepHeader:
    """What a worker must know of a step before it can receive its inputs; travels as int64s."""

    stop: int  # 1: no step follows, leave the group
    num_tokens: int
    num_seqs: int
    table_width: int
    num_logit_rows: int
    int64_size: int  # elements of the two flat input tensors
    int32_size: int
    max_query_len: int
    max_context_len: int
    num_decodes: int
    decode_splits: int

    LENGTH = 11

    def to_device(self, device: torch.device) -> torch.Tensor:
        # (padded to 16 bytes for the copy; broadcast without the padding)
        return flat_to_device([dataclasses.astuple(self)], torch.int64, device)[:self.LENGTH]

    @classmethod
    def stopping(cls) -> "StepHeader":
        return cls(1, *[0] * (cls.LENGTH - 1))


def _join_group(rank: int, world: int, port: int, device: torch.device) -> TensorParallel:
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world, timeout=timedelta(minutes=10))
    return TensorParallel(rank, world, dist.group.WORLD)


def _rank_device(device: torch.device, rank: int) -> torch.device:
    return torch.device("cuda", (device.index or 0) + rank) if device.type == "cuda" else device


def _send(inputs: StepInputs, device: torch.device) -> None:
    """The step's inputs to the other ranks: a header of sizes, then rank 0's own flat input
    tensors (their parts aligned as on rank 0, so no rank compiles kernels for new alignments).
    Nothing here waits for the device: rank 0 keeps queueing while the previous step runs."""
    meta = inputs.meta
    num_seqs, width = meta.block_tables.shape
    longs, ints = inputs.packed
    header = StepHeader(0, inputs.input_ids.shape[0], num_seqs, width, inputs.logit_rows.shape[0], longs.shape[0],
                        ints.shape[0], meta.max_query_len, meta.max_context_len, meta.num_decodes, meta.decode_splits)
    dist.broadcast(header.to_device(device), 0)
    dist.broadcast(longs, 0)
    dist.broadcast(ints, 0)


def _receive(device: torch.device) -> StepInputs | None:
    raw = torch.empty(StepHeader.LENGTH, dtype=torch.int64, device=device)
    dist.broadcast(raw, 0)
    h = StepHeader(*raw.tolist())
    if h.stop:
        return None
    packed = (torch.empty(h.int64_size, dtype=torch.int64, device=device),
              torch.empty(h.int32_size, dtype=torch.int32, device=device))
    dist.broadcast(packed[0], 0)
    dist.broadcast(packed[1], 0)
    # input_ids, positions, slot_mapping, logit_rows: the int64 parts rank 0 lays out first (runner.INT64_PARTS);
    # the rest (its pending and prompt-scoring tokens) are rank 0's alone
    lengths = [h.num_tokens] * 3 + [h.num_logit_rows]
    ids, positions, slots, rows = split_aligned(packed[0][:sum(aligned_sizes(lengths, torch.int64))], lengths)
    cu, ctx, tables = split_aligned(packed[1], [h.num_seqs + 1, h.num_seqs, h.num_seqs * h.table_width])
    meta = AttentionMetadata(cu, ctx, tables.view(h.num_seqs, h.table_width), slots, h.max_query_len,
                             h.max_context_len, h.num_decodes, h.decode_splits)
    return StepInputs(ids, positions, meta, rows, [], packed)


def _worker(rank: int, world: int, port: int, config: EngineConfig, sample_vocab_size: int, parent: int) -> None:
    die_with_parent(parent)  # a worker waiting in a collective would wait forever
    # Ctrl-C reaches every process of the terminal's group: rank 0 decides when the workers stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    device = _rank_device(config.torch_device, rank)
    tp = _join_group(rank, world, port, device)
    runner = ModelRunner(config, sample_vocab_size, tp, device)
    while (inputs := _receive(device)) is not None:
        runner.run(inputs)
    _leave_group(runner)


def _leave_group(runner: ModelRunner) -> None:
    """CUDA graphs that captured NCCL all-reduces hold the communicator: destroying the group before
    the graphs waits forever."""
    runner.graphs = None
    if runner.device.type == "cuda":
        torch.cuda.synchronize(runner.device)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TensorParallelRunner(ModelRunner):
    """Rank 0's runner: the ModelRunner of the first shard, which also starts the other ranks'
    processes and sends them each step's inputs."""

    def __init__(self, config: EngineConfig, sample_vocab_size: int):
        world = config.tensor_parallel_size
        device = _rank_device(config.torch_device, 0)  # "cuda" means the first of the ranks' GPUs
        if device.type == "cuda" and device.index + world > torch.cuda.device_count():
            raise ValueError(f"tensor parallelism over {world} GPUs needs {world} GPUs from {device}; "
                             f"this machine has {torch.cuda.device_count()}")
        tensor_parallel_size(config.model_dir, world)  # a workspace split for another size: refused before any process
        check = TensorParallel(0, world)  # refuse an impossible split before starting any process
        model_config = config.model_config
        check.shard(model_config.num_heads, "num_attention_heads")
        check.shard(model_config.num_kv_heads, "num_key_value_heads")
        check.shard(model_config.intermediate_size, "intermediate_size")
        port = _free_port()
        ctx = mp.get_context("spawn")
        self._workers = [ctx.Process(target=_worker, args=(r, world, port, config, sample_vocab_size, os.getpid()),
                                     daemon=True) for r in range(1, world)]
        for w in self._workers:
            w.start()
        tp = _join_group(0, world, port, device)
        super().__init__(config, sample_vocab_size, tp, device)

    @torch.inference_mode()
    def forward(self, batch: Batch) -> tuple[torch.Tensor, StepInputs]:
        inputs = self.prepare(batch)
        _send(inputs, self.device)
        return self.run(inputs), inputs

    def shutdown(self) -> None:
        if not self._workers:
            return
        dist.broadcast(StepHeader.stopping().to_device(self.device), 0)
        _leave_group(self)
        for w in self._workers:
            w.join(timeout=60)
        self._workers = []
