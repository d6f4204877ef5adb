"""Workspaces: self-contained model directories that `codellama convert` writes and every
command loads like a Hugging Face directory.

    workspace/
      codellama.json     model_name, variant, size, capabilities, source, tp, dtype, format,
                         and for quantized weights their scheme ("quantization", inference/quant)
      config.json        the model's config, normalised (ModelConfig and transformers read it)
      tokenizer.model    the SentencePiece vocabulary
      rank-0/ rank-1/    each tensor-parallel rank's fused parameters (see inference.weights)

The conversion is written beside the destination and renamed into place once checked, so an
interrupted conversion leaves no half-written workspace behind.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import ExitStack
from pathlib import Path

import torch
from tqdm import tqdm

from .config import ModelConfig
from .config import resolve_dtype
from .model import LlamaModel, TensorParallel
from .model_info import ModelInfo, load_model_info, read_metadata, size_from_config
from .model_source import resolve_model_dir
from .quant import QuantScheme, read_quantization
from .tokenizer import Tokenizer
from .weights import assemble, assemble_hf, fused_tensors, rank_dir, write_fused_rank

WORKSPACE_FORMAT = "codellama-serve-workspace/1"


def convert(hf_dir: str | Path, dst: str | Path, *, model_name: str | None = None,
            capabilities: list[str] | None = None, tp: int = 1, dtype: str | None = None,
            force: bool = False, progress: bool = True, quant: str | None = None,
            calib: str | Path | None = None) -> ModelInfo:
    """Convert a Hugging Face Llama / Code Llama directory into a workspace at `dst`; an AWQ or
    GPTQ checkpoint stays quantized, and `quant` ("awq" or "int8") quantizes a dense one."""
    hf_dir = resolve_model_dir(hf_dir)
    if rank_dir(hf_dir, 0).is_dir():
        raise ValueError(f"{hf_dir} is already a workspace; convert from the Hugging Face directory it came from")
    cfg = ModelConfig.from_dir(hf_dir)
    raw_config = json.loads((hf_dir / "config.json").read_text())
    torch_dtype = resolve_dtype(dtype or raw_config.get("torch_dtype") or raw_config.get("dtype") or "bfloat16",
                                torch.device("cpu"))
    info = _describe(hf_dir, cfg, model_name, capabilities)
    if Tokenizer(hf_dir / "tokenizer.model").vocab_size > cfg.vocab_size:
        raise ValueError(f"{hf_dir}: the tokenizer has more pieces than the model has embeddings")
    if tp < 1:
        raise ValueError(f"--tp must be >= 1, got {tp}")
    found = read_quantization(hf_dir)
    if quant and found:
        raise ValueError(f"{hf_dir} is already quantized ({found[0].name}); convert it without --quant")
    if calib and quant != "awq":
        raise ValueError("--calib is the calibration text of --quant awq")
    dst = Path(dst)
    _check_destination(dst, force)
    scheme, tensors_for = _weights_source(hf_dir, cfg, found[0] if found else None, quant, calib, torch_dtype,
                                          progress)
    models = [LlamaModel(cfg, torch_dtype, "meta", TensorParallel(r, tp), scheme) for r in range(tp)]  # shapes only
    tmp = dst.parent / f".{dst.name}.converting-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_weights(models, tensors_for, tmp, progress)
        (tmp / "config.json").write_text(json.dumps(normalised_config(cfg, torch_dtype), indent=2) + "\n")
        shutil.copyfile(hf_dir / "tokenizer.model", tmp / "tokenizer.model")
        meta = {**info.as_metadata(), "source": str(hf_dir.resolve()), "tp": tp,
                "dtype": _dtype_name(torch_dtype), "format": WORKSPACE_FORMAT}
        if scheme is not None:
            meta["quantization"] = scheme.as_metadata()
        (tmp / "codellama.json").write_text(json.dumps(meta, indent=2) + "\n")
        check_workspace(tmp)
        if dst.exists():
            shutil.rmtree(dst)
        tmp.rename(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def check_workspace(workspace: Path) -> ModelInfo:
    """Check that a workspace loads: its config, tokenizer and metadata parse, and every rank's
    files hold exactly that rank's parameters with the right shapes (no tensor data is read)."""
    cfg = ModelConfig.from_dir(workspace)
    Tokenizer(workspace / "tokenizer.model")
    info = load_model_info(workspace)
    tp = (read_metadata(workspace) or {}).get("tp")
    if not isinstance(tp, int) or tp < 1 or not rank_dir(workspace, tp - 1).is_dir() \
            or rank_dir(workspace, tp).exists():
        raise ValueError(f"{workspace}: codellama.json's tp ({tp}) does not match its rank-N folders")
    found = read_quantization(workspace)
    for rank in range(tp):
        with ExitStack() as stack:
            model = LlamaModel(cfg, torch.float32, "meta", TensorParallel(rank, tp), found and found[0])
            fused_tensors(model, workspace, stack)
    return info


