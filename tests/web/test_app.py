"""The app around the routes: OpenAPI docs served without a CDN, CORS, request accounting."""

from __future__ import annotations

import httpx
import pytest
from litestar.testing import AsyncTestClient

from inference import LLMEngine
from web.app import create_app
from web.settings import ServerSettings


@pytest.fixture(scope="module")
def http(random_server):
    with httpx.Client(base_url=random_server.url, timeout=30) as client:
        yield client


def test_swagger_ui_at_docs_with_local_assets(http):
    page = http.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert "cdn" not in page.text.lower() and "/docs/assets/swagger-ui-bundle.js" in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js", "favicon-32x32.png"):
        assert http.get(f"/docs/assets/{asset}").status_code == 200
    schema = http.get("/docs/openapi.json").json()
    assert {"/v1/models", "/v1/completions", "/v1/chat/completions", "/infill", "/tokenize", "/detokenize",
            "/health"} <= set(schema["paths"])
    body = schema["paths"]["/v1/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    ref = body["$ref"].rsplit("/", 1)[-1]
    assert {"prompt", "suffix", "max_tokens", "stream"} <= set(schema["components"]["schemas"][ref]["properties"])


def test_the_api_schema_has_metrics_but_not_the_pages(http):
    paths = set(http.get("/docs/openapi.json").json()["paths"])
    assert "/metrics" in paths
    assert not any(p == "/" or p.startswith(("/admin", "/playground", "/login", "/logout", "/static")) for p in paths)


def test_responses_and_latencies_are_accounted(random_server, http):
    accounting = random_server.serving.accounting
    before = dict(accounting.responses)
    ttft_count = accounting.ttft.count
    assert http.post("/v1/completions", json={"prompt": "x", "max_tokens": 4}).status_code == 200
    assert http.post("/v1/completions", json={"prompt": "x", "max_tokens": 0}).status_code == 400
    assert http.get("/v1/models/nope").status_code == 404
    counts = accounting.responses
    assert counts[("POST", "/v1/completions", 200)] == before.get(("POST", "/v1/completions", 200), 0) + 1
    assert counts[("POST", "/v1/completions", 400)] == before.get(("POST", "/v1/completions", 400), 0) + 1
    assert counts[("GET", "/v1/models/{model}", 404)] == before.get(("GET", "/v1/models/{model}", 404), 0) + 1
    assert accounting.ttft.count == ttft_count + 1 and accounting.tpot.count >= 1
    assert 0 < accounting.ttft.quantile(0.5) < 10


async def test_cors_origins(random_model):
    app = create_app(LLMEngine(random_model, num_kv_blocks=16, max_model_len=256),
                     ServerSettings(cors_origins=("http://localhost:3000",)))
    async with AsyncTestClient(app) as client:
        r = await client.options("/v1/models", headers={"Origin": "http://localhost:3000",
                                                        "Access-Control-Request-Method": "GET"})
        assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
        r = await client.get("/v1/models", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
