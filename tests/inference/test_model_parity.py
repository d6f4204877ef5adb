"""The engine's model against transformers' LlamaForCausalLM, on tiny random fp32 models."""

import pytest
import torch

from inference.engine import LLMEngine
from tests.engine_steps import logits_per_step
from tests.models import assert_pool_full, tiny_llama


@pytest.mark.parametrize("heads,kv_heads,head_dim", [(4, 4, 16), (4, 2, 32), (2, 1, 64), (8, 2, 16)],
                         ids=["mha-d16", "gqa-d32", "mqa-d64", "gqa-d16"])
def test_logits_match_transformers_at_prefill_and_every_decode_step(tmp_path, heads, kv_heads, head_dim):
    model_dir, hf = tiny_llama(tmp_path, vocab=32016, hidden=64, heads=heads, kv_heads=kv_heads,
                               head_dim=head_dim, layers=2)
    engine = LLMEngine(model_dir, num_kv_blocks=64, block_size=16, max_num_batched_tokens=512)
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 4096, (n,), generator=gen).tolist() for n in (5, 16, 37)]
    steps = 12
    forced = [torch.randint(3, 4096, (steps + 1,), generator=gen).tolist() for _ in prompts]
    got = logits_per_step(engine, prompts, steps, forced)
    for k, prompt in enumerate(prompts):
        full = torch.tensor([prompt + forced[k][:steps]])
        with torch.no_grad():
            ref = hf(full).logits[0]
        for step, logits in enumerate(got[k]):
            expected = ref[len(prompt) - 1 + step]
            diff = (logits - expected).abs().max().item()
            assert diff < 1e-4, f"prompt {k} step {step}: max |diff| {diff}"
    assert_pool_full(engine)


def test_tied_embeddings_and_linear_rope_scaling_are_read_from_config(tmp_path):
    import shutil

    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.models import OWN_TOKENIZER

    config = LlamaConfig(vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                         tie_word_embeddings=True,
                         rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6})
    torch.manual_seed(0)
    hf = LlamaForCausalLM(config).eval()
    hf.save_pretrained(tmp_path)
    shutil.copyfile(OWN_TOKENIZER, tmp_path / "tokenizer.model")
    engine = LLMEngine(tmp_path, num_kv_blocks=16)
    model_config = engine.config.model_config
    assert model_config.rope_scaling_factor == 4.0 and model_config.tie_word_embeddings
    prompt = list(range(10, 60))
    got = logits_per_step(engine, [prompt], 0, [[0]])[0][0]
    with torch.no_grad():
        ref = hf(torch.tensor([prompt])).logits[0, -1]
    assert (got - ref).abs().max().item() < 1e-4
