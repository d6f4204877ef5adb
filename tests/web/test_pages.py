"""The playground's routes through Litestar's test client: the page, the fragments each form
swaps in, the streamed answer (escaped, exact), errors as fragments, Stop, and admission."""

from __future__ import annotations

import html
import re

import pytest
from litestar.testing import TestClient

from inference import LLMEngine
from inference.prompts import chat_prompt
from tests.web.conftest import PYTHON_PROMPT, page_engine, pool_full, wait_for
from tests.web.page_script import COMPLETION_PROMPT
from tests.web.sse_events import parse_events
from web.app import create_app
from web.pages.render import Segment, segments, verbatim
from web.server import banner
from web.settings import ServerSettings

CODE = 'def remove_non_ascii(s: str) -> str:\n    """ <FILL>\n    return result\n'


@pytest.fixture(scope="module")
def app(page_model):
    return create_app(page_engine(page_model[1]))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as client:
        yield client


def stream_key(fragment: str) -> str:
    return re.search(r'sse-connect="/playground/stream/(\w+)\?kind=\w+"', fragment).group(1)


def answer_events(client, fragment: str) -> tuple[list[str], str]:
    """The token events' data and the done event's data of the answer a fragment streams."""
    events = parse_events(client.get(f"/playground/stream/{stream_key(fragment)}").text)
    assert [name for name, _ in events[:-1]] == ["token"] * (len(events) - 1) and events[-1][0] == "done"
    return [data for _, data in events[:-1]], events[-1][1]


def test_the_page_offers_the_model_abilities_with_local_assets(client, app):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for tab in ("chat", "infill", "complete"):
        assert re.search(rf'<input type="radio" name="tab" id="tab-{tab}" value="{tab}"(?: checked)?>', page.text)
    assert 'value="Provide answers in Python"' in page.text
    assert {"/static/htmx.min.js", "/static/sse.js", "/static/app.js", "/static/app.css"} <= set(
        re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text))
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset, marker in (("htmx.min.js", "htmx"), ("sse.js", "defineExtension('sse'"),
                          ("app.css", "prefers-color-scheme"), ("favicon.svg", "<svg")):
        r = client.get(f"/static/{asset}")
        assert r.status_code == 200 and marker in r.text
    assert "pages  http://x/  (playground); http://x/admin" in banner(app, "http://x")
    assert "; weights float32, KV cache float32, speculation off) at http://x" in banner(app, "http://x")


def test_abilities_the_model_lacks_are_disabled_with_the_reason(random_model):
    with TestClient(create_app(LLMEngine(random_model, num_kv_blocks=16, max_model_len=256))) as client:
        page = client.get("/").text
        for tab in ("chat", "infill"):
            assert f'id="tab-{tab}" value="{tab}" disabled>' in page and f'id="panel-{tab}"' not in page
        assert re.search(r'data-disabled-reason="chat">Chat is not available: .*--model-name', page)
        assert 'id="tab-complete" value="complete" checked>' in page
        r = client.post("/playground/chat", data={"message": "hi"})
        assert r.status_code == 400 and r.headers["hx-retarget"] == "#chat-status"


def test_chat_streams_the_answer_token_by_token_escaped(client, page_model):
    script, _ = page_model
    before = client.app.state.serving.accounting.requests["chat"]
    r = client.post("/playground/chat", data={"message": "<b>sort</b> xs", "system": "Provide answers in Python",
                                              "max_tokens": str(len(script.chat_ids)), "temperature": "0"})
    assert r.status_code == 200
    assert '<div class="stream-text">&lt;b&gt;sort&lt;/b&gt; xs</div>' in r.text  # the user's turn, escaped
    assert '<input type="hidden" name="user_turn" value="&lt;b&gt;sort&lt;/b&gt; xs">' in r.text
    assert re.search(r'<button id="chat-send" type="submit" hx-swap-oob="true" disabled>', r.text)
    tokens, done = answer_events(client, r.text)
    assert len(tokens) >= 10 and all("<" not in t for t in tokens)  # many events, none carrying markup
    assert html.unescape("".join(tokens)) == script.chat_text
    assert "<script>" not in done and "&lt;script&gt;alert(1)&lt;/script&gt;" in done
    code = re.search(r'<span>python</span><button type="button" class="copy" data-copy>Copy</button></div>'
                     r'<pre><code>(.*?)</code></pre>', done)
    assert code and html.unescape(code.group(1)) == script.chat_text.split("python\n")[1].removesuffix("```")
    turn = re.search(r'<input type="hidden" name="assistant_turn" value="([^"]*)">', done).group(1)
    assert html.unescape(turn) == script.chat_text
    assert "max tokens reached" in done and f'data-tokens="{len(script.chat_ids)}"' in done
    assert client.app.state.serving.accounting.requests["chat"] == before + 1


