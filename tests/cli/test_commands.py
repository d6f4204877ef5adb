"""The `codellama` command as its users type it, run for real: LMDeploy's spellings of its
commands, usage and help, arguments answered before torch is imported, and tensor-parallel
workspaces used by every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.models import tiny_llama

ROOT = Path(__file__).resolve().parents[2]


def codellama(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inference.cli", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def one_line_error(done: subprocess.CompletedProcess, command: str, message: str) -> None:
    assert done.returncode == 2, done
    assert done.stderr.startswith(f"codellama {command}: ") and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_arguments_are_parsed_without_torch_or_the_web_stack():
    probe = ("import sys; from inference.cli import main\n"
             "try: main(['convert', '--bogus'])\n"
             "except SystemExit: pass\n"
             "print(sorted(m for m in ('torch', 'litestar', 'uvicorn', 'httpx') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done
    assert "codellama convert: error: " in done.stderr


def test_usage_lines_say_what_to_type_and_each_benchmark_has_its_own_help():
    generate = codellama("generate", "--help").stdout
    assert "[MODEL] PROMPT\n" in generate and "[[MODEL]" not in generate
    convert = codellama("convert", "--help").stdout
    assert " HF_DIR\n" in convert and "[[" not in convert
    latency = codellama("bench", "latency", "--help").stdout
    assert "--enforce-eager" in latency and "(default: 7b)" in latency and "--concurrency" not in latency
    serve = codellama("bench", "serve", "--help").stdout
    assert "(default: 256)" in serve and "--url URL" in serve and "needs no GPU" in serve
    assert "--baseline" not in serve


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny Hugging Face checkpoint and the workspace `convert codellama ... --tp 2` makes of it."""
    tmp = tmp_path_factory.mktemp("cli")
    hf_dir = tiny_llama(tmp / "hf", hidden=64, heads=4, kv_heads=2, layers=2)[0]
    done = codellama("convert", "codellama", str(hf_dir), "--dst", str(tmp / "ws"), "--tp", "2", "--no_progress")
    assert done.returncode == 0 and "tp 2" in done.stdout, done
    return hf_dir, tmp / "ws"


GREEDY = ("--max-tokens", "8", "--temperature", "0", "--ignore-eos", "--max-model-len", "64")


def test_a_tp2_workspace_runs_with_its_own_split_in_generate_and_chat(models):
    hf_dir, ws = models
    single = codellama("generate", str(hf_dir), "def f(x):", *GREEDY)
    split = codellama("generate", str(ws), "def f(x):", *GREEDY)  # --tp 2 from codellama.json
    assert single.returncode == 0 and split.returncode == 0, split
    assert split.stdout == single.stdout and split.stdout.startswith("def f(x):")
    # the guide's spelling of the console, its underscore flags, piped input: the same completion
    chat = codellama("chat", "turbomind", str(ws), "--cap", "completion", "--sys_instruct", "", *GREEDY,
                     stdin="def f(x):\n")
    assert chat.returncode == 0, chat
    assert chat.stdout == single.stdout.removeprefix("def f(x):")


def test_a_contradicting_tp_is_one_line_before_any_process_starts(models):
    hf_dir, ws = models
    one_line_error(codellama("generate", str(ws), "x", "--tp", "1"), "generate", "is split for --tp 2, not 1")
    one_line_error(codellama("serve", "api_server", str(ws), "127.0.0.1", "0", "--tp", "4"), "serve",
                   "is split for --tp 2, not 4: leave --tp out")
