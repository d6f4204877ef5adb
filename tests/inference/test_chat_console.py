"""`codellama chat` driven like a person would: in a real pseudo-terminal (pexpect) for each
ability, and with piped stdin. The model is a scripted one converted into a workspace, so every
answer is known from construction."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from inference.cli import main
from inference.prompts import DEFAULT_SYSTEM
from inference.tokenizer import Tokenizer
from tests.inference.meta_reference import MetaTokenizer, chat_completion_tokens
from tests.models import OWN_TOKENIZER, scripted_llama

ROOT = Path(__file__).resolve().parents[2]
CHAINS = [  # the answer the scripted model gives after each prompt's last token
    ["▁a", "▁+", "▁b", "</s>"],  # completion of "... total = a": " + b"
    ["▁x", "▁*", "▁f", "<0x0A>", "def", "▁main", "</s>"],  # after "return x": " * f\ndef main"
    ["▁g", "(", "x", ")", "▁<EOT>"],  # infilling, suffix first, prefix "y = g": "(x)"
    ["]", "▁print", "▁True", "</s>"],  # chat: "print True"
    ["▁None", "▁self", "▁value", "▁self"],  # after "x = None": " self value" forever
    ["</s>", "▁self"],  # past the end of sequence (--ignore-eos): into the endless loop
]
CODE = ["def add(a, b):", "", "    total = a"]  # a blank line inside an input
PYTHON = ["def double(x):", "", "    return x"]
ENDLESS = "x = None"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    tok = Tokenizer(OWN_TOKENIZER)
    successor: dict[int, int] = {}
    for pieces in CHAINS:
        ids = [tok.sp.piece_to_id(p) for p in pieces]
        assert [tok.id_to_piece(i) for i in ids] == pieces
        for a, b in zip(ids, ids[1:]):
            assert successor.setdefault(a, b) == b, f"{pieces}: conflicting successor"
    tmp = tmp_path_factory.mktemp("console")
    hf_dir = scripted_llama(tmp / "hf", successor)
    config = json.loads((hf_dir / "config.json").read_text())
    # positions do not matter to a scripted model (its attention output is zeroed): a longer
    # window lets an endless answer stream long enough to be interrupted
    (hf_dir / "config.json").write_text(json.dumps(config | {"max_position_embeddings": 8192}))
    ws = tmp / "ws"
    assert main(["convert", str(hf_dir), "--dst", str(ws), "--no-progress", "--model-name", "CodeLlama-7b-hf",
                 "--capabilities", "completion,infilling,chat,python"]) == 0
    return ws


def spawn(workspace: Path, *flags: str) -> pexpect.spawn:
    args = ["-m", "inference.cli", "chat", str(workspace), "--temperature", "0", "--num-kv-blocks", "520",
            "--max-tokens", "8000", *flags]
    # started with SIGINT ignored, as a script's background job is: Ctrl-C must stop answers all the same
    child = pexpect.spawn(sys.executable, args, cwd=str(ROOT), encoding="utf-8", timeout=60,
                          env={**os.environ, "TERM": "dumb"}, dimensions=(40, 200),
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    child.expect("End an input with a line !!")
    child.expect_exact(">>> ")
    return child


def send_input(child: pexpect.spawn, lines: list[str]) -> None:
    for line in lines:
        child.sendline(line)
    child.sendline("!!")


def answer(child: pexpect.spawn) -> str:
    """The text printed before the next input prompt (the echoed input excluded)."""
    child.expect_exact("\r\n>>> ")
    return child.before.split("!!\r\n", 1)[-1].replace("\r\n", "\n")


def interrupt_endless_answer(child: pexpect.spawn, lines: list[str]) -> None:
    send_input(child, lines)
    child.expect_exact(" self value self value")  # still streaming: 8000 tokens take seconds
    child.sendintr()
    child.expect_exact("[stopped]")
    child.expect_exact(">>> ")


def quit_with(child: pexpect.spawn, how: str) -> None:
    if how == "exit":
        child.sendline("exit")
    else:
        child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_completion_console(workspace):
    child = spawn(workspace, "--cap", "completion")
    send_input(child, CODE)
    assert answer(child) == " + b"
    send_input(child, PYTHON)  # no stop at a new top-level statement unless asked
    assert answer(child) == " * f\ndef main"
    interrupt_endless_answer(child, [ENDLESS])
    for _ in range(5):  # Ctrl-C while typing discards the input, however the keys interleave
        child.sendline("half typed")
        child.sendintr()
        child.expect_exact(">>> ")
    send_input(child, CODE)  # the interrupted request left nothing behind
    assert answer(child) == " + b"
    quit_with(child, "exit")


def test_python_console_stops_at_a_new_top_level_statement(workspace):
    child = spawn(workspace, "--cap", "python")
    send_input(child, PYTHON)
    assert answer(child) == " * f"
    interrupt_endless_answer(child, [ENDLESS])
    child.sendline("reset")
    child.expect_exact("(history cleared)\r\n>>> ")
    quit_with(child, "eof")


def test_infilling_console_prints_the_middle_and_the_filled_code(workspace):
    child = spawn(workspace, "--cap", "infilling", "--suffix-first")
    send_input(child, ["y = g<FILL>", "", "print(y)"])
    assert answer(child) == "(x)\n--- filled code ---\ny = g(x)\n\nprint(y)"
    send_input(child, ["no marker here"])
    child.expect_exact("error: the code has no <FILL> marker to fill")
    interrupt_endless_answer(child, [ENDLESS + "<FILL_ME>", "print(x)"])
    quit_with(child, "exit")


def test_chat_console_keeps_history_until_reset(workspace):
    """The window fits two turns of history and no more, so the third turn fails until `reset`."""
    meta = MetaTokenizer(OWN_TOKENIZER)
    dialog = [{"role": "system", "content": DEFAULT_SYSTEM}]
    for question in ("hi", "more"):
        dialog += [{"role": "user", "content": question}, {"role": "assistant", "content": "print True"}]
    window = len(chat_completion_tokens(meta, dialog[:-1])) + 8
    child = spawn(workspace, "--cap", "chat", "--max-tokens", "8", "--max-model-len", str(window))
    for question in ("hi", "more"):
        send_input(child, [question])
        assert answer(child) == "print True"
    send_input(child, ["once more"])
    child.expect_exact("error: the prompt has")
    child.expect_exact("the context window")
    child.sendline("reset")
    child.expect_exact("(history cleared)\r\n>>> ")
    send_input(child, ["hi"])
    assert answer(child) == "print True"
    quit_with(child, "eof")


def test_chat_console_ctrl_c_stops_an_answer_without_leaving(workspace):
    child = spawn(workspace, "--cap", "chat", "--ignore-eos")
    send_input(child, ["hi", "", "there"])
    child.expect_exact("print True self value self value")
    child.sendintr()
    child.expect_exact("[stopped]")
    child.expect_exact(">>> ")
    send_input(child, ["again"])
    child.expect_exact("print True self value self value")
    child.sendintr()
    child.expect_exact("[stopped]")
    quit_with(child, "exit")


def test_piped_stdin(workspace):
    """Inputs end with !! or with the input itself; no prompts are printed."""
    text = "\n".join(CODE + ["!!"] + PYTHON) + "\n"
    done = subprocess.run([sys.executable, "-m", "inference.cli", "chat", str(workspace), "--cap", "python",
                           "--temperature", "0", "--num-kv-blocks", "64"], input=text, capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == " + b\n * f\n"


@pytest.mark.parametrize("flags,error", [
    (["--cap", "chat", "--model-name", "CodeLlama-7b-Python-hf"], "CodeLlama-7b-Python-hf cannot do chat"),
    (["--cap", "infilling", "--model-name", "CodeLlama-34b-hf"], "CodeLlama-34b-hf cannot do infilling"),
    (["--cap", "python", "--capabilities", "completion"], "cannot do python"),
])
def test_abilities_the_model_lacks_are_one_line_errors(workspace, capsys, flags, error):
    assert main(["chat", str(workspace), "--num-kv-blocks", "16", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("codellama chat: error: ") and error in err and err.count("\n") == 1
