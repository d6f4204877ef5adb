"""Where a model comes from: a directory the user names, or the embedded default model.

The default model lets every command run with nothing downloaded: `codellama-tiny-python`, a small
Llama trained by this project on Python source (scripts/train_default_model.py), shipped as package
data in `inference/assets` and loaded from there. A model of seeded random weights with the same
tokenizer, built on first use into a cache folder, is the yardstick its quality is measured
against and the tests' fixture.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from .model_info import ABILITIES, METADATA_FILE

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL_NAME = "codellama-tiny-python"
RANDOM_MODEL_NAME = "codellama-tiny-random-v2"
RANDOM_MODEL_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "vocab_size": 4096, "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "max_position_embeddings": 4096,
    "rope_theta": 1000000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
    "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
}


def cache_root() -> Path:
    return Path(os.environ.get("CODELLAMA_CACHE", Path.home() / ".cache" / "codellama-serve"))


def resolve_model_dir(model: str | Path | None) -> Path:
    if model is None:
        return default_model_dir()
    path = Path(model).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{model}: no such model directory (give a Hugging Face Llama directory or "
                                f"a workspace from `codellama convert`; nothing is downloaded)")
    if not (path / "tokenizer.model").is_file():
        raise FileNotFoundError(f"{path}: no tokenizer.model (Code Llama ships a SentencePiece tokenizer.model)")
    return path


def default_model_dir() -> Path:
    """The embedded default model: the package's assets folder is its Hugging Face directory."""
    if not (ASSETS / METADATA_FILE).is_file():
        raise FileNotFoundError(f"{ASSETS}: the embedded default model's weights are missing (they come from "
                                f"scripts/train_default_model.py); give a model directory instead")
    return ASSETS


def random_baseline_dir() -> Path:
    """The seeded random model, built on first use (a few seconds)."""
    target = cache_root() / RANDOM_MODEL_NAME
    if (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        build_random_model(Path(tmp))
        try:
            os.rename(tmp, target)  # atomic: a concurrent builder may have won the race
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
        os.makedirs(tmp, exist_ok=True)  # TemporaryDirectory removes what it created
    return target


def build_random_model(out: Path) -> None:
    cfg = RANDOM_MODEL_CONFIG
    gen = torch.Generator().manual_seed(20240825)
    h, inter, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    q, kv = cfg["num_attention_heads"] * cfg["head_dim"], cfg["num_key_value_heads"] * cfg["head_dim"]

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * 0.02

    tensors = {"model.embed_tokens.weight": normal(vocab, h), "model.norm.weight": torch.ones(h),
               "lm_head.weight": normal(vocab, h)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors |= {
            p + "self_attn.q_proj.weight": normal(q, h), p + "self_attn.k_proj.weight": normal(kv, h),
            p + "self_attn.v_proj.weight": normal(kv, h), p + "self_attn.o_proj.weight": normal(h, q),
            p + "mlp.gate_proj.weight": normal(inter, h), p + "mlp.up_proj.weight": normal(inter, h),
            p + "mlp.down_proj.weight": normal(h, inter),
            p + "input_layernorm.weight": torch.ones(h), p + "post_attention_layernorm.weight": torch.ones(h),
        }
    save_file(tensors, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    meta = {"model_name": RANDOM_MODEL_NAME, "variant": "instruct", "size": "tiny",
            "capabilities": list(ABILITIES), "source": "built-in: seeded random weights"}
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=2))
    shutil.copyfile(ASSETS / "tokenizer.model", out / "tokenizer.model")
