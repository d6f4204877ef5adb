"""The speculative benchmarks on CPU: the verification steps (inference/bench/verify_steps.py) score
what they claim, k + 1 tokens per sequence in one extend step giving the logits of k + 1 decode
steps; and the end-to-end workload (inference/bench/speculation.py) runs with speculation off and on."""

import torch

from inference.bench.verify_steps import score, step_inputs
from inference.config import ModelConfig
from inference.model import LlamaModel
from inference.weights import fill_random


def test_one_verifying_step_scores_like_successive_decode_steps():
    cfg = ModelConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                      num_kv_heads=2, head_dim=16, max_position_embeddings=256)
    model = LlamaModel(cfg, torch.float32, "cpu")
    fill_random(model, std=0.1)
    tokens = torch.randint(3, cfg.vocab_size, (3, 21), generator=torch.Generator().manual_seed(0))
    context, k = tokens.shape[1], 4

    def run(prefix: torch.Tensor, query_len: int, cache: torch.Tensor) -> torch.Tensor:
        ids, positions, meta = step_inputs(prefix, query_len, cfg.num_kv_heads, num_sms=1, block_size=4, per_seq=6)
        return model.compute_logits(model(ids, positions, cache, meta)).view(prefix.shape[0], query_len, -1)

    def fresh_cache() -> torch.Tensor:
        return torch.zeros(cfg.num_layers, 2, 3 * 6, 4, cfg.num_kv_heads, cfg.head_dim)

    with torch.no_grad():
        verifying = fresh_cache()
        run(tokens[:, :context - k - 1], context - k - 1, verifying)  # prefill all but the last k + 1
        scored = run(tokens, k + 1, verifying)
        decoding = fresh_cache()
        run(tokens[:, :context - k - 1], context - k - 1, decoding)
        decoded = torch.stack([run(tokens[:, :n], 1, decoding)[:, 0] for n in range(context - k, context + 1)], 1)
        assert torch.allclose(scored, decoded, atol=1e-5)
        assert torch.allclose(verifying, decoding, atol=1e-5)  # the same keys and values, in the same slots
        ids, _, meta = step_inputs(tokens, k + 1, cfg.num_kv_heads, num_sms=1, block_size=4, per_seq=6)
        assert torch.equal(score(model, verifying, (ids, _, meta)), scored.argmax(-1).view(-1))


def test_the_end_to_end_benchmark_runs_a_repeated_workload_with_speculation_off_and_on(tiny_model):
    from inference import LLMEngine
    from inference.bench import speculation

    results = speculation.run(lambda **kw: LLMEngine(tiny_model[0], **kw), None, batch_sizes=(1, 3), prompt_len=10,
                              new_tokens=12)
    assert [(r["mode"], r["batch"]) for r in results] == [("off", 1), ("off", 3), ("auto", 1), ("auto", 3)]
    assert all(r["drafted"] == 0 for r in results[:2])
    assert all(r["accepted"] > 0 and r["steps"] < 12 for r in results[2:])  # the first pass's answers drafted
