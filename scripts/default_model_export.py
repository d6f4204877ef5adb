"""The default model's shape, and its export as a Hugging Face Llama directory that the
project's loader reads: config.json, bf16 safetensors (shards of at most 15 MiB, with an index,
when one file would be larger), tokenizer.model and codellama.json."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from inference.model_info import ABILITIES, METADATA_FILE
from inference.model_source import DEFAULT_MODEL_NAME

PRESETS = {
    # 11.0 M parameters: 22 MB in bf16, the size the issue allows (<= 24 MB)
    "default": {"hidden_size": 384, "intermediate_size": 1024, "num_hidden_layers": 6,
                "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 64},
    # for checking the whole pipeline on a CPU in a minute
    "tiny": {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2,
             "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32},
}
MAX_SHARD_BYTES = 15 << 20


def model_config(preset: str, vocab_size: int, max_positions: int) -> dict:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
            "vocab_size": vocab_size, **PRESETS[preset], "max_position_embeddings": max_positions,
            "rope_theta": 1000000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
            "attention_bias": False, "mlp_bias": False, "bos_token_id": 1, "eos_token_id": 2,
            "torch_dtype": "bfloat16"}


def export(model: torch.nn.Module, config: dict, out: Path, tokenizer: Path, training: dict) -> list[Path]:
    """Write the model directory; return its files."""
    out.mkdir(parents=True)
    tensors = {name: t.detach().to("cpu", torch.bfloat16).contiguous() for name, t in model.state_dict().items()
               if not (name == "lm_head.weight" and config["tie_word_embeddings"])}
    shards: list[list[str]] = [[]]
    size = 0
    for name, t in tensors.items():
        if shards[-1] and size + t.nbytes > MAX_SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += t.nbytes
    if len(shards) == 1:
        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        for n, names in enumerate(shards, 1):
            file = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
            save_file({k: tensors[k] for k in names}, str(out / file), metadata={"format": "pt"})
            weight_map |= dict.fromkeys(names, file)
        index = {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.copyfile(tokenizer, out / "tokenizer.model")
    meta = {"model_name": DEFAULT_MODEL_NAME, "variant": "instruct", "size": "tiny", "capabilities": list(ABILITIES),
            "source": "trained by this project on Python source: scripts/train_default_model.py",
            "date": time.strftime("%Y-%m-%d"), "tokenizer_sha256": hashlib.sha256(tokenizer.read_bytes()).hexdigest(),
            "training": training}
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return sorted(out.iterdir())
