"""`codellama convert` with quantized weights: an AWQ / GPTQ checkpoint becomes a workspace that
loads into the same quantized parameters (for one rank and two), and `--quant int8|awq` quantizes
a dense checkpoint, recording the scheme in codellama.json."""

import json

import pytest
import torch

from inference.cli import main
from inference.config import ModelConfig
from inference.model import LlamaModel, TensorParallel
from inference.quant import QuantScheme, read_quantization
from inference.weights import load_weights
from kernels.quantized_weights import dequantize_ref
from tests.inference.model_steps import prefill_logits
from tests.inference.quant_checkpoints import Variant, write_quantized
from tests.models import tiny_llama

PROMPT = [1, 461, 293, 400, 28, 299, 18, 265, 170, 317, 484, 48, 7, 99]


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("dense"), vocab=4096, hidden=128, heads=4, kv_heads=4,
                      intermediate=256, layers=2)


def convert(*args) -> int:
    return main(["convert", *map(str, args), "--no-progress"])


def params(path, rank=0, size=1) -> dict[str, torch.Tensor]:
    found = read_quantization(path)
    model = LlamaModel(ModelConfig.from_dir(path), torch.float32, "cpu", TensorParallel(rank, size),
                       found and found[0])
    load_weights(model, path)
    return dict(model.named_parameters())


def loaded_model(path) -> LlamaModel:
    found = read_quantization(path)
    model = LlamaModel(ModelConfig.from_dir(path), torch.float32, "cpu", quant=found and found[0])
    load_weights(model, path)
    return model


@pytest.mark.parametrize("variant", [Variant("awq", 64), Variant("gptq", 64, v2=True, act_order=True)],
                         ids=lambda v: v.id)
def test_quantized_checkpoint_converts_to_a_workspace_with_the_same_parameters(dense, tmp_path, variant):
    write_quantized(dense[1], tmp_path / "hf", variant)
    tp = 1 if variant.act_order else 2
    assert convert(tmp_path / "hf", "--dst", tmp_path / "ws", "--tp", tp) == 0
    meta = json.loads((tmp_path / "ws" / "codellama.json").read_text())
    assert QuantScheme.from_metadata(meta["quantization"]) == read_quantization(tmp_path / "hf")[0]
    for rank in range(tp):
        from_ws, from_hf = params(tmp_path / "ws", rank, tp), params(tmp_path / "hf", rank, tp)
        assert from_ws.keys() == from_hf.keys() and all(torch.equal(from_ws[k], from_hf[k]) for k in from_hf)


def test_int8_convert_rounds_each_weight_to_half_a_step(dense, tmp_path):
    path, hf = dense
    assert convert(path, "--dst", tmp_path / "ws", "--quant", "int8", "--dtype", "float32") == 0
    assert read_quantization(tmp_path / "ws")[0] == QuantScheme("int8", 8, -1)
    qkv = loaded_model(tmp_path / "ws").layers[1].qkv_proj
    w = dequantize_ref(qkv.qweight, qkv.scales, qkv.zeros, qkv.perm, 8)
    attn = hf.model.layers[1].self_attn
    original = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]).detach()
    step = original.abs().amax(1, keepdim=True) / 127
    assert ((w - original).abs() <= step / 2 * 1.01).all()
    assert (qkv.zeros == 128).all() and qkv.scales.shape == (1, original.shape[0])


def relative_error(model, reference: torch.Tensor) -> float:
    return ((prefill_logits(model, PROMPT) - reference).norm() / reference.norm()).item()


@pytest.fixture(scope="module")
def outliers(tmp_path_factory):
    """A tiny Llama whose normed activations have a few large channels, as real LLMs' do."""
    path, hf = tiny_llama(tmp_path_factory.mktemp("outliers"), vocab=4096, hidden=128, heads=4, kv_heads=2,
                          intermediate=256, layers=2, max_pos=64)  # calibration: 32 samples of 64 tokens
    with torch.no_grad():
        for layer in hf.model.layers:
            for norm in (layer.input_layernorm, layer.post_attention_layernorm):
                norm.weight[[3, 50, 77, 100]] = 12.0
    hf.save_pretrained(path)
    return path, hf


def round_to_nearest_copy(hf):
    """transformers' model with every projection rounded to 4 bits in groups of 128, unscaled."""
    from inference.quant.rtn import quantize_rtn

    copy = type(hf)(hf.config).eval()
    copy.load_state_dict(hf.state_dict())
    with torch.no_grad():
        for name, module in copy.named_modules():
            if name.endswith("_proj"):
                module.weight.copy_(quantize_rtn(module.weight, 4, 128, symmetric=False).dequantize())
    return copy


def test_awq_convert_beats_round_to_nearest_on_outlier_channels(outliers, tmp_path):
    path, hf = outliers
    calib = tmp_path / "calib.py"
    calib.write_text("def add(a, b):\n    return a + b\n\n" * 200)
    assert convert(path, "--dst", tmp_path / "ws", "--quant", "awq", "--calib", calib) == 0
    meta = json.loads((tmp_path / "ws" / "codellama.json").read_text())
    assert meta["quantization"] == {"method": "awq", "bits": 4, "group_size": 128, "act_order": False}
    with torch.no_grad():
        reference = hf(torch.tensor([PROMPT])).logits[0]
        rtn = (round_to_nearest_copy(hf)(torch.tensor([PROMPT])).logits[0] - reference).norm() / reference.norm()
    awq = relative_error(loaded_model(tmp_path / "ws"), reference)
    assert awq < 0.9 * rtn.item(), (awq, rtn.item())


def test_awq_scale_search_halves_the_rounding_error_of_outlier_inputs():
    from inference.quant.awq import search_scale
    from inference.quant.rtn import fake_quantize

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 128, generator=gen)
    x[:, [3, 50, 77, 100]] *= 12
    w = torch.randn(256, 128, generator=gen) * 0.05
    want = x @ w.t()

    def error(wq):
        return (x @ wq.t() - want).pow(2).mean().item()

    s = search_scale(x, w, 4, 128)
    assert error(fake_quantize(w * s, 4, 128) / s) < 0.6 * error(fake_quantize(w, 4, 128))
    outliers = torch.zeros(128, dtype=torch.bool)
    outliers[[3, 50, 77, 100]] = True
    assert s[outliers].min() > 2 * s[~outliers].max()  # the outlier channels are the ones scaled up


def test_convert_refuses_quantizing_twice_and_calibrating_int8(dense, tmp_path, capsys):
    write_quantized(dense[1], tmp_path / "awq", Variant("awq", 64))
    assert convert(tmp_path / "awq", "--dst", tmp_path / "ws", "--quant", "int8") == 2
    assert "already quantized (awq-w4g64); convert it without --quant" in capsys.readouterr().err
    assert convert(dense[0], "--dst", tmp_path / "ws", "--quant", "int8", "--calib", dense[0] / "config.json") == 2
    assert "--calib is the calibration text of --quant awq" in capsys.readouterr().err
    assert not (tmp_path / "ws").exists()
