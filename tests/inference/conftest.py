"""Models shared by the engine's tests."""

import pytest

from tests.models import tiny_llama


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """(directory, transformers model) of a random 2-layer Llama with grouped-query attention
    (4 heads, 2 KV heads) and the project's 4,096-piece tokenizer."""
    return tiny_llama(tmp_path_factory.mktemp("tiny"))
