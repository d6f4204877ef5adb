"""Tiny models for tests: random Llama checkpoints saved by transformers, and "scripted" ones
whose greedy output follows a chosen chain of tokens."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

import inference
from inference.tokenizer import Tokenizer

OWN_TOKENIZER = Path(inference.__file__).parent / "assets" / "tokenizer.model"
SHARED_TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
CODELLAMA_LIKE_TOKENIZER = SHARED_TESTDATA / "codellama-like-tokenizer.model"


def tiny_llama(path: Path, *, vocab: int = 4096, hidden: int = 64, layers: int = 2, heads: int = 4,
               kv_heads: int = 2, head_dim: int | None = None, intermediate: int = 128, max_pos: int = 1024,
               seed: int = 0, tokenizer: Path = OWN_TOKENIZER, init_std: float = 0.05):
    """Save a random transformers LlamaForCausalLM (fp32) with a tokenizer; return (dir, model)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         head_dim=head_dim or hidden // heads, max_position_embeddings=max_pos,
                         rope_theta=1e6, initializer_range=init_std, rms_norm_eps=1e-5)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    shutil.copyfile(tokenizer, path / "tokenizer.model")
    return path, model


# Without it the successor leads by ~16 logits, and at temperature 1 (the API's default) about one
# token in 2,000 strayed from the script: rare enough to pass locally, often enough to fail CI.
SHARPNESS = 4.0


def scripted_llama(path: Path, successor: dict[int, int], *, tokenizer: Path = OWN_TOKENIZER,
                   hidden: int = 256) -> Path:
    """A Llama whose next token after token i is successor[i]: attention and MLP outputs are
    zeroed, so the last hidden state is the token's own (random, unit) embedding, and lm_head row
    j sums the embeddings of the tokens whose successor is j, times SHARPNESS."""
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = Tokenizer(tokenizer).vocab_size
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=1024, rope_theta=1e6)
    gen = torch.Generator().manual_seed(1)
    model = LlamaForCausalLM(config).eval()
    emb = torch.nn.functional.normalize(torch.randn(vocab, hidden, generator=gen), dim=-1)
    head = torch.zeros(vocab, hidden)
    for i, j in successor.items():
        head[j] += emb[i]
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(emb)
        model.lm_head.weight.copy_(SHARPNESS * head)
        layer = model.model.layers[0]
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    shutil.copyfile(tokenizer, path / "tokenizer.model")
    return path


def chain(token_ids: list[int]) -> dict[int, int]:
    """Successor map that makes a scripted model generate token_ids[1:] after token_ids[0]."""
    assert len(set(token_ids[:-1])) == len(token_ids) - 1, "tokens of a chain must not repeat"
    return dict(zip(token_ids[:-1], token_ids[1:]))


def assert_pool_full(engine) -> None:
    blocks = engine.scheduler.block_manager
    assert blocks.num_free_blocks == blocks.num_blocks, "KV blocks leaked"
    assert all(b.ref_count == 0 for b in blocks.pool)
    assert not engine.scheduler.running and not engine.scheduler.waiting
