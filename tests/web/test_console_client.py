"""`codellama client` in a real pseudo-terminal against a live server."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import subprocess

import pexpect
import pytest

from inference import LLMEngine
from web.settings import ServerSettings

from tests.models import tiny_llama

from .conftest import PYTHON_PROMPT, LiveServer, pool_full, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _spawn(url: str, *flags: str) -> pexpect.spawn:
    # started with SIGINT ignored, as a script's background job is: Ctrl-C must stop answers all the same
    child = pexpect.spawn(sys.executable, ["-m", "inference.cli", "client", url, *flags], cwd=str(ROOT),
                          env={**os.environ, "PYTHONPATH": str(ROOT), "TERM": "dumb"}, encoding="utf-8", timeout=30,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    child.expect_exact("'exit' or Ctrl-D quits, Ctrl-C stops an answer.")
    return child


def _send_input(child: pexpect.spawn, *lines: str) -> None:
    for line in (*lines, "!!"):
        child.sendline(line)


def _tty(text: str) -> str:
    return text.replace("\n", "\r\n")


def _next_prompt(child: pexpect.spawn) -> None:
    """Wait for the input prompt (keys typed before it could reach the answer being printed)."""
    child.expect_exact(">>> ")


@pytest.fixture(scope="module")
def script(script_model):
    return script_model[0]


def test_completion_with_a_multi_line_input(scripted_server, script):
    child = _spawn(scripted_server.url, "--cap", "completion", "--temperature", "0", "--max-tokens", "30")
    _send_input(child, "x = 1", "", script.completion_prompt)  # a blank line inside stays part of the input
    child.expect_exact(_tty(script.completion_text))
    _next_prompt(child)
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_chat_keeps_history_until_reset_then_exit(scripted_server, script):
    child = _spawn(scripted_server.url, "--temperature", "0", "--max-tokens", "30")  # chat: the model can
    _send_input(child, "how do I sort a list?")
    child.expect_exact(script.chat_text)
    _next_prompt(child)
    _send_input(child, "and in place?")
    child.expect_exact(script.chat_text)
    _next_prompt(child)
    child.sendline("reset")
    child.expect_exact("[conversation reset]")
    _next_prompt(child)
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_infilling_shows_the_middle_and_the_filled_code(scripted_server, script):
    child = _spawn(scripted_server.url, "--cap", "infilling", "--temperature", "0", "--max-tokens", "30")
    _send_input(child, "def f(x):", "   <FILL>", "    return y")
    child.expect_exact("--- filled ---")
    child.expect_exact(_tty(f"def f(x):\n   {script.infill_text}\n    return y"))
    _send_input(child, "no marker here")
    child.expect_exact("error: the code has no <FILL> marker")
    _next_prompt(child)
    child.sendline("exit")
    child.expect(pexpect.EOF)


@pytest.fixture(scope="module")
def long_answer_server(tmp_path_factory):
    """A random model with a long context: its 8,000-token answer is still streaming when the
    test's Ctrl-C comes, however slowly a loaded machine runs the test."""
    model = tiny_llama(tmp_path_factory.mktemp("long") / "tiny-random", max_pos=8192)[0]
    server = LiveServer(LLMEngine(model, num_kv_blocks=600, max_model_len=8192, max_num_seqs=4)).start()
    yield server
    server.stop()


def test_ctrl_c_stops_the_answer_and_the_server_aborts_it(long_answer_server):
    engine = long_answer_server.engine
    child = _spawn(long_answer_server.url, "--max-tokens", "8000", "--ignore-eos")  # completion: it can't chat
    _send_input(child, "import os")
    assert wait_for(lambda: engine.requests)
    child.sendintr()
    child.expect_exact("[stopped]")
    assert wait_for(lambda: pool_full(engine))
    _next_prompt(child)
    _send_input(child, "import re")  # still usable afterwards
    assert wait_for(lambda: engine.requests)
    child.sendintr()
    child.expect_exact("[stopped]")
    _next_prompt(child)
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and wait_for(lambda: pool_full(engine))


def test_an_unreachable_server_is_a_clear_error():
    child = pexpect.spawn(sys.executable, ["-m", "inference.cli", "client", "http://127.0.0.1:9"], cwd=str(ROOT),
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, encoding="utf-8", timeout=30)
    child.expect_exact("cannot reach a server at http://127.0.0.1:9")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2


@pytest.fixture(scope="module")
def python_server(python_model):
    engine = LLMEngine(python_model, num_kv_blocks=64, max_model_len=1024, capabilities=["completion", "python"])
    server = LiveServer(engine, ServerSettings()).start()
    yield server
    server.stop()


def test_python_stops_at_a_new_top_level_statement_and_the_server_aborts_the_rest(python_server):
    child = _spawn(python_server.url.removeprefix("http://"), "--cap", "python", "--temperature", "0")  # no scheme
    _send_input(child, *PYTHON_PROMPT.split("\n"))
    child.expect_exact(" * f\r\n>>> ")  # the answer ends before "\ndef main():"
    assert "main" not in child.before
    assert wait_for(lambda: pool_full(python_server.engine))
    child.sendline("exit")
    child.expect(pexpect.EOF)


def test_piped_input_prints_answers_only(python_server):
    done = subprocess.run([sys.executable, "-m", "inference.cli", "client", python_server.url, "--cap", "completion",
                           "--temperature", "0"], input=PYTHON_PROMPT + "\n!!\n", capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == " * f\ndef main():\n"  # no banner, no prompts, the whole completion
