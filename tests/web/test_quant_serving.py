"""A server on a quantized checkpoint with an int8 KV cache says so: in /v1/models, on /admin and
in the startup banner, and it answers completions."""

from litestar.testing import TestClient

from inference import LLMEngine
from tests.inference.quant_checkpoints import Variant, write_quantized
from tests.models import tiny_llama
from web.app import create_app
from web.server import banner


def test_quantized_engine_is_described_everywhere(tmp_path):
    _, hf = tiny_llama(tmp_path / "dense", hidden=128, intermediate=256)
    write_quantized(hf, tmp_path / "gptq", Variant("gptq", 64, v2=True, act_order=True))
    app = create_app(LLMEngine(tmp_path / "gptq", num_kv_blocks=16, kv_cache_dtype="int8"))
    with TestClient(app) as client:
        card = client.get("/v1/models").json()["data"][0]
        assert (card["weights"], card["kv_cache_dtype"]) == ("gptq-w4g64-act-order", "int8")
        page = client.get("/admin").text
        assert '<th scope="row">weights</th><td>gptq-w4g64-act-order</td>' in page
        assert '<th scope="row">kv cache</th><td>int8</td>' in page
        assert ("(completion; weights gptq-w4g64-act-order, KV cache int8, speculation off) at http://x"
                in banner(app, "http://x"))
        r = client.post("/v1/completions", json={"prompt": "def f(x):", "max_tokens": 5, "temperature": 0})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 5
