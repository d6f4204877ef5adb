"""How much memory the KV cache may take: on the GPU what the card has left, on the CPU what the
configured sequences can use."""

from __future__ import annotations

import os

import torch

from .attention import AttentionMetadata, allocate_kv_cache
from .config import EngineConfig
from .model import LlamaModel


def kv_cache_budget(model: LlamaModel, config: EngineConfig, dtype: torch.dtype, device: torch.device,
                    block_bytes: int) -> float:
    """Bytes for the KV cache: `kv_cache_gib` where given (the same bytes whatever the KV dtype,
    so an int8 cache holds about twice the tokens; on the GPU checked against what is left), else
    what memory allows."""
    fixed = None if config.kv_cache_gib is None else config.kv_cache_gib * (1 << 30)
    if device.type != "cuda":
        return fixed if fixed is not None else cpu_kv_cache_budget(config, block_bytes)
    available = gpu_kv_cache_budget(model, config, dtype, device)
    if fixed is not None and fixed > available:
        raise ValueError(f"a {config.kv_cache_gib:g} GiB KV cache does not fit: the GPU has "
                         f"{max(available, 0) / (1 << 30):.1f} GiB left for it")
    return available if fixed is None else fixed


def gpu_kv_cache_budget(model: LlamaModel, config: EngineConfig, dtype: torch.dtype, device: torch.device) -> float:
    """Bytes for the KV cache: the configured fraction of the card, less the weights, the peak
    activations of the largest step (measured by running one), graphs' memory and other
    processes' memory."""
    m = model.cfg
    tokens = config.max_num_batched_tokens
    scratch_blocks = -(-tokens // config.block_size)
    scratch, scratch_scales = allocate_kv_cache(m.num_layers, scratch_blocks, config.block_size,
                                                model.num_local_kv_heads, m.head_dim, dtype, config.kv_int8, device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        meta = AttentionMetadata(
            cu_seqlens_q=torch.tensor([0, tokens], dtype=torch.int32, device=device),
            context_lens=torch.tensor([tokens], dtype=torch.int32, device=device),
            block_tables=torch.arange(scratch_blocks, dtype=torch.int32, device=device)[None],
            slot_mapping=torch.arange(tokens, dtype=torch.int64, device=device),
            max_query_len=tokens, max_context_len=tokens)
        hidden = model(torch.zeros(tokens, dtype=torch.int64, device=device),
                       torch.arange(tokens, device=device) % m.max_position_embeddings, scratch, meta,
                       scratch_scales)
        model.compute_logits(hidden[-1:])
    torch.cuda.synchronize(device)
    scratch_bytes = sum(t.numel() * t.element_size() for t in (scratch, scratch_scales) if t is not None)
    peak = torch.cuda.max_memory_allocated(device) - scratch_bytes
    del scratch, scratch_scales, hidden
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(device)
    others = total - free - torch.cuda.memory_reserved(device)
    # what CUDA graphs captured before now hold beyond their live outputs (their pools keep it)
    pools = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    sampler = config.max_num_seqs * m.vocab_size * 32  # logits, probabilities, noise of a full batch
    graphs = 0 if config.enforce_eager else 512 << 20  # the decode and verify graphs, captured after the sizing
    return total * config.kv_cache_memory_fraction - others - peak - pools - sampler - graphs


def cpu_kv_cache_budget(config: EngineConfig, block_bytes: int) -> float:
    """Bytes for the KV cache on the CPU: room for `max_num_seqs` sequences of `max_model_len`
    tokens (more can never be used at once), within half the memory available now (the weights
    are loaded by then)."""
    sequence = -(-config.max_model_len // config.block_size) * block_bytes
    available = _available_memory()
    budget = min(config.max_num_seqs * sequence, available // 2)
    if budget < sequence:
        raise ValueError(f"one {config.max_model_len}-token sequence needs {sequence / (1 << 30):.1f} GiB of KV cache, "
                         f"but only {available / (1 << 30):.1f} GiB of memory is available: lower --max-model-len")
    return budget


def _available_memory() -> int:
    """Bytes of memory the system could give now (Linux's MemAvailable; else the free pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
