"""The Code Llama shapes by name: benchmarks build random models of them, and a step-time table
measured on one says which (inference/speculative/step_tables.py)."""

from __future__ import annotations

# layers, hidden, heads, KV heads, MLP width
SHAPES = {
    "7b": (32, 4096, 32, 32, 11008),
    "13b": (40, 5120, 40, 40, 13824),
    "34b": (48, 8192, 64, 8, 22016),
    "70b": (80, 8192, 64, 8, 28672),
}


def shape_name(num_layers: int, hidden_size: int, num_heads: int, num_kv_heads: int,
               intermediate_size: int) -> str | None:
    """The name of a model's shape, or None for a shape not in SHAPES."""
    dims = (num_layers, hidden_size, num_heads, num_kv_heads, intermediate_size)
    return next((name for name, shape in SHAPES.items() if shape == dims), None)
