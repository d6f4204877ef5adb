"""`codellama serve` as typed: its arguments, LMDeploy's spellings of them, and the errors that
must come back at once, in one line, before any model loads (the running server is tested in
test_shutdown.py)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from inference.cli import build_parser, main
from web.commands.serve import where

ROOT = Path(__file__).resolve().parents[2]


def codellama(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real command, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "inference.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


def one_line_error(done: subprocess.CompletedProcess, command: str, message: str) -> None:
    assert done.returncode == 2, done
    assert done.stderr.startswith(f"codellama {command}: ") and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr, done.stderr


@pytest.mark.parametrize("argv,expected", [
    (["./ws", "0.0.0.0", "8000"], ("./ws", "0.0.0.0", 8000)),
    (["127.0.0.1", "24200"], (None, "127.0.0.1", 24200)),  # host and port without a workspace
    (["./ws", "8000"], ("./ws", "127.0.0.1", 8000)),
    (["./ws", "--server-name", "::1", "--server_port", "9000"], ("./ws", "::1", 9000)),
    ([], (None, "127.0.0.1", 23333)),
])
def test_workspace_host_and_port_positionally_or_as_flags(argv, expected):
    from inference.commands.lmdeploy import normalize_flags

    parser = build_parser()
    serve = next(a for a in parser._actions if hasattr(a, "choices") and a.choices and "serve" in a.choices)
    args = parser.parse_args(["serve", *normalize_flags(argv, serve.choices["serve"])])
    assert where(args) == expected


def test_instance_num_and_max_num_seqs_are_one_setting():
    from inference.commands.lmdeploy import normalize_flags

    parser = build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and a.choices and "serve" in a.choices).choices
    for flag in ("--instance-num", "--instance_num", "--max-num-seqs", "--max-batch-size"):
        args = parser.parse_args(["serve", *normalize_flags([flag, "64"], sub["serve"])])
        assert args.max_num_seqs == 64
    assert parser.parse_args(["serve"]).max_num_seqs == 32 and parser.parse_args(["serve"]).tp is None
    text = codellama("serve", "--help").stdout
    assert "--instance-num N, --max-num-seqs N" in text and "default 256" not in text.split("--max-queue")[0]


def test_a_port_in_use_is_one_line_before_the_model_loads(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # LMDeploy's spelling, host and port with no workspace, and a workspace that does not exist:
        # the port is what is reported, so nothing was loaded first
        for argv in (["serve", "api_server", str(tmp_path / "none"), "127.0.0.1", str(port), "--instance_num", "8",
                      "--tp", "1"],
                     ["serve", "127.0.0.1", str(port)]):
            one_line_error(codellama(*argv), "serve", f"port {port} on 127.0.0.1 is already in use")


@pytest.mark.parametrize("argv,message", [
    (["serve", "./ws", "127.0.0.1", "8000", "--port", "9000"], "port given twice"),
    (["serve", "api_server", "./ws", "--quant_policy", "4"], "--quant_policy is LMDeploy's and has no counterpart"),
    (["chat", "turbomind", "./ws", "--backend", "turbomind"], "--backend is LMDeploy's"),
])
def test_contradictions_and_lmdeploy_only_flags_are_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"codellama {argv[0]}: ") and err.count("\n") == 1 and message in err, err


def test_an_impossible_tensor_parallel_split_is_one_line(capsys, random_model):
    assert main(["serve", str(random_model), "--tp", "3", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("codellama serve: error: ") and err.count("\n") == 1, err
    assert "is not divisible by the tensor-parallel size 3" in err


def test_model_identity_options_read_as_chat_reads_them():
    args = build_parser().parse_args(["serve", "--model-name", "CodeLlama-7b-hf", "--capabilities",
                                      "completion,infilling", "python"])
    assert args.model_name == "CodeLlama-7b-hf" and list(args.capabilities) == ["completion", "infilling", "python"]


def test_serve_gradio_starts_the_server_and_points_at_its_playground(random_model):
    proc = subprocess.Popen([sys.executable, "-m", "inference.cli", "serve", "gradio", str(random_model),
                             "--server_name", "127.0.0.1", "--server_port", "0", "--num-kv-blocks", "64",
                             "--max-model-len", "256"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        for line in proc.stdout:
            if "playground" in line and "gradio" in line:
                break
        url = re.search(r"is at (http://127\.0\.0\.1:\d+)/", line).group(1)
        elsewhere = codellama("serve", "gradio", url.removeprefix("http://"))  # a running server: nothing to start
        assert elsewhere.returncode == 0 and f"{url}/" in elsewhere.stdout
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        assert proc.wait(timeout=60) in (0, 130)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "shutting down: no requests in flight" in rest and "codellama serve: stopped" in rest, rest
