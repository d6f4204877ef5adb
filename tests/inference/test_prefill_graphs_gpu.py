"""Steps with prompt tokens replayed piecewise from CUDA graphs (inference/prefill_graphs.py)
against the model's eager forward on the same GPU: steps of several token counts in a row (each
replay reading the new step's inputs), bf16 and 4-bit weights, a float and an int8 cache; and the
engine taking that path against the CPU's float32 reference."""

import pytest
import torch

from inference.attention import AttentionMetadata
from inference.config import ModelConfig
from inference.model import LlamaModel
from inference.prefill_graphs import PrefillGraphs
from inference.quant import read_quantization
from inference.weights import load_weights
from tests.inference.quant_checkpoints import Variant, write_quantized
from tests.inference.test_prefill_graphs import PAGE
from tests.models import tiny_llama

pytestmark = pytest.mark.gpu


def one_prompt_step(model: LlamaModel, n: int, cached: int, kv_int8: bool, seed: int):
    """A prompt of n new tokens after `cached` ones, over a cache of random earlier rows."""
    cfg, dev = model.cfg, torch.device("cuda")
    blocks = -(-(cached + n) // PAGE)
    shape = (cfg.num_layers, 2, blocks, PAGE, model.num_local_kv_heads, cfg.head_dim)
    gen = torch.Generator(device=dev).manual_seed(seed)
    if kv_int8:
        kv = torch.randint(-127, 128, shape, generator=gen, device=dev, dtype=torch.int8)
        scales = torch.rand(shape[:-1], generator=gen, device=dev) / 50
    else:
        kv, scales = torch.randn(shape, generator=gen, device=dev, dtype=torch.bfloat16), None
    i32 = dict(dtype=torch.int32, device=dev)
    meta = AttentionMetadata(torch.tensor([0, n], **i32), torch.tensor([cached + n], **i32),
                             torch.arange(blocks, **i32)[None], torch.arange(cached, cached + n, device=dev),
                             max_query_len=n, max_context_len=cached + n)
    ids = torch.randint(3, cfg.vocab_size, (n,), generator=gen, device=dev)
    return ids, torch.arange(cached, cached + n, device=dev), kv, scales, meta


@pytest.mark.parametrize("weights", ["bf16", "awq"])
@pytest.mark.parametrize("kv_int8", [False, True])
@torch.inference_mode()
def test_replayed_pieces_match_the_eager_forward(tmp_path, weights, kv_int8):
    path, hf = tiny_llama(tmp_path / "dense", vocab=4096, hidden=256, heads=4, kv_heads=2, intermediate=512,
                          layers=3)
    scheme = None
    if weights == "awq":
        path = tmp_path / "awq"
        write_quantized(hf, path, Variant("awq", 128))
        scheme, _ = read_quantization(path)
    model = LlamaModel(ModelConfig.from_dir(path), torch.bfloat16, "cuda", quant=scheme)
    load_weights(model, path)
    graphs = PrefillGraphs(model, torch.device("cuda"), buckets=(16, 64, 256))
    assert len(graphs.graphs[64]) == model.cfg.num_layers + 1
    for seed, (n, cached) in enumerate([(200, 0), (5, 40), (64, 7), (150, 100), (16, 0)]):
        ids, positions, kv, scales, meta = one_prompt_step(model, n, cached, kv_int8, seed)
        kv_want, scales_want = kv.clone(), None if scales is None else scales.clone()
        want = model(ids, positions, kv_want, meta, scales_want).float()
        got = graphs.run(ids, positions, kv, meta, scales).float()
        assert ((got - want).norm() / want.norm()).item() < 1e-2, (n, cached)
        new = slice(cached, cached + n)
        flat = kv.flatten(2, 3)[:, :, new].float()
        flat_want = kv_want.flatten(2, 3)[:, :, new].float()
        assert ((flat - flat_want).norm() / flat_want.norm()).item() < 2e-2, (n, cached)


def test_engine_prompts_through_the_pieces_match_the_cpu_reference(tmp_path):
    from inference import LLMEngine
    from tests.engine_steps import logits_per_step

    path, _ = tiny_llama(tmp_path / "tiny", vocab=4096, hidden=256, heads=4, kv_heads=2, intermediate=512, layers=2)
    prompts, steps = [list(range(100, 400)), [1, 5, 9]], 3
    forced = [[7, 300, 12, 99], [8, 9, 10, 11]]
    want = logits_per_step(LLMEngine(path, num_kv_blocks=64, device="cpu"), prompts, steps, forced)
    engine = LLMEngine(path, num_kv_blocks=64, max_num_seqs=4)
    assert engine.runner.prefill_graphs is not None and engine.runner.prefill_graphs.fits(303)
    got = logits_per_step(engine, prompts, steps, forced)
    for k in range(len(prompts)):
        for step, (w, g) in enumerate(zip(want[k], got[k])):
            assert ((g - w).norm() / w.norm()).item() < 3e-2, (k, step)
