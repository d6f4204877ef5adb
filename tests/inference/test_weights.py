"""Loading Hugging Face checkpoints: every file layout, and clear errors for broken ones."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from inference.config import ModelConfig
from inference.model import LlamaModel
from inference.weights import load_weights
from tests.models import tiny_llama


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("weights"), vocab=512, layers=2)


def loaded(path) -> LlamaModel:
    model = LlamaModel(ModelConfig.from_dir(path), torch.float32, "cpu")
    load_weights(model, path)
    return model


def same_parameters(a: LlamaModel, b: LlamaModel) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("layout", ["sharded-safetensors", "pytorch-bin"])
def test_every_checkpoint_layout_loads_the_same_weights(hf_dir, tmp_path, layout):
    path, hf = hf_dir
    if layout == "sharded-safetensors":
        hf.save_pretrained(tmp_path, max_shard_size="100KB")
        assert (tmp_path / "model.safetensors.index.json").is_file()
    else:
        torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
        shutil.copyfile(path / "config.json", tmp_path / "config.json")
    assert same_parameters(loaded(tmp_path), loaded(path))


def broken_copy(src, dst, edit):
    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    edit(tensors)
    save_file(tensors, dst / "model.safetensors")
    return dst


def test_clear_errors_for_broken_checkpoints(hf_dir, tmp_path):
    path, _ = hf_dir
    missing = broken_copy(path, tmp_path / "missing", lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(ValueError, match="missing tensors for layers.1.gate_up_proj"):
        loaded(missing)
    shaped = broken_copy(path, tmp_path / "shaped", lambda t: t.update(
        {"model.norm.weight": torch.ones(3)}))
    with pytest.raises(ValueError, match=r"'model.norm.weight' has shape \(3,\), expected \(64,\)"):
        loaded(shaped)
    extra = broken_copy(path, tmp_path / "extra", lambda t: t.update({"model.vision_tower.weight": torch.ones(1)}))
    with pytest.raises(ValueError, match="unexpected tensor 'model.vision_tower.weight'"):
        loaded(extra)
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copyfile(path / "config.json", empty / "config.json")
    with pytest.raises(FileNotFoundError, match="no weights found"):
        loaded(empty)


def test_clear_errors_for_configs_this_server_cannot_run(hf_dir, tmp_path):
    raw = json.loads((hf_dir[0] / "config.json").read_text())
    with pytest.raises(ValueError, match="unsupported architecture"):
        ModelConfig.from_dict({**raw, "architectures": ["MistralForCausalLM"], "model_type": "mistral"})
    with pytest.raises(ValueError, match="only linear scaling"):
        ModelConfig.from_dict({**raw, "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6}})
    with pytest.raises(ValueError, match="missing hidden_size"):
        ModelConfig.from_dict({k: v for k, v in raw.items() if k != "hidden_size"})
    with pytest.raises(FileNotFoundError, match="no config.json"):
        ModelConfig.from_dir(tmp_path)
