"""Quantized checkpoints this server cannot run are refused with an error that says why."""

import json

import pytest
import torch

from inference.config import ModelConfig
from inference.model import LlamaModel
from inference.quant import QuantScheme, read_quantization
from inference.quant.scheme import parse_quantization_config
from inference.weights import load_weights
from tests.inference.quant_checkpoints import Variant, write_quantized
from tests.inference.test_weights import broken_copy
from tests.models import tiny_llama


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("dense"), vocab=512, hidden=128, heads=4, kv_heads=2,
                      intermediate=256, layers=1)


@pytest.mark.parametrize("config,message", [
    ({"quant_method": "gptq", "bits": 3, "group_size": 128}, "3-bit gptq weights are not supported"),
    ({"quant_method": "gptq", "bits": 4, "group_size": 100}, "group size 100 is not supported"),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128, "checkpoint_format": "marlin"}, "'marlin' format"),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128, "is_marlin_format": True}, "'marlin' format"),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128, "pack_dtype": "int16"}, "packed in int16"),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128, "lm_head": True}, "quantized lm_head"),
    ({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemv"}, "'gemv' layout"),
    ({"quant_method": "awq", "bits": 8, "group_size": 128}, "AWQ GEMM checkpoints are 4-bit"),
    ({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": False}, "without zero points"),
    ({"quant_method": "awq", "bits": 4, "group_size": 64, "modules_to_not_convert": ["model.layers.0.mlp"]},
     "leave some projections unquantized"),
    ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "'bitsandbytes' is not supported"),
])
def test_unsupported_quantization_configs(config, message):
    with pytest.raises(ValueError, match=message):
        parse_quantization_config(config)


def load_into(path, scheme) -> None:
    load_weights(LlamaModel(ModelConfig.from_dir(path), torch.float32, "cpu", quant=scheme), path)


def drop(module: str):
    def edit(tensors):
        for part in ("qweight", "qzeros", "scales", "g_idx"):
            del tensors[f"model.layers.0.{module}.{part}"]
    return edit


def shuffle_k_order(tensors):  # k_proj quantized in another input order than q_proj and v_proj
    tensors["model.layers.0.self_attn.k_proj.g_idx"] = tensors["model.layers.0.self_attn.k_proj.g_idx"].flip(0)


def dense_up(tensors):
    drop("mlp.up_proj")(tensors)
    tensors["model.layers.0.mlp.up_proj.weight"] = torch.zeros(256, 128)


def narrow_scales(tensors):
    name = "model.layers.0.self_attn.o_proj.scales"
    tensors[name] = tensors[name][:, :64].contiguous()


@pytest.fixture(scope="module")
def gptq(hf, tmp_path_factory):
    path = tmp_path_factory.mktemp("gptq")
    write_quantized(hf[1], path, Variant("gptq", 64, v2=True, act_order=True))
    return path


@pytest.mark.parametrize("edit,message", [
    (shuffle_k_order, "_proj: its act-order permutation .* differs .*into layers.0.qkv_proj"),
    (dense_up, "up_proj.weight is not quantized"),
    (drop("mlp.down_proj"), "missing quantized tensors for layers.0.down_proj"),
    (narrow_scales, r"o_proj.scales has shape \(2, 64\), expected \(2, 128\)"),
], ids=["perm", "mixed", "missing", "shape"])
def test_broken_quantized_checkpoints(gptq, tmp_path, edit, message):
    with pytest.raises(ValueError, match=message):
        load_into(broken_copy(gptq, tmp_path / "broken", edit), read_quantization(gptq)[0])


def test_scheme_must_match_the_model(hf, gptq):
    with pytest.raises(ValueError, match="holds gptq-w4g64-act-order weights, but the model was built for "
                                         "unquantized weights"):
        load_into(gptq, None)
    with pytest.raises(ValueError, match="holds unquantized weights, but the model was built for awq-w4g128"):
        load_into(hf[0], QuantScheme("awq", 4, 128))


def test_group_size_must_divide_each_layer(hf, tmp_path):
    config = json.loads((hf[0] / "config.json").read_text())
    with pytest.raises(ValueError, match="qkv_proj: 128 input channels .* not whole groups of 96"):
        LlamaModel(ModelConfig.from_dict(config), torch.float32, "meta", quant=QuantScheme("gptq", 4, 96))
