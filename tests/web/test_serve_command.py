"""`codellama serve` argument handling (the running server is tested in test_shutdown.py)."""

from __future__ import annotations

import pytest

from inference.cli import build_parser, main


def test_host_and_port_positionally_or_as_flags(capsys):
    args = build_parser().parse_args(["serve", "./ws", "0.0.0.0", "8000", "--instance-num", "64",
                                      "--api-keys", "a", "b"])
    assert (args.workspace, args.host_arg, args.port_arg) == ("./ws", "0.0.0.0", 8000)
    assert args.max_num_seqs == 64 and args.api_keys == ["a", "b"]
    defaults = build_parser().parse_args(["serve"])
    assert defaults.max_num_seqs == 32 and defaults.tp == 1 and defaults.max_queue == 256


@pytest.mark.parametrize("argv,message", [
    (["serve", "./ws", "127.0.0.1", "8000", "--port", "9000"], "port given twice"),
    (["serve", "--tp", "3"], "is not divisible by the tensor-parallel size 3"),
])
def test_contradictions_and_impossible_options_are_clear_errors(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_model_identity_options_read_as_chat_reads_them():
    args = build_parser().parse_args(["serve", "--model-name", "CodeLlama-7b-hf", "--capabilities",
                                      "completion,infilling", "python"])
    assert args.model_name == "CodeLlama-7b-hf" and list(args.capabilities) == ["completion", "infilling", "python"]
