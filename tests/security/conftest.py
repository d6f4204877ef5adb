"""Live servers for the attack suite, built as tests/web's are (the real app under uvicorn on
127.0.0.1): `open_server` has no keys, `keyed_server` has API keys and an operator key."""

from __future__ import annotations

import pytest

from inference import LLMEngine
from tests.web.conftest import LiveServer, page_model, random_model, random_server, script_model  # noqa: F401
from web.settings import ServerSettings

API_KEY, OPERATOR_KEY = "sk-user", "sk-operator"


def scripted_engine(model_dir, **kwargs) -> LLMEngine:
    return LLMEngine(model_dir, num_kv_blocks=kwargs.pop("num_kv_blocks", 128), max_model_len=256,
                     capabilities=["completion", "infilling", "chat"], **kwargs)


@pytest.fixture(scope="module")
def open_server(script_model):
    server = LiveServer(scripted_engine(script_model[1]), ServerSettings(max_body_bytes=1 << 20)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keyed_server(page_model):
    settings = ServerSettings(api_keys=(API_KEY,), admin_key=OPERATOR_KEY, max_body_bytes=1 << 20)
    server = LiveServer(scripted_engine(page_model[1]), settings).start()
    yield server
    server.stop()