def normalised_config(cfg: ModelConfig, dtype: torch.dtype) -> dict:
    """A Hugging Face config.json with every field spelt out (no defaults left to the reader)."""
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_position_embeddings, "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None if cfg.rope_scaling_factor == 1.0 else {"rope_type": "linear",
                                                                     "factor": cfg.rope_scaling_factor},
        "tie_word_embeddings": cfg.tie_word_embeddings, "attention_bias": False, "mlp_bias": False,
        "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "torch_dtype": _dtype_name(dtype),
    }


def _describe(hf_dir: Path, cfg: ModelConfig, model_name: str | None, capabilities: list[str] | None) -> ModelInfo:
    info = load_model_info(hf_dir, model_name, capabilities)  # refuses a name contradicting the shape
    if info.variant == "unknown":  # nobody named it: record the size its shape shows, if it is one
        info = ModelInfo(info.name, info.variant, size_from_config(cfg.hidden_size, cfg.num_layers) or "unknown",
                         info.capabilities)
    return info


def _check_destination(dst: Path, force: bool) -> None:
    if not dst.exists() or (dst.is_dir() and not any(dst.iterdir())):
        return
    if not force:
        raise ValueError(f"{dst} already exists; pass --force to replace it")
    meta = read_metadata(dst) if dst.is_dir() else None
    if meta is None or meta.get("format") != WORKSPACE_FORMAT:
        raise ValueError(f"{dst} exists and is not a workspace; refusing to replace it even with --force")


def _weights_source(hf_dir: Path, cfg: ModelConfig, scheme: QuantScheme | None, quant: str | None,
                    calib: str | Path | None, dtype: torch.dtype, progress: bool):
    """(scheme, a function giving a rank's assembled parameters): the checkpoint's own, or those
    of the model quantized here."""
    if not quant:
        return scheme, lambda model, buffer_for: assemble_hf(model, hf_dir, buffer_for)
    from .quant.quantize import quantize_checkpoint

    quantized = quantize_checkpoint(hf_dir, cfg, quant, dtype, calib, progress)
    source = f"{hf_dir} quantized ({quantized.scheme.name})"
    return quantized.scheme, lambda model, buffer_for: assemble(model, quantized.dense, buffer_for, source,
                                                                quantized.weight_source())


def _write_weights(models: list[LlamaModel], tensors_for, out: Path, progress: bool) -> None:
    total = sum(p.nbytes for m in models for p in m.parameters())  # a tied lm_head counts once
    with tqdm(total=total, unit="B", unit_scale=True, desc="converting",
              disable=not progress) as bar:
        for model in models:
            params = dict(model.named_parameters(remove_duplicate=False))

            def fresh(name: str) -> torch.Tensor:
                return torch.empty(params[name].shape, dtype=params[name].dtype)

            def counted(tensors):
                for name, tensor in tensors:
                    bar.update(tensor.nbytes)
                    yield name, tensor

            bar.set_postfix_str(f"rank {model.tp.rank + 1}/{model.tp.size}")
            write_fused_rank(counted(tensors_for(model, fresh)), rank_dir(out, model.tp.rank), model.tp)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
