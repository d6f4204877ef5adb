"""Weight quantization (AWQ, GPTQ, int8): which scheme a model directory holds, reading the
published checkpoint layouts, the model's quantized projection, and quantizing a model ourselves."""

from .linear import QuantizedLinear, linear, packed_input
from .scheme import OWN_SCHEMES, QuantScheme, check_scheme, read_quantization, resolve_scheme

__all__ = ["OWN_SCHEMES", "QuantScheme", "QuantizedLinear", "check_scheme", "linear", "packed_input",
           "read_quantization", "resolve_scheme"]
