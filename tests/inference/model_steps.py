"""Running LlamaModel directly over a paged KV cache (no engine): a prompt's prefill, then decode
steps of one token each, with a float or an int8 cache."""

from __future__ import annotations

import torch

from inference.attention import AttentionMetadata
from inference.model import LlamaModel

PAGE = 16


@torch.no_grad()
def step_logits(model: LlamaModel, prompt: list[int], then: list[int], kv_int8: bool = False) -> list[torch.Tensor]:
    """The float32 logits (on the CPU) of every prompt position ([len(prompt), vocab]), then of
    each token of `then` ([vocab]): the prompt prefilled in one step, each later token decoded in
    a step of its own."""
    cfg, device = model.cfg, model.embed_tokens.device
    total = len(prompt) + len(then)
    blocks = -(-total // PAGE)
    shape = (cfg.num_layers, 2, blocks, PAGE, model.num_local_kv_heads, cfg.head_dim)
    kv = torch.zeros(shape, dtype=torch.int8 if kv_int8 else model.embed_tokens.dtype, device=device)
    scales = torch.zeros(shape[:-1], device=device) if kv_int8 else None
    table = torch.arange(blocks, dtype=torch.int32, device=device)[None]
    out, done = [], 0
    for chunk in [prompt] + [[t] for t in then]:
        n, end = len(chunk), done + len(chunk)
        i32 = dict(dtype=torch.int32, device=device)
        meta = AttentionMetadata(torch.tensor([0, n], **i32), torch.tensor([end], **i32), table,
                                 torch.arange(done, end, device=device), n, end, num_decodes=int(n == 1))
        hidden = model(torch.tensor(chunk, device=device), torch.arange(done, end, device=device), kv, meta, scales)
        logits = model.compute_logits(hidden).float().cpu()
        out.append(logits if done == 0 else logits[0])
        done = end
    return out


def prefill_logits(model: LlamaModel, prompt: list[int]) -> torch.Tensor:
    return step_logits(model, prompt, [])[0]
