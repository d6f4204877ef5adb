"""Model and engine configuration.

`ModelConfig` is read from a Hugging Face `config.json`; `EngineConfig` holds everything an
engine is made from. Both are frozen: values learned at run time (number of KV blocks, eos ids)
live on the engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the scheduler imports this module and stays plain Python
    import torch

    from .quant import QuantScheme

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rope_scaling_factor: float = 1.0  # linear position interpolation; 1.0 = none
    rms_norm_eps: float = 1e-5
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers",
                     "num_heads", "num_kv_heads", "head_dim", "max_position_embeddings"):
            if getattr(self, name) <= 0:
                raise ValueError(f"config.json: {name} must be positive, got {getattr(self, name)}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"config.json: num_attention_heads ({self.num_heads}) is not a multiple "
                             f"of num_key_value_heads ({self.num_kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"config.json: head_dim must be even for rotary embeddings, got {self.head_dim}")

    @classmethod
    def from_dict(cls, raw: dict) -> "ModelConfig":
        archs = raw.get("architectures") or ["LlamaForCausalLM"]
        if raw.get("model_type", "llama") != "llama" or not any(a in SUPPORTED_ARCHITECTURES for a in archs):
            raise ValueError(f"unsupported architecture {archs} (model_type {raw.get('model_type')!r}); "
                             f"this server runs Llama / Code Llama models ({', '.join(SUPPORTED_ARCHITECTURES)})")
        if raw.get("hidden_act", "silu") != "silu":
            raise ValueError(f"unsupported hidden_act {raw['hidden_act']!r}: Llama uses silu")
        if raw.get("attention_bias") or raw.get("mlp_bias"):
            raise ValueError("unsupported: attention_bias / mlp_bias are set; Llama has no biases")
        missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                               "num_attention_heads") if k not in raw]
        if missing:
            raise ValueError(f"config.json is missing {', '.join(missing)}")
        heads = raw["num_attention_heads"]
        rope_theta, factor = _rope_settings(raw)
        eos = raw.get("eos_token_id", 2)
        if isinstance(eos, list):
            eos = eos[0] if eos else None
        return cls(
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            intermediate_size=raw["intermediate_size"],
            num_layers=raw["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=raw.get("num_key_value_heads") or heads,
            head_dim=raw.get("head_dim") or raw["hidden_size"] // heads,
            rope_theta=rope_theta,
            rope_scaling_factor=factor,
            rms_norm_eps=raw.get("rms_norm_eps", 1e-5),
            max_position_embeddings=raw.get("max_position_embeddings", 4096),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            bos_token_id=raw.get("bos_token_id", 1),
            eos_token_id=eos,
        )

    @classmethod
    def from_dir(cls, path: str | Path) -> "ModelConfig":
        cfg = Path(path) / "config.json"
        if not cfg.is_file():
            raise FileNotFoundError(f"{path}: no config.json (expected a Hugging Face model directory "
                                    f"or a workspace made by `codellama convert`)")
        try:
            raw = json.loads(cfg.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{cfg}: not valid JSON ({e})") from None
        return cls.from_dict(raw)


def _rope_settings(raw: dict) -> tuple[float, float]:
    """(theta, linear scaling factor), from transformers 4 (`rope_theta`, `rope_scaling`) or
    transformers 5 (`rope_parameters`) layouts."""
    params = raw.get("rope_parameters") or {}
    scaling = raw.get("rope_scaling") or {}
    theta = params.get("rope_theta", raw.get("rope_theta", 10000.0))
    merged = {**scaling, **params}
    kind = merged.get("rope_type", merged.get("type", "default"))
    if kind in (None, "default"):
        return float(theta), 1.0
    if kind == "linear":
        return float(theta), float(merged["factor"])
    raise ValueError(f"unsupported rope scaling {kind!r}: only linear scaling is implemented")


DTYPE_NAMES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
               "half": "float16", "float32": "float32", "fp32": "float32"}


def resolve_dtype(dtype: "str | torch.dtype | None", device: "torch.device | str") -> "torch.dtype":
    import torch

    if dtype is None:
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of bfloat16, float16, float32")
    return getattr(torch, DTYPE_NAMES[dtype])


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything an engine is made from, with its defaults, validated once (limits named as in
    vLLM). What the user leaves open is filled in here from the model's config.json and the
    machine: the model directory (None: the embedded default model), the context window, the
    device and the dtype. Handed whole to the engine, its runner and tensor-parallel workers.
    Values learned while the engine starts (KV blocks in the pool, the tokenizer's ids) live on
    the engine."""

    model: str | Path | None = None  # a Hugging Face directory or a workspace; None: the default model
    model_name: str | None = None  # which Code Llama it is (sets its abilities), e.g. CodeLlama-7b-hf
    capabilities: tuple[str, ...] | None = None  # abilities instead of the model's own
    dtype: str | None = None  # bfloat16, float16, float32; None: bfloat16 on a GPU, float32 on a CPU
    device: str | None = None  # cuda, cuda:1, cpu; None: cuda when available
    tensor_parallel_size: int = 1
    load_format: str = "auto"  # "random": seeded random weights of the model's shape (benchmarks)
    block_size: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None  # None: max(4096, max_num_seqs)
    max_model_len: int | None = None  # None: the model's positions
    enable_prefix_caching: bool = True
    num_kv_blocks: int | None = None  # fixed pool size; None: sized from memory
    kv_cache_memory_fraction: float = 0.9  # GPU: fraction of free memory after weights
    kv_cache_gib: float | None = None  # a fixed pool size in GiB (any device, any KV dtype); None: from memory
    enforce_eager: bool = False  # GPU: no CUDA graphs
    quantization: str | None = None  # awq / int8 (inference/quant): random weights of that scheme, or a
    #                                  dense checkpoint rounded to int8 as it loads; None: the checkpoint's own
    kv_cache_dtype: str = "auto"  # auto: the model's dtype; int8: one scale per token and head (kernels/kv_int8.py)
    speculate: str | None = None  # auto, ngram, suffix, off: model-free drafts verified in one step
    #                               (inference/speculative); None: auto where a table is shipped for
    #                               this card and shape (speculative/step_tables.py), else off
    num_speculative_tokens: int = 5  # the longest draft a step verifies
    speculative_step_times: str | Path | None = None  # a `codellama bench verify` record: the cost model's
    #                                                   table; None: the one shipped for this card and shape
    model_config: ModelConfig = field(init=False, repr=False, compare=False)
    weight_scheme: "QuantScheme | None" = field(init=False, repr=False, compare=False)  # the weights' quantization

    def __post_init__(self) -> None:
        import torch

        from .model_source import resolve_model_dir
        from .quant import resolve_scheme

        self._check_limits()
        model_dir = resolve_model_dir(self.model)
        model_config = ModelConfig.from_dir(model_dir)
        window = model_config.max_position_embeddings
        if self.max_model_len is not None and self.max_model_len > window:
            raise ValueError(f"max_model_len {self.max_model_len} exceeds the model's {window} positions")
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        resolved = {
            "model": model_dir, "model_config": model_config, "device": str(torch.device(device)),
            "dtype": str(resolve_dtype(self.dtype, device)).removeprefix("torch."),
            "max_model_len": self.max_model_len or window,
            "max_num_batched_tokens": self.max_num_batched_tokens or max(4096, self.max_num_seqs),
            "capabilities": tuple(self.capabilities) if self.capabilities else None,
            "weight_scheme": resolve_scheme(model_dir, self.quantization, self.load_format == "random"),
        }
        resolved |= self._speculation(model_config, resolved)
        for name, value in resolved.items():
            object.__setattr__(self, name, value)

    def _speculation(self, model_config: ModelConfig, resolved: dict) -> dict:
        """The speculation mode and its step-time table: a table shipped for this card and shape
        when none is given and the setting is the one it was measured in (one GPU, bf16 weights
        and KV cache); no mode given: auto with such a table, else off."""
        import torch

        from .model_shapes import shape_name
        from .speculative.step_tables import shipped_step_times

        table = self.speculative_step_times
        measured_setting = (resolved["device"].startswith("cuda") and resolved["dtype"] == "bfloat16"
                            and self.tensor_parallel_size == 1 and resolved["weight_scheme"] is None
                            and self.kv_cache_dtype == "auto")
        if table is None and self.speculate != "off" and measured_setting:
            shape = shape_name(model_config.num_layers, model_config.hidden_size, model_config.num_heads,
                               model_config.num_kv_heads, model_config.intermediate_size)
            table = shipped_step_times(torch.cuda.get_device_name(resolved["device"]), shape)
        return {"speculate": self.speculate or ("auto" if table is not None else "off"),
                "speculative_step_times": table}

    def _check_limits(self) -> None:
        if not (1 <= self.block_size <= 128 and self.block_size & (self.block_size - 1) == 0):
            raise ValueError(f"block_size must be a power of two up to 128, got {self.block_size}")
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.max_num_batched_tokens is not None and self.max_num_batched_tokens < 1:
            raise ValueError(f"max_num_batched_tokens must be >= 1, got {self.max_num_batched_tokens}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {self.max_model_len}")
        if self.num_kv_blocks is not None and self.num_kv_blocks < 1:
            raise ValueError(f"num_kv_blocks must be >= 1, got {self.num_kv_blocks}")
        if not 0 < self.kv_cache_memory_fraction <= 1:
            raise ValueError(f"kv_cache_memory_fraction must be in (0, 1], got {self.kv_cache_memory_fraction}")
        if self.kv_cache_gib is not None and self.kv_cache_gib <= 0:
            raise ValueError(f"kv_cache_gib must be positive, got {self.kv_cache_gib}")
        if self.tensor_parallel_size < 1:
            raise ValueError(f"tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        if self.load_format not in ("auto", "random"):
            raise ValueError(f"unknown load_format {self.load_format!r}: use auto or random")
        if self.kv_cache_dtype not in ("auto", "int8"):
            raise ValueError(f"unknown kv_cache_dtype {self.kv_cache_dtype!r}: use auto or int8")
        from .speculative import check_speculation  # (imports torch: after the checks that need nothing)

        check_speculation(self.speculate or "off", self.num_speculative_tokens)

    @property
    def model_dir(self) -> Path:
        return self.model

    @property
    def torch_dtype(self) -> "torch.dtype":
        import torch

        return getattr(torch, self.dtype)

    @property
    def torch_device(self) -> "torch.device":
        import torch

        return torch.device(self.device)

    @property
    def kv_int8(self) -> bool:
        return self.kv_cache_dtype == "int8"

    @property
    def weights_label(self) -> str:
        """What the weights are stored as, for users: a quantization scheme (awq-w4g128) or the dtype."""
        return self.weight_scheme.name if self.weight_scheme is not None else self.dtype

    @property
    def kv_cache_label(self) -> str:
        return "int8" if self.kv_int8 else self.dtype

    @property
    def max_blocks_per_seq(self) -> int:
        return -(-self.max_model_len // self.block_size)
