"""The baseline: transformers' generate with a static cache, same shape and lengths."""

from __future__ import annotations

import time

import torch

from .common import shape_config


def random_hf_model(shape: str):
    """transformers' LlamaForCausalLM of a Code Llama shape, bf16, initialised on the GPU."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape_config(shape))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            return LlamaForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(default)


def run(shape: str, batches=(1, 32), prompt_len: int = 128, new_tokens: int = 256) -> dict:
    model = random_hf_model(shape)
    model.generation_config.eos_token_id = None  # never stop early
    results = {}
    for batch in batches:
        ids = torch.randint(3, 4000, (batch, prompt_len), device="cuda")
        kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                      cache_implementation="static", pad_token_id=0)
        with torch.inference_mode():
            model.generate(ids, **kwargs)  # compiles
            torch.cuda.synchronize()
            start = time.perf_counter()
            out = model.generate(ids, **kwargs)
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        generated = (out.shape[1] - prompt_len) * batch
        results[str(batch)] = {"tok_s": generated / elapsed, "seconds": elapsed}
    del model
    torch.cuda.empty_cache()
    import transformers
    return {"transformers": transformers.__version__, "prompt_len": prompt_len, "new_tokens": new_tokens,
            "batches": results}