def test_the_conversation_and_system_instruction_make_the_prompt(client, page_model):
    script, _ = page_model
    serving = client.app.state.serving
    history = {"user_turn": ["first\r\nquestion"], "assistant_turn": ["first answer"]}
    before = serving.accounting.prompt_tokens
    r = client.post("/playground/chat", data={"message": "second", "system": "Be brief", "max_tokens": "3",
                                              **history})
    answer_events(client, r.text)
    expected = chat_prompt(script.tok, [{"role": "system", "content": "Be brief"},
                                        {"role": "user", "content": "first\nquestion"},
                                        {"role": "assistant", "content": "first answer"},
                                        {"role": "user", "content": "second"}])
    assert serving.accounting.prompt_tokens - before == len(expected.token_ids)
    r = client.post("/playground/chat", data={"message": "x", "user_turn": ["a", "b"], "assistant_turn": ["c"]})
    assert r.status_code == 400 and "press Reset" in r.text


def test_infill_streams_the_middle_between_the_given_code(client, page_model):
    script, _ = page_model
    r = client.post("/playground/infill", data={"code": CODE})
    assert r.status_code == 200
    prefix, suffix = CODE.split("<FILL>")
    given = re.findall(r'<span class="given">(.*?)</span>', r.text, re.S)
    assert [html.unescape(g.replace("&#10;", "\n")) for g in given] == [prefix, suffix]
    tokens, done = answer_events(client, r.text)
    assert len(tokens) > 3 and html.unescape("".join(tokens)) == script.infill_text
    code = re.search(r"<pre><code>(.*?)</code></pre>", done, re.S).group(1)
    assert html.unescape(re.sub(r"<[^>]+>", "", code)) == prefix + script.infill_text + suffix
    assert html.unescape(re.search(r"<mark>(.*?)</mark>", code).group(1)) == script.infill_text


def test_complete_streams_the_continuation_after_the_prompt(client, page_model):
    script, _ = page_model
    r = client.post("/playground/complete", data={"prompt": COMPLETION_PROMPT})
    # the tab's button is disabled while the answer streams, and enabled with the finished answer
    assert '<button id="complete-send" type="submit" hx-swap-oob="true" disabled>Complete</button>' in r.text
    tokens, done = answer_events(client, r.text)
    assert '<button id="complete-send" type="submit" hx-swap-oob="true">Complete</button>' in done
    assert html.unescape("".join(tokens)) == script.completion_text
    assert re.search(r'<span class="given">def add\(a, b\):</span><mark>(.*?)</mark>', done).group(1) == \
        html.escape(script.completion_text, quote=False)
    assert "max tokens reached" not in done


def test_the_python_tab_stops_at_a_new_top_level_statement(python_model):
    with TestClient(create_app(page_engine(python_model, capabilities=["completion", "python"]))) as client:
        page = client.get("/?tab=python").text  # a linked tab is the one selected
        assert re.search(r'id="tab-python" value="python" checked>', page) and 'id="python-form"' in page
        r = client.post("/playground/python", data={"prompt": PYTHON_PROMPT, "temperature": "0"})
        assert 'id="python-send" type="submit" hx-swap-oob="true" disabled' in r.text
        tokens, done = answer_events(client, r.text)
        mark = re.search(r"<mark>(.*?)</mark>", done, re.S).group(1)
        assert html.unescape(mark) == " * f"  # not "\ndef main():", which the same prompt completes to
        assert 'id="python-send" type="submit" hx-swap-oob="true">' in done
        assert "checked" not in re.search(r'<input[^>]*id="tab-python"[^>]*>', client.get("/?tab=nope").text).group(0)


