"""llama.cpp's native routes, as its editor plugins call them."""

from __future__ import annotations

import json

import httpx
import pytest


@pytest.fixture(scope="module")
def http(scripted_server):
    with httpx.Client(base_url=scripted_server.url, timeout=30) as client:
        yield client


def test_infill_fills_the_middle_and_ignores_unknown_knobs(http, script_model):
    script = script_model[0]
    body = {"input_prefix": "def f(x):\n", "input_suffix": "\n    return y\n", "n_predict": 20, "temperature": 0,
            "cache_prompt": True, "t_max_predict_ms": 500, "samplers": ["top_k"]}  # llama.vim sends such knobs
    r = http.post("/infill", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["content"] == script.infill_text and out["stop"] is True and out["stop_type"] == "eos"
    assert out["tokens_predicted"] == len(script.infill_ids) + 1  # and the ▁<EOT> that ended it
    assert out["timings"]["predicted_n"] == out["tokens_predicted"]


def test_infill_with_prompt_and_extra_context_and_limit(http):
    r = http.post("/infill", json={"input_prefix": "x = ", "input_suffix": "\n", "prompt": "1 +",
                                   "input_extra": [{"filename": "a.py", "text": "import os\n"}], "n_predict": 1,
                                   "temperature": 0})
    out = r.json()
    assert out["stop_type"] == "limit" and out["tokens_predicted"] == 1
    assert out["tokens_evaluated"] > 8  # the extra chunk and the prompt are part of the prompt


def test_infill_stream_has_no_done_sentinel(http, script_model):
    body = {"input_prefix": "def f(x):\n", "input_suffix": "\n", "n_predict": 20, "temperature": 0, "stream": True}
    with http.stream("POST", "/infill", json=body) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert "".join(e["content"] for e in events) == script_model[0].infill_text
    assert [e["stop"] for e in events][-1] is True and not any(e["stop"] for e in events[:-1])


def test_infill_type_errors_are_still_400(http):
    r = http.post("/infill", json={"input_prefix": 3})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input_prefix"


def test_an_extra_chunk_without_text_is_400_as_in_llama_cpp(http):
    r = http.post("/infill", json={"input_prefix": "x = ", "input_extra": [{"filename": "a.py"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input_extra[0].text"


def test_tokenize_and_detokenize_round_trip(http, script_model):
    tok = script_model[0].tok
    text = "def add(a, b):\n    return a + b"
    r = http.post("/tokenize", json={"content": text})
    assert r.json() == {"tokens": tok.encode(text, bos=False)}
    r = http.post("/tokenize", json={"content": text, "add_special": True, "with_pieces": True})
    pieces = r.json()["tokens"]
    assert [p["id"] for p in pieces] == tok.encode(text, bos=True) and pieces[0]["piece"] == "<s>"
    assert http.post("/detokenize", json={"tokens": tok.encode(text, bos=True)}).json() == {"content": text}
    r = http.post("/tokenize", json={"content": "中", "with_pieces": True})  # byte fallback: 3 byte pieces
    assert [p["piece"] for p in r.json()["tokens"]][-3:] == [[b] for b in "中".encode()]
    r = http.post("/detokenize", json={"tokens": [1, 10 ** 6]})
    assert r.status_code == 400 and "outside the vocabulary" in r.json()["error"]["message"]
