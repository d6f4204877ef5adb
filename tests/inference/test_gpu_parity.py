"""End to end on the GPU: a random model of the real CodeLlama-7B shape against transformers."""

import pytest
import torch

from inference.bench.common import make_engine, shape_config
from inference.sampling_params import SamplingParams
from inference.weights import load_tensors
from tests.engine_steps import logits_per_step

pytestmark = pytest.mark.gpu
NEAR_TIE = 0.05  # logit margin under which bf16 rounding may legitimately swap the top two


@pytest.fixture(scope="module")
def models():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape_config("7b"))
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            hf = LlamaForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(default)
    engine = make_engine("7b", num_kv_blocks=512, max_num_seqs=8, max_model_len=2048)
    load_tensors(engine.runner.model, hf.state_dict())  # the same weights in both
    yield hf, engine
    del hf, engine
    torch.cuda.empty_cache()


def prompts(vocab: int):
    gen = torch.Generator().manual_seed(3)
    return [[1] + torch.randint(3, vocab, (n - 1,), generator=gen).tolist() for n in (20, 77, 130, 300)]


@torch.inference_mode()
def hf_greedy(hf, prompt, steps, vocab):
    """transformers' greedy continuation over the tokens the engine can sample, with margins."""
    ids = torch.tensor([prompt], device="cuda")
    out = hf(ids, use_cache=True)
    tokens, margins = [], []
    for _ in range(steps):
        logits = out.logits[0, -1, :vocab].float()
        top = logits.topk(2)
        tokens.append(top.indices[0].item())
        margins.append((top.values[0] - top.values[1]).item())
        out = hf(torch.tensor([[tokens[-1]]], device="cuda"), past_key_values=out.past_key_values, use_cache=True)
    return tokens, margins


def test_logits_and_greedy_tokens_match_transformers(models):
    hf, engine = models
    vocab = engine.tokenizer.vocab_size
    ps = prompts(vocab)
    reference = [hf_greedy(hf, p, 64, vocab) for p in ps]

    # teacher-forced: the engine's logits at every position of transformers' greedy sequence
    got = logits_per_step(engine, ps, 63, [r[0] for r in reference])
    for p, (tokens, margins), steps in zip(ps, reference, got):
        with torch.inference_mode():
            full = hf(torch.tensor([p + tokens[:-1]], device="cuda")).logits[0, len(p) - 1:].float().cpu()
        for i, logits in enumerate(steps):
            err = ((logits - full[i]).norm() / full[i].norm()).item()
            assert err < 2e-2, f"step {i}: relative error {err}"
            if margins[i] > NEAR_TIE:
                assert logits[:vocab].argmax().item() == tokens[i], f"step {i}"

    # free-running greedy generation, batched: identical until transformers' first near-tie
    outs = {}
    for i, p in enumerate(ps):
        engine.add_request(str(i), p, SamplingParams(max_tokens=64, temperature=0, ignore_eos=True))
    while engine.has_unfinished:
        for out in engine.step():
            outs.setdefault(out.request_id, []).extend(out.outputs[0].token_ids)
    compared = 0
    for i, (tokens, margins) in enumerate(reference):
        for j, (mine, theirs) in enumerate(zip(outs[str(i)], tokens)):
            if margins[j] < NEAR_TIE:
                break
            assert mine == theirs, f"prompt {i} token {j}"
            compared += 1
    assert compared >= 32, f"only {compared} tokens compared before near-ties"
    assert engine.blocks.num_free_blocks == engine.blocks.num_blocks
