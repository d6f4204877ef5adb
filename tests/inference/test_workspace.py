"""`codellama convert`: a workspace loads into exactly the parameters and logits that the
Hugging Face directory it came from gives, for one rank and for a two-rank split."""

import json
import os
from contextlib import ExitStack

import pytest
import torch
import torch.multiprocessing as mp

from inference.cli import main
from inference.config import ModelConfig
from inference.engine import LLMEngine
from inference.model import LlamaModel, TensorParallel
from inference.sampling_params import SamplingParams
from inference.weights import assemble_hf, fused_tensors, load_weights, rank_dir, write_fused_rank
from tests.models import OWN_TOKENIZER, tiny_llama

PROMPT = [1, 461, 293, 4023, 4028, 299, 18, 265, 670, 817, 484, 4048]


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    """A tiny GQA Llama saved by transformers, and transformers' logits for PROMPT."""
    path, hf = tiny_llama(tmp_path_factory.mktemp("hf"), hidden=64, heads=4, kv_heads=2, intermediate=96)
    with torch.no_grad():
        logits = hf(torch.tensor([PROMPT])).logits[0]
    return path, logits


def convert(*args: str) -> int:
    return main(["convert", *args, "--no-progress"])


def loaded(model_dir, rank: int, size: int) -> dict[str, torch.Tensor]:
    model = LlamaModel(ModelConfig.from_dir(model_dir), torch.float32, "cpu", TensorParallel(rank, size))
    load_weights(model, model_dir)
    return dict(model.named_parameters(remove_duplicate=False))


def prefill_logits(engine: LLMEngine, prompt: list[int]) -> torch.Tensor:
    engine.add(engine.make_request("p", prompt, SamplingParams(max_tokens=1)))
    logits, _ = engine.runner.forward(engine.scheduler.schedule())
    engine.abort("p")
    return logits[0]


def test_tp1_workspace_gives_identical_parameters_and_logits(hf_model, tmp_path):
    hf_dir, hf_logits = hf_model
    ws = tmp_path / "ws"
    assert convert("codellama", str(hf_dir), "--dst", str(ws), "--model-name", "CodeLlama-7b-hf") == 0
    assert sorted(p.name for p in ws.iterdir()) == ["codellama.json", "config.json", "rank-0", "tokenizer.model"]
    assert [p.name for p in (ws / "rank-0").iterdir()] == ["model.safetensors"]
    from_ws, from_hf = loaded(ws, 0, 1), loaded(hf_dir, 0, 1)
    assert from_ws.keys() == from_hf.keys()
    assert all(torch.equal(from_ws[k], from_hf[k]) for k in from_hf)
    engines = [LLMEngine(d, num_kv_blocks=16) for d in (ws, hf_dir)]
    assert torch.equal(prefill_logits(engines[0], PROMPT), prefill_logits(engines[1], PROMPT))
    assert (prefill_logits(engines[0], PROMPT) - hf_logits[-1]).abs().max() < 1e-4
    assert engines[0].config.model_config == engines[1].config.model_config  # the normalised config reads back the same


def test_tp2_workspace_holds_each_ranks_shard(hf_model, tmp_path):
    hf_dir, _ = hf_model
    ws = tmp_path / "ws"
    assert convert(str(hf_dir), "--dst", str(ws), "--tp", "2", "--model-name", "CodeLlama-7b-hf") == 0
    assert json.loads((ws / "codellama.json").read_text())["tp"] == 2
    for rank in range(2):
        from_ws, from_hf = loaded(ws, rank, 2), loaded(hf_dir, rank, 2)
        assert from_ws["layers.0.qkv_proj"].shape[0] == (2 + 2 * 1) * 16  # half the heads: 2 q, 1 k, 1 v
        assert all(torch.equal(from_ws[k], from_hf[k]) for k in from_hf), f"rank {rank}"
    with pytest.raises(ValueError, match="split for 2 tensor-parallel rank.*--tp 1"):
        LLMEngine(ws, num_kv_blocks=16)


def _tp_worker(rank: int, ws: str, rendezvous: str, out: str) -> None:
    """One rank of a real two-process run over gloo: the model's inline all-reduces join the
    shards, so each rank computes the full logits."""
    import torch.distributed as dist

    from inference.config import EngineConfig
    from inference.runner import ModelRunner
    from inference.scheduler import Scheduler
    from inference.sequence import Sequence

    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    try:
        config = EngineConfig(ws, num_kv_blocks=8, block_size=16, enable_prefix_caching=False, dtype="float32",
                              device="cpu")
        runner = ModelRunner(config, 4096, TensorParallel(rank, 2, dist.group.WORLD))
        scheduler = Scheduler(config, 8)
        scheduler.add(Sequence(0, "p", 0, list(PROMPT), len(PROMPT), SamplingParams(max_tokens=1), seed=0))
        logits, _ = runner.forward(scheduler.schedule())
        torch.save(logits[0], f"{out}.rank{rank}")
    finally:
        dist.destroy_process_group()


