"""Weight quantization (AWQ, GPTQ, int8): which scheme a model directory holds, reading the
published checkpoint layouts, the model's quantized projection, and quantizing a model ourselves."""

from .linear import QuantizedLinear, linear
from .scheme import QuantScheme, check_scheme, read_quantization

__all__ = ["QuantScheme", "QuantizedLinear", "check_scheme", "linear", "read_quantization"]