@pytest.mark.parametrize("route,form,status,target,message", [
    ("infill", {"code": "def f(): pass"}, 400, "#infill-status", "no &lt;FILL&gt; marker"),
    ("python", {"prompt": "x"}, 400, "#python-status", "python needs to know which Code Llama this is"),
    ("infill", {"code": "<FILL> and <FILL>"}, 400, "#infill-status", "more than one &lt;FILL&gt; marker"),
    ("chat", {"message": "  "}, 400, "#chat-status", "the message is empty"),
    ("complete", {"prompt": "x", "temperature": "hot"}, 400, "#complete-status", "temperature must be a number"),
    ("complete", {"prompt": "x", "max_tokens": "0"}, 400, "#complete-status", "max_tokens"),
    ("complete", {"prompt": "x", "max_tokens": "5000"}, 400, "#complete-status", "1024"),
])
def test_bad_requests_come_back_as_an_error_in_the_form(client, route, form, status, target, message):
    before = client.app.state.serving.accounting.responses[("POST", f"/playground/{route}", status)]
    r = client.post(f"/playground/{route}", data=form)
    assert r.status_code == status and r.headers["hx-retarget"] == target and r.headers["hx-reswap"] == "innerHTML"
    assert message in r.text and 'role="alert"' in r.text
    # a code tab's previous answer is cleared, lest it read as this request's; a chat keeps its conversation
    cleared = f'<div id="{route}-result" hx-swap-oob="innerHTML"></div>'
    assert (cleared in r.text) == (route != "chat") and "conversation" not in r.text
    assert client.app.state.serving.accounting.responses[("POST", f"/playground/{route}", status)] == before + 1
    assert pool_full(client.app.state.serving.front.engine)


def test_stop_before_the_stream_starts_ends_it_and_the_stream_says_so(client):
    serving = client.app.state.serving
    stopped = serving.accounting.ended_early["stopped"]
    r = client.post("/playground/chat", data={"message": "hi"})
    key = stream_key(r.text)
    assert client.post(f"/playground/stop/{key}").status_code == 204
    assert client.post(f"/playground/stop/{key}").status_code == 404
    events = parse_events(client.get(f"/playground/stream/{key}?kind=chat").text)
    assert [name for name, _ in events] == ["done"] and "no longer available" in events[0][1]
    assert 'id="chat-send" type="submit" hx-swap-oob="true">' in events[0][1]  # Send is enabled again
    assert serving.accounting.ended_early["stopped"] == stopped + 1
    assert serving.admission.in_flight == 0


def test_an_answer_no_browser_comes_for_is_ended(client):
    serving, streams = client.app.state.serving, client.app.state.streams
    streams.claim_timeout, before = 0.2, serving.accounting.ended_early["not_claimed"]
    try:
        client.post("/playground/chat", data={"message": "hi", "max_tokens": "1000"})
        assert wait_for(lambda: serving.accounting.ended_early["not_claimed"] == before + 1)
    finally:
        streams.claim_timeout = 30.0
    assert serving.admission.in_flight == 0 and wait_for(lambda: pool_full(serving.front.engine))


def test_page_answers_take_admission_slots_like_the_api(page_model):
    app = create_app(page_engine(page_model[1], max_num_seqs=1), ServerSettings(max_queue=0, retry_after=3))
    with TestClient(app) as client:
        held = client.post("/playground/chat", data={"message": "hi", "max_tokens": "1000"})
        assert held.status_code == 200
        api = client.post("/v1/completions", json={"prompt": "x", "max_tokens": 1})
        assert api.status_code == 429
        page = client.post("/playground/complete", data={"prompt": "x"})
        assert page.status_code == 429 and page.headers["retry-after"] == "3" and "the server is busy" in page.text
        assert client.post(f"/playground/stop/{stream_key(held.text)}").status_code == 204
        assert client.post("/v1/completions", json={"prompt": "x", "max_tokens": 1}).status_code == 200


def test_reset_empties_the_conversation_and_enables_send(client):
    r = client.get("/playground/reset")
    assert r.status_code == 200
    assert re.sub(r'<(button|p) id="[^"]+"[^>]*hx-swap-oob="true"[^>]*>.*?</\1>', "", r.text, flags=re.S).strip() == ""
    assert '<button id="chat-send" type="submit" hx-swap-oob="true">Send</button>' in r.text


def test_answers_split_into_prose_and_code_blocks_and_show_verbatim():
    assert segments("Try:\n```python\nx = 1\n```\nor ```\ny``` then ```sh\nls") == [
        Segment("Try:\n"), Segment("x = 1", True, "python"), Segment("\nor "), Segment("y", True),
        Segment(" then "), Segment("ls", True, "sh")]  # the last fence is unclosed: an answer cut short
    assert segments("a ``` b") == [Segment("a "), Segment(" b", True)]
    assert verbatim('<a href="x">\r\n') == "&lt;a href=&#34;x&#34;&gt;&#13;&#10;"
