"""What verifying drafts costs: the step time of B decoding sequences that each score k drafted
tokens beside their last one (k = 0: plain decoding), the table the speculative cost model reads
(`inference.speculative.StepTimes.from_record`).

A verifying sequence is an extend of k + 1 tokens that end its context: the prefill kernel's
path, what verification costs without a kernel of its own. k = 0 takes the decode kernel's path,
as the engine's decode steps do. A step runs the model over the paged cache, the logits of every
row it scores and their argmax (greedy acceptance; sampling adds little), replayed from a CUDA
graph as the engine replays decode steps, and timed eagerly too. Random weights; every sequence
has `context` tokens of context, in blocks of its own.
"""

from __future__ import annotations

import torch

import kernels

from ..attention import AttentionMetadata
from ..config import ModelConfig
from ..model import LlamaModel
from ..weights import fill_random
from .common import shape_config

BLOCK_SIZE = 16


def step_inputs(tokens: torch.Tensor, query_len: int, num_kv_heads: int, num_sms: int,
                block_size: int = BLOCK_SIZE, per_seq: int | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata]:
    """(input ids, positions, metadata) of a step in which each row of `tokens` [B, context]
    computes its last `query_len` tokens; row i's KV lives in blocks i * per_seq onwards
    (per_seq: the blocks `context` tokens take, unless given)."""
    batch, context = tokens.shape
    device = tokens.device
    per_seq = per_seq or -(-context // block_size)
    tables = torch.arange(batch * per_seq, dtype=torch.int32, device=device).view(batch, per_seq)
    positions = torch.arange(context - query_len, context, device=device).repeat(batch)
    owner = torch.arange(batch, device=device).repeat_interleave(query_len)
    slots = tables[owner, positions // block_size].long() * block_size + positions % block_size
    decode = query_len == 1
    meta = AttentionMetadata(
        cu_seqlens_q=torch.arange(0, batch * query_len + 1, query_len, dtype=torch.int32, device=device),
        context_lens=torch.full((batch,), context, dtype=torch.int32, device=device),
        block_tables=tables, slot_mapping=slots, max_query_len=query_len, max_context_len=context,
        num_decodes=batch if decode else 0,
        decode_splits=kernels.decode_num_splits(batch, num_kv_heads, context, num_sms) if decode else 1)
    return tokens[:, context - query_len:].reshape(-1), positions, meta


def score(model: LlamaModel, kv_cache: torch.Tensor, inputs: tuple) -> torch.Tensor:
    """The step: every scored row's logits, and the argmax of each."""
    input_ids, positions, meta = inputs
    return model.compute_logits(model(input_ids, positions, kv_cache, meta)).argmax(dim=-1)


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats + 3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times = sorted(times[3:])
    return times[len(times) // 2]


@torch.inference_mode()
def run(shape: str = "7b", batch_sizes=(1, 8, 64, 256), max_extra: int = 8, context: int = 512,
        repeats: int = 20) -> dict:
    cfg = ModelConfig.from_dict(shape_config(shape))
    device = torch.device("cuda")
    model = LlamaModel(cfg, torch.bfloat16, device)
    fill_random(model)
    num_sms = torch.cuda.get_device_properties(device).multi_processor_count
    blocks = max(batch_sizes) * -(-context // BLOCK_SIZE)
    kv_cache = torch.zeros(cfg.num_layers, 2, blocks, BLOCK_SIZE, cfg.num_kv_heads, cfg.head_dim,
                           dtype=torch.bfloat16, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    graph_ms, eager_ms = [], []
    for batch in batch_sizes:
        tokens = torch.randint(3, cfg.vocab_size, (batch, context), generator=gen, device=device)
        graph_row, eager_row = [], []
        for extra in range(max_extra + 1):
            inputs = step_inputs(tokens, extra + 1, cfg.num_kv_heads, num_sms)
            eager_row.append(_median_ms(lambda: score(model, kv_cache, inputs), repeats))  # also warms up
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                score(model, kv_cache, inputs)
            graph_row.append(_median_ms(graph.replay, repeats))
            del graph
            print(f"batch {batch:3d}  k {extra}:  {graph_row[-1]:7.2f} ms (graph)  {eager_row[-1]:7.2f} ms (eager)",
                  flush=True)
        graph_ms.append(graph_row)
        eager_ms.append(eager_row)
    return {"shape": shape, "context": context, "block_size": BLOCK_SIZE, "batch_sizes": list(batch_sizes),
            "extra_tokens": list(range(max_extra + 1)), "ms": graph_ms, "eager_ms": eager_ms}
