"""Live servers for the web tests: the real app under a real uvicorn on 127.0.0.1 (a free port),
in a background thread, over a real engine. Each test module builds the servers it needs."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from inference import LLMEngine
from inference.engine_front import EngineFront
from inference.prompts import chat_prompt
from inference.tokenizer import Tokenizer
from tests.models import OWN_TOKENIZER, chain, scripted_llama, tiny_llama
from tests.web import page_script
from web.app import create_app
from web.server import make_server
from web.settings import ServerSettings


class LiveServer:
    def __init__(self, engine: LLMEngine | EngineFront, settings: ServerSettings | None = None,
                 sock: socket.socket | None = None):
        """`sock`: a bound socket to serve on (default: a free port of 127.0.0.1)."""
        self.engine = engine
        self.app = create_app(engine, settings or ServerSettings())
        self.server = make_server(self.app, "127.0.0.1", 0, log_level="warning")
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock] if sock else None},
                                       name="uvicorn", daemon=True)
        self.url = ""

    @property
    def serving(self):
        return self.app.state.serving

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        self.url = self.server.url
        return self

    def stop(self) -> None:
        """What SIGINT / SIGTERM do, without a signal: uvicorn's graceful shutdown."""
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the server did not stop"


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def pool_full(engine: LLMEngine | EngineFront) -> bool:
    """Every KV block free and no request left, wherever the engine runs."""
    gauges = engine.gauges()
    return gauges.free_blocks == engine.info.num_blocks and gauges.unfinished_requests == 0


@dataclass(frozen=True)
class Script:
    """What the scripted model answers, derived from its construction: greedy decoding follows
    the chains below, so the expected texts come from the tokenizer, not from the server."""

    tok: Tokenizer
    completion_prompt: str  # ends in a token whose chain is completion_ids then EOS
    completion_ids: list[int]
    infill_ids: list[int]  # after ▁<MID>, then ▁<EOT>
    chat_ids: list[int]  # after the last token of any chat prompt, then EOS

    @property
    def completion_text(self) -> str:
        prompt_ids = self.tok.encode(self.completion_prompt, bos=True)
        return self.tok.decode(prompt_ids + self.completion_ids)[len(self.tok.decode(prompt_ids)):]

    @property
    def infill_text(self) -> str:
        return self.tok.decode_infilling(self.infill_ids)

    @property
    def chat_text(self) -> str:
        return self.tok.decode(self.chat_ids)


def make_script() -> tuple[Script, dict[int, int]]:
    tok = Tokenizer(OWN_TOKENIZER)
    prompt = "def add(a, b):"
    script = Script(tok, prompt, tok.encode("\n    return a + b", bos=False), tok.encode_infilling(" return x"),
                    tok.encode("Use sorted(xs).", bos=False))
    return script, chains_of(script, tok.eos_id)


def chains_of(script: Script, chat_end: int) -> dict[int, int]:
    """The successor map of a script's three chains; the chat answer goes on to `chat_end`."""
    tok = script.tok
    chat_last = chat_prompt(tok, [{"role": "user", "content": "hi"}]).token_ids[-1]
    successor: dict[int, int] = {}
    for ids in ([tok.encode(script.completion_prompt)[-1], *script.completion_ids, tok.eos_id],
                [tok.infill_id("middle"), *script.infill_ids, tok.infill_id("eot")],
                [chat_last, *script.chat_ids, chat_end]):
        for key, value in chain(ids).items():
            assert successor.setdefault(key, value) == value, "the scripted chains must not share a token"
    return successor


def make_page_script() -> tuple[Script, dict[int, int]]:
    """The pages' script (tests/web/page_script.py): after its finite part the chat answer
    cycles without end, so that Stop always lands mid-answer (max_tokens asks for the finite part)."""
    tok = Tokenizer(OWN_TOKENIZER)
    chat_last = chat_prompt(tok, [{"role": "user", "content": "hi"}]).token_ids[-1]
    used = {tok.bos_id, tok.eos_id, chat_last, tok.encode(page_script.COMPLETION_PROMPT)[-1],
            *(tok.infill_id(k) for k in ("prefix", "suffix", "middle", "eot"))}
    spell = partial(page_script.distinct_pieces, tok, used=used)
    script = Script(tok, page_script.COMPLETION_PROMPT, spell(page_script.COMPLETION_TEXT),
                    spell(page_script.INFILL_TEXT), spell(page_script.CHAT_TEXT))
    cycle = spell(page_script.CYCLE_TEXT)
    return script, {**chains_of(script, cycle[0]), **chain(cycle), cycle[-1]: cycle[0]}


@pytest.fixture(scope="session")
def script_model(tmp_path_factory) -> tuple[Script, Path]:
    script, successor = make_script()
    return script, scripted_llama(tmp_path_factory.mktemp("scripted") / "scripted-codellama", successor)


@pytest.fixture(scope="session")
def page_model(tmp_path_factory) -> tuple[Script, Path]:
    script, successor = make_page_script()
    return script, scripted_llama(tmp_path_factory.mktemp("page-scripted") / "page-codellama", successor)


def page_engine(model_dir: Path, **kwargs) -> LLMEngine:
    """An engine over the pages' scripted model, with all its abilities declared."""
    return LLMEngine(model_dir, num_kv_blocks=kwargs.pop("num_kv_blocks", 128), max_model_len=1024,
                     capabilities=kwargs.pop("capabilities", ["completion", "infilling", "chat"]), **kwargs)


PYTHON_PROMPT = "def double(x):\n    return x"  # python_model completes it with " * f\ndef main():"


@pytest.fixture(scope="session")
def python_model(tmp_path_factory) -> Path:
    """A scripted model whose completion of PYTHON_PROMPT runs on into a new top-level `def`."""
    tok = Tokenizer(OWN_TOKENIZER)
    ids = [tok.sp.piece_to_id(p) for p in ["▁x", "▁*", "▁f", "<0x0A>", "def", "▁main", "(", ")", ":", "</s>"]]
    assert tok.encode(PYTHON_PROMPT, bos=True)[-1] == ids[0]
    return scripted_llama(tmp_path_factory.mktemp("python") / "python-codellama", chain(ids))


@pytest.fixture(scope="session")
def random_model(tmp_path_factory) -> Path:
    """A tiny random Llama without metadata: its abilities are unknown, so it can only complete."""
    return tiny_llama(tmp_path_factory.mktemp("random") / "tiny-random", max_pos=1024)[0]


@pytest.fixture(scope="module")
def scripted_server(script_model):
    engine = LLMEngine(script_model[1], num_kv_blocks=128, max_model_len=512,
                       capabilities=["completion", "infilling", "chat"])
    server = LiveServer(engine).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def random_server(random_model):
    engine = LLMEngine(random_model, num_kv_blocks=256, max_model_len=1024, max_num_seqs=16)
    server = LiveServer(engine, ServerSettings(max_queue=64, max_body_bytes=1 << 20)).start()
    yield server
    server.stop()
