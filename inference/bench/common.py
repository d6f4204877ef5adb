"""What every benchmark shares: the model shapes, a random-weight engine, the copy bandwidth."""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ..model_shapes import SHAPES
from ..model_source import ASSETS


def shape_config(shape: str) -> dict:
    layers, hidden, heads, kv_heads, inter = SHAPES[shape]
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
            "vocab_size": 32016, "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv_heads, "max_position_embeddings": 16384,
            "rope_theta": 1000000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
            "bos_token_id": 1, "eos_token_id": 2}


def random_model_dir(shape: str) -> Path:
    """A model directory with the shape's config.json and the embedded tokenizer (no weights:
    the engine fills random ones with load_format="random")."""
    path = Path(tempfile.mkdtemp(prefix=f"codellama-{shape}-"))
    (path / "config.json").write_text(json.dumps(shape_config(shape)))
    shutil.copyfile(ASSETS / "tokenizer.model", path / "tokenizer.model")
    return path


def make_engine(shape: str, **kwargs):
    """A random-weight engine of the shape; speculation off unless asked for (a shipped step-time
    table would turn it on by default on its card: benchmarks say what they measure)."""
    from ..engine import LLMEngine

    return LLMEngine(random_model_dir(shape), load_format="random", **{"speculate": "off", **kwargs})


def copy_bandwidth(gib: float = 2.0) -> float:
    """Device-to-device copy, bytes read + written per second (median of 20)."""
    src = torch.empty(int(gib * (1 << 30)) // 2, dtype=torch.bfloat16, device="cuda").normal_()
    dst = torch.empty_like(src)
    times = []
    for _ in range(23):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times = sorted(times[3:])
    del src, dst
    torch.cuda.empty_cache()
    return 2 * gib * (1 << 30) / times[len(times) // 2]


def operand_copies(operand_bytes: int, l2_bytes: int = 256 << 20) -> int:
    """How many copies of a kernel's operands, called in turn, keep them from being read from L2."""
    return max(2, -(-l2_bytes // operand_bytes))


def graph_ms(calls: list, replays: int = 20) -> float:
    """Milliseconds per call of a kernel as a decode step runs it: the calls (one kernel on
    operand_copies() copies of its operands) replayed from one CUDA graph, so no launch overhead."""
    for call in calls:  # compile outside the capture
        call()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    graph.replay()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / len(calls))
    del graph
    torch.cuda.empty_cache()
    return sorted(times)[len(times) // 2]


def device_record(cuda: bool = True) -> dict:
    """The card a benchmark ran on, or with cuda=False the CPU (its cores, torch's threads and the
    load average: CPU figures depend on what else the machine was doing)."""
    common = {"torch": torch.__version__, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    if not cuda:
        return {"card": "cpu", "cpu": platform.processor() or platform.machine(),
                "cores": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
                "load_average": os.getloadavg(), **common}
    import triton

    props = torch.cuda.get_device_properties(0)
    return {"card": props.name, "sms": props.multi_processor_count, "memory_gib": round(props.total_memory / 2**30, 1),
            "triton": triton.__version__, **common}


def weight_bytes_per_step(model) -> int:
    """Bytes of weights a decode step reads, as stored: every parameter but the embedding table
    (one row of it), a tied LM head counted once."""
    emb = model.embed_tokens
    total = sum(p.nbytes for p in model.parameters())
    return total if model.cfg.tie_word_embeddings else total - emb.nbytes + emb[0].nbytes


def kv_bytes_per_token(cfg: dict, kv_int8: bool = False) -> int:
    """K and V bytes of one token in every layer: bf16, or int8 rows with a float32 scale each."""
    d = cfg["hidden_size"] // cfg["num_attention_heads"]
    return 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * (d + 4 if kv_int8 else 2 * d)


def write_json(path: str | None, record: dict) -> None:
    text = json.dumps(record, indent=2)
    print(text)
    if path:
        Path(path).write_text(text + "\n")
