"""A page's answer stream over a real uvicorn server: Stop mid-stream, the browser going away,
and shutdown all end the engine request and say so in the stream's last event."""

from __future__ import annotations

import html
import re
import threading

import httpx
import pytest

from tests.web.conftest import LiveServer, page_engine, pool_full, wait_for
from tests.web.sse_events import parse_events
from web.settings import ServerSettings


@pytest.fixture(scope="module")
def server(page_model):
    server = LiveServer(page_engine(page_model[1])).start()
    yield server
    server.stop()


def start_chat(http: httpx.Client, max_tokens: int = 900) -> str:
    r = http.post("/playground/chat", data={"message": "go on", "max_tokens": str(max_tokens)})
    assert r.status_code == 200
    return re.search(r"/playground/stream/(\w+)", r.text).group(1)


def read_events(lines, count: int | None = None) -> list[tuple[str, str]]:
    """The next `count` events of an open stream, or all of them to its end."""
    text = ""
    for line in lines:
        text += line + "\n"
        events = parse_events(text)
        if count is not None and len(events) >= count:
            return events
    return parse_events(text)


def test_stop_mid_stream_ends_the_engine_request(server, page_model):
    script, _ = page_model
    accounting = server.serving.accounting
    stopped = accounting.ended_early["stopped"]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        key = start_chat(http)
        with http.stream("GET", f"/playground/stream/{key}") as stream:
            lines = stream.iter_lines()
            first = read_events(lines, count=3)
            assert http.post(f"/playground/stop/{key}").status_code == 204
            events = first + read_events(lines)
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"token"}
    done = events[-1][1]
    assert "Stopped." in done and "max tokens reached" not in done
    streamed = html.unescape("".join(data for name, data in events if name == "token"))
    assert streamed and streamed[:len(script.chat_text)] == script.chat_text[:len(streamed)]
    kept = re.search(r'name="assistant_turn" value="([^"]*)"', done).group(1)  # what the conversation keeps
    assert html.unescape(kept) == streamed
    assert wait_for(lambda: pool_full(server.engine)) and server.serving.admission.in_flight == 0
    assert accounting.ended_early["stopped"] == stopped + 1


def test_a_browser_that_goes_away_has_its_answer_aborted(server):
    accounting = server.serving.accounting
    closed = accounting.ended_early["client_closed_request"]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        key = start_chat(http)
        with http.stream("GET", f"/playground/stream/{key}") as stream:
            assert len(read_events(stream.iter_lines(), count=3)) == 3
        # the connection is closed here, as a closed tab or a removed element closes its EventSource
    assert wait_for(lambda: accounting.ended_early["client_closed_request"] == closed + 1)
    assert wait_for(lambda: pool_full(server.engine)) and server.serving.admission.in_flight == 0


def test_shutdown_ends_a_page_stream_with_a_message(page_model):
    server = LiveServer(page_engine(page_model[1]), ServerSettings(shutdown_grace=0.2)).start()
    events: list[tuple[str, str]] = []
    streaming = threading.Event()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        key = start_chat(http)

        def read() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as reader, \
                    reader.stream("GET", f"/playground/stream/{key}") as stream:
                lines = stream.iter_lines()
                events.extend(read_events(lines, count=1))
                streaming.set()
                events.extend(read_events(lines))

        thread = threading.Thread(target=read)
        thread.start()
        assert streaming.wait(timeout=30)
        server.stop()
        thread.join(timeout=30)
    assert events[-1][0] == "done" and "the server is shutting down" in events[-1][1]
    assert pool_full(server.engine)