def test_tp2_workspace_runs_in_two_gloo_processes(hf_model, tmp_path):
    hf_dir, hf_logits = hf_model
    ws = tmp_path / "ws"
    assert convert(str(hf_dir), "--dst", str(ws), "--tp", "2") == 0
    mp.spawn(_tp_worker, args=(str(ws), str(tmp_path / "rendezvous"), str(tmp_path / "logits")), nprocs=2)
    for rank in range(2):
        logits = torch.load(tmp_path / f"logits.rank{rank}")
        assert (logits - hf_logits[-1]).abs().max() < 1e-4


def test_tied_embeddings_and_multi_file_ranks(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=4096, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True, rope_theta=1e6)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "tokenizer.model").write_bytes(OWN_TOKENIZER.read_bytes())
    ws = tmp_path / "ws"
    assert convert(str(tmp_path / "hf"), "--dst", str(ws)) == 0
    # split the rank into files of ~100 kB: the loader reads them all
    shapes = LlamaModel(ModelConfig.from_dir(ws), torch.float32, "meta")
    params = dict(shapes.named_parameters(remove_duplicate=False))
    tensors = assemble_hf(shapes, tmp_path / "hf", lambda n: torch.empty(params[n].shape))
    (ws / "rank-0" / "model.safetensors").unlink()
    (ws / "rank-0").rmdir()
    files = write_fused_rank(tensors, rank_dir(ws, 0), TensorParallel(), max_file_bytes=100_000)
    assert len(files) > 3
    with ExitStack() as stack:
        assert "lm_head" not in fused_tensors(shapes, ws, stack)  # stored once, as embed_tokens
    from_ws, from_hf = loaded(ws, 0, 1), loaded(tmp_path / "hf", 0, 1)
    assert all(torch.equal(from_ws[k], from_hf[k]) for k in from_hf)


def test_metadata_progress_and_overwrite_rules(hf_model, tmp_path, capsys):
    hf_dir, _ = hf_model
    ws = tmp_path / "ws"
    assert main(["convert", str(hf_dir), "--dst", str(ws), "--model-name", "CodeLlama-13b-Instruct-hf",
                 "--dtype", "bfloat16"]) == 0
    err = capsys.readouterr().err
    assert "converting" in err and "100%" in err  # the progress bar
    meta = json.loads((ws / "codellama.json").read_text())
    assert meta | {"source": None} == {
        "model_name": "CodeLlama-13b-Instruct-hf", "variant": "instruct", "size": "13b",
        "capabilities": ["completion", "infilling", "chat"], "source": None, "tp": 1, "dtype": "bfloat16",
        "format": "codellama-serve-workspace/1"}
    assert meta["source"] == str(hf_dir.resolve())
    assert (ws / "tokenizer.model").read_bytes() == (hf_dir / "tokenizer.model").read_bytes()
    assert json.loads((ws / "config.json").read_text())["torch_dtype"] == "bfloat16"

    assert convert(str(hf_dir), "--dst", str(ws)) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert convert(str(hf_dir), "--dst", str(ws), "--force") == 0  # replaces a workspace
    assert json.loads((ws / "codellama.json").read_text())["variant"] == "unknown"
    assert "only completion is enabled" in capsys.readouterr().err

    not_a_workspace = tmp_path / "notes"
    not_a_workspace.mkdir()
    (not_a_workspace / "keep.txt").write_text("mine")
    assert convert(str(hf_dir), "--dst", str(not_a_workspace), "--force") == 2
    assert "not a workspace" in capsys.readouterr().err and (not_a_workspace / "keep.txt").exists()

    assert convert(str(ws), "--dst", str(tmp_path / "again")) == 2
    assert "already a workspace" in capsys.readouterr().err
    assert convert(str(hf_dir), "--dst", str(tmp_path / "wrong"), "--model-name", "CodeLlama-7b-hf", "--tp", "3") == 2
    assert "not divisible by the tensor-parallel size 3" in capsys.readouterr().err
    assert not any(p.name.startswith((".wrong", "wrong")) for p in tmp_path.iterdir())  # nothing half-written
    assert not [p for p in os.listdir(tmp_path) if "converting" in p]
