"""Quantized checkpoints this server cannot run are refused with an error that says why."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from inference.config import ModelConfig
from inference.model import LlamaModel
from inference.quant import QuantScheme, read_quantization
from inference.quant.scheme import parse_quantization_config
from inference.weights import load_weights
from tests.inference.quant_checkpoints import Variant, write_quantized
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


def edited(src, dst, edit):
    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    edit(tensors)
    save_file(tensors, dst / "model.safetensors")
    return dst


def test_broken_quantized_checkpoints(hf, tmp_path):
    path = tmp_path / "gptq"
    write_quantized(hf[1], path, Variant("gptq", 64, v2=True, act_order=True))
    scheme, _ = read_quantization(path)
    with pytest.raises(ValueError, match="holds gptq-w4g64-act-order weights, but the model was built for "
                                         "unquantized weights"):
        load_into(path, None)
    with pytest.raises(ValueError, match="holds unquantized weights, but the model was built for awq-w4g128"):
        load_into(hf[0], QuantScheme("awq", 4, 128))

    def shuffle_k(t):  # k_proj quantized in another input order than q_proj and v_proj
        t["model.layers.0.self_attn.k_proj.g_idx"] = t["model.layers.0.self_attn.k_proj.g_idx"].flip(0)
    with pytest.raises(ValueError, match="_proj: its act-order permutation .* differs .*into layers.0.qkv_proj"):
        load_into(edited(path, tmp_path / "perm", shuffle_k), scheme)

    def dense_up(t):
        for part in ("qweight", "qzeros", "scales", "g_idx"):
            del t[f"model.layers.0.mlp.up_proj.{part}"]
        t["model.layers.0.mlp.up_proj.weight"] = torch.zeros(256, 128)
    with pytest.raises(ValueError, match="up_proj.weight is not quantized"):
        load_into(edited(path, tmp_path / "mixed", dense_up), scheme)

    def drop_down(t):
        for part in ("qweight", "qzeros", "scales", "g_idx"):
            del t[f"model.layers.0.mlp.down_proj.{part}"]
    with pytest.raises(ValueError, match="missing quantized tensors for layers.0.down_proj"):
        load_into(edited(path, tmp_path / "missing", drop_down), scheme)

    def narrow_scales(t):
        t["model.layers.0.self_attn.o_proj.scales"] = t["model.layers.0.self_attn.o_proj.scales"][:, :64].contiguous()
    with pytest.raises(ValueError, match=r"o_proj.scales has shape \(2, 64\), expected \(2, 128\)"):
        load_into(edited(path, tmp_path / "narrow", narrow_scales), scheme)


def test_group_size_must_divide_each_layer(hf, tmp_path):
    config = json.loads((hf[0] / "config.json").read_text())
    with pytest.raises(ValueError, match="qkv_proj: 128 input channels .* not whole groups of 96"):
        LlamaModel(ModelConfig.from_dict(config), torch.float32, "meta", quant=QuantScheme("gptq", 4, 96))
