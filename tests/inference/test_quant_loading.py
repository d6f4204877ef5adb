"""Loading AWQ and GPTQ checkpoints (written by the test-side packer from the published layouts):
the loaded weights dequantize to exactly the quantized values the packer chose, in every layout,
zero convention, act-order, group size, sharding and tensor-parallel split; the model's logits
match transformers run on those dequantized weights."""

import json

import pytest
import torch

from inference.config import ModelConfig
from inference.model import LlamaModel, TensorParallel
from inference.quant import read_quantization
from inference.weights import load_weights
from kernels.quantized_weights import dequantize_ref
from tests.inference.model_steps import prefill_logits
from tests.inference.quant_checkpoints import Variant, write_quantized
from tests.models import tiny_llama

VARIANTS = [Variant("awq", 128), Variant("awq", 64, shards=2), Variant("gptq", 128, sym=True),
            Variant("gptq", 64, v2=True), Variant("gptq", 64, v2=True, act_order=True),
            Variant("gptq", 128, act_order=True, sym=True), Variant("gptq", 64, bits=8, v2=True)]
FUSED = {"qkv_proj": ("self_attn", ("q_proj", "k_proj", "v_proj")), "o_proj": ("self_attn", ("o_proj",)),
         "gate_up_proj": ("mlp", ("gate_proj", "up_proj")), "down_proj": ("mlp", ("down_proj",))}


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """A tiny GQA Llama whose widths (128, 256) hold whole groups of 64 and 128."""
    return tiny_llama(tmp_path_factory.mktemp("dense"), vocab=512, hidden=128, heads=4, kv_heads=2,
                      intermediate=256, layers=2)[1]


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: v.id)
def checkpoint(request, hf, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param.id)
    return path, write_quantized(hf, path, request.param), request.param


def load(path, rank=0, size=1) -> LlamaModel:
    scheme, _ = read_quantization(path)
    model = LlamaModel(ModelConfig.from_dir(path), torch.float32, "cpu", TensorParallel(rank, size), scheme)
    load_weights(model, path)
    return model


def expected(dequantized, layer: int, fused: str) -> torch.Tensor:
    block, modules = FUSED[fused]
    return torch.cat([dequantized[f"model.layers.{layer}.{block}.{m}"] for m in modules])


def loaded(model, layer: int, fused: str) -> torch.Tensor:
    p = getattr(model.layers[layer], fused)
    return dequantize_ref(p.qweight, p.scales, p.zeros, p.perm, p.bits)


def test_scheme_is_read_from_quantization_config(checkpoint):
    path, _, variant = checkpoint
    scheme, layout = read_quantization(path)
    assert (scheme.method, scheme.bits, scheme.group_size, scheme.act_order) == \
        (variant.method, variant.bits, variant.group, variant.act_order)
    assert layout == ("awq-gemm" if variant.method == "awq" else "gptq-v2" if variant.v2 else "gptq-v1")


def test_loaded_weights_dequantize_to_the_quantized_values_exactly(checkpoint):
    path, dequantized, _ = checkpoint
    model = load(path)
    for layer in range(2):
        for fused in FUSED:
            assert torch.equal(loaded(model, layer, fused), expected(dequantized, layer, fused)), (layer, fused)


def test_logits_match_transformers_on_the_dequantized_weights(checkpoint, hf):
    path, dequantized, _ = checkpoint
    reference = type(hf)(hf.config).eval()
    state = hf.state_dict() | {f"{prefix}.weight": w for prefix, w in dequantized.items()}
    reference.load_state_dict(state)
    prompt = [1, 17, 300, 42, 7, 99, 250, 3, 64, 128, 511, 2, 5, 6, 8, 13, 21, 34]
    with torch.no_grad():
        want = reference(torch.tensor([prompt])).logits[0]
    got = prefill_logits(load(path), prompt)
    assert (got - want).abs().max() < 1e-4


@pytest.mark.parametrize("rank", [0, 1])
def test_tensor_parallel_shards_are_slices_of_the_dequantized_weights(checkpoint, rank):
    path, dequantized, variant = checkpoint
    if variant.group == 128:  # o_proj's 128 inputs split in two: half a group each
        with pytest.raises(ValueError, match="o_proj: 64 input channels .* not whole groups of 128"):
            load(path, rank, 2)
        return
    if variant.act_order:  # the shuffled groups of o_proj / down_proj cannot be split by rank
        with pytest.raises(ValueError, match="do not form whole groups of 64 .*--tp 1"):
            load(path, rank, 2)
        return
    model = load(path, rank, 2)
    for fused in FUSED:
        want = expected(dequantized, 0, fused)
        if fused in ("o_proj", "down_proj"):  # row-parallel: this rank's input channels
            k = want.shape[1] // 2
            want = want[:, rank * k:(rank + 1) * k]
        else:  # column-parallel: this rank's share of each fused module's outputs
            block, modules = FUSED[fused]
            want = torch.cat([dequantized[f"model.layers.0.{block}.{m}"].chunk(2)[rank] for m in modules])
        assert torch.equal(loaded(model, 0, fused), want), fused


def test_legacy_quantize_config_file_is_read(checkpoint, tmp_path):
    path, _, variant = checkpoint
    config = json.loads((path / "config.json").read_text())
    legacy = config.pop("quantization_config")
    (tmp_path / "config.json").write_text(json.dumps(config))
    if variant.method == "gptq":
        legacy.pop("quant_method")
        (tmp_path / "quantize_config.json").write_text(json.dumps(legacy))
        assert read_quantization(tmp_path) == read_quantization(path)
