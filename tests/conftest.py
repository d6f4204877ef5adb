import os

import torch

# Without a GPU, Triton kernels run on the CPU through Triton's interpreter; it must be chosen
# before any kernel is defined, that is before `kernels` is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Build the seeded random model (the default model's baseline) into a temporary cache, not the user's."""
    os.environ["CODELLAMA_CACHE"] = str(tmp_path_factory.mktemp("codellama-cache"))
