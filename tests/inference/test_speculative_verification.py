"""Verifying drafts: exactly what plain decoding samples, greedy or not, row by row and over whole
generations; and, counted over many seeds, the distribution speculative sampling must keep."""

import random

import pytest
import torch

from inference.sampler import SamplingTensors, sample
from inference.sampling_params import SamplingParams
from inference.sequence import PENDING, Sequence
from inference.speculative import emitted_tokens, verify
from tests.models import tiny_llama

PARAMS = {
    "greedy": SamplingParams(temperature=0),
    "sampled": SamplingParams(temperature=0.9),
    "filtered": SamplingParams(temperature=1.3, top_k=12, top_p=0.9, min_p=0.02),
    "penalised": SamplingParams(temperature=0.7, repetition_penalty=1.3, presence_penalty=0.5,
                                frequency_penalty=0.8),
    "greedy_penalised": SamplingParams(temperature=0, frequency_penalty=2.0, repetition_penalty=1.5),
}


def sequence(prompt: list[int], output: list[int], params: SamplingParams, seed: int) -> Sequence:
    """A sequence about to sample its next output token, as the scheduler leaves it."""
    return Sequence(0, "r", 0, prompt + output + [PENDING], len(prompt), params, seed)


def plain_token(logits: torch.Tensor, prompt: list[int], output: list[int], params: SamplingParams, seed: int) -> int:
    """The token plain decoding samples from one row of logits."""
    t = SamplingTensors.build([sequence(prompt, output, params, seed)], logits.shape[-1], logits.device)
    return sample(logits[None], t).tokens.item()


def chi_square_p_value(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's test of observed counts against probabilities (cells with probability 0 must be
    empty and are left out)."""
    assert counts[probs == 0].sum() == 0
    keep = probs > 0
    expected = probs[keep] * counts.sum()
    statistic = ((counts[keep] - expected) ** 2 / expected).sum()
    return torch.special.gammaincc(torch.tensor((keep.sum().item() - 1) / 2), statistic / 2).item()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("name", PARAMS)
def test_every_verifying_row_samples_what_plain_decoding_would_there(name, device):
    """Random logits, drafts right for a while then wrong: each row's sample is plain decoding's
    at that position with the draft before it as output, and acceptance stops at the first miss."""
    params, vocab, rng = PARAMS[name], 50, random.Random(0)
    torch.manual_seed(0)
    seqs, drafts, logits = [], [], []
    for i in range(12):
        prompt = [rng.randrange(vocab) for _ in range(5)]
        output = [rng.randrange(vocab) for _ in range(rng.randrange(0, 4))]
        seed = rng.randrange(1 << 40)
        rows = torch.randn(rng.randrange(1, 6), vocab, device=device) * 3
        draft, right = [], rng.randrange(len(rows))  # the first `right` tokens are what plain decoding samples
        for j in range(len(rows) - 1):
            token = plain_token(rows[j], prompt, output + draft, params, seed)
            draft.append(token if j < right else (token + 1 + rng.randrange(vocab - 1)) % vocab)
        seqs.append(sequence(prompt, output, params, seed))
        drafts.append(draft)
        logits.append(rows)
    result = verify(torch.cat(logits), SamplingTensors.build(seqs, vocab, torch.device(device)), drafts)
    row_tokens, accepted = result.rows.tokens.tolist(), result.num_accepted.tolist()
    first = 0
    for seq, draft, rows, num_accepted in zip(seqs, drafts, logits, accepted):
        prompt, output = seq.token_ids[:seq.num_prompt_tokens], seq.output_token_ids[:-1]
        plain = [plain_token(rows[j], prompt, output + draft[:j], params, seq.seed) for j in range(len(rows))]
        assert row_tokens[first:first + len(rows)] == plain
        expected = next((j for j, (d, p) in enumerate(zip(draft, plain)) if d != p), len(draft))
        assert num_accepted == expected
        first += len(rows)
    emitted = emitted_tokens(row_tokens, drafts, accepted)
    assert [e[:-1] for e in emitted] == [d[:a] for d, a in zip(drafts, accepted)]
    assert [e[-1] for e in emitted] == result.next_tokens.tolist()
    assert 0 < sum(accepted) < sum(map(len, drafts))  # acceptances and rejections both exercised


def test_logprobs_of_verifying_rows_are_the_models():
    logits = torch.randn(4, 30)
    t = SamplingTensors.build([sequence([1, 2], [], SamplingParams(temperature=0, logprobs=2), 0)], 30,
                              torch.device("cpu"))
    result = verify(logits, t, [[5, 6, 7]])
    expected = torch.log_softmax(logits, -1).gather(1, result.rows.tokens[:, None])[:, 0]
    assert torch.allclose(result.rows.logprobs, expected) and result.rows.top_ids.shape == (4, 2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    _, model = tiny_llama(tmp_path_factory.mktemp("speculative"), vocab=64, hidden=64, init_std=0.3)
    return model.double()


def model_logits(model, tokens: list[int], last: int) -> torch.Tensor:
    """float32 logits of the last `last` positions (the model runs in float64, so that scoring a
    position in a longer forward gives the same value as in a shorter one)."""
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0, -last:].float()


def hashed_logits(tokens: list[int], last: int) -> torch.Tensor:
    """A synthetic model: each position's logits are a pure function of the tokens up to it."""
    rows = [torch.randn(64, generator=torch.Generator().manual_seed(hash(tuple(tokens[:n])) % (1 << 62))) * 2
            for n in range(len(tokens) - last + 1, len(tokens) + 1)]
    return torch.stack(rows)


@pytest.mark.parametrize("name,model", [("greedy", "hashed"), ("filtered", "hashed"), ("penalised", "hashed"),
                                        ("filtered", "tiny")])
def test_speculative_generation_equals_plain_generation_token_for_token(tiny, name, model):
    """Whole generations, drafts mostly right with one wrong token at a random place (or wholly
    random): the same tokens as plain decoding, for every seed."""
    logits_of = (lambda tokens, last: model_logits(tiny, tokens, last)) if model == "tiny" else hashed_logits
    params, rng, length = PARAMS[name], random.Random(1), 14
    accepted_any = rejected_any = False
    for seed in range(6 if model == "hashed" else 3):
        prompt = [rng.randrange(64) for _ in range(6)]
        plain: list[int] = []
        while len(plain) < length:
            plain.append(plain_token(logits_of(prompt + plain, 1)[0], prompt, plain, params, seed))
        output: list[int] = []
        while len(output) < length:
            k = rng.randrange(0, 6)
            draft = plain[len(output):len(output) + k]
            if draft and rng.random() < 0.7:
                draft[rng.randrange(len(draft))] = rng.randrange(64)
            elif rng.random() < 0.2:
                draft = [rng.randrange(64) for _ in range(k)]
            t = SamplingTensors.build([sequence(prompt, output, params, seed)], 64, torch.device("cpu"))
            result = verify(logits_of(prompt + output + draft, len(draft) + 1), t, [draft])
            [emitted] = emitted_tokens(result.rows.tokens.tolist(), [draft], result.num_accepted.tolist())
            accepted_any |= len(emitted) > 1
            rejected_any |= len(emitted) <= len(draft)
            output += emitted
        assert output[:length] == plain, seed
    assert accepted_any and rejected_any


def test_a_drafted_token_is_accepted_with_its_probability_and_rejections_follow_the_residual():
    """Synthetic distribution, 20,000 seeds, a draft of one token x: accepted with frequency p(x),
    the token emitted when rejected follows p without x renormalised, and the emitted token
    follows p (the tempered, top-k filtered distribution, computed here independently)."""
    logits = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -3.0])
    params, seeds, x = SamplingParams(temperature=0.8, top_k=5), 20000, 1
    probs = torch.softmax(logits / 0.8, -1)
    probs[5] = 0
    probs /= probs.sum()
    seqs = [sequence([3, 3], [], params, seed) for seed in range(seeds)]
    t = SamplingTensors.build(seqs, 6, torch.device("cpu"))
    result = verify(torch.stack([logits, torch.zeros(6)]).repeat(seeds, 1), t, [[x]] * seeds)
    first = result.rows.tokens.view(seeds, 2)[:, 0]
    accepted = result.num_accepted == 1
    assert torch.equal(accepted, first == x)
    rate, p = accepted.float().mean().item(), probs[x].item()
    assert abs(rate - p) < 4 * (p * (1 - p) / seeds) ** 0.5, (rate, p)
    residual = probs.clone()
    residual[x] = 0
    residual /= residual.sum()
    assert chi_square_p_value(torch.bincount(first[~accepted], minlength=6).double(), residual.double()) > 1e-3
    assert chi_square_p_value(torch.bincount(first, minlength=6).double(), probs.double()) > 1e-3


def test_two_tokens_from_a_tiny_model_follow_its_distribution_with_speculation(tiny):
    """The first two tokens of 6,000 seeded requests, each verifying the same two-token draft:
    their joint counts against p(t0) · p(t1 | t0) from the model (top-3, temperature 1)."""
    params, seeds, prompt = SamplingParams(temperature=1.0, top_k=3), 6000, [5, 17, 33, 2]

    def top3(row: torch.Tensor) -> torch.Tensor:
        probs = torch.zeros_like(row, dtype=torch.float64)
        top = row.double().topk(3)
        probs[top.indices] = torch.softmax(top.values, -1)
        return probs

    first = model_logits(tiny, prompt, 1)[0]
    candidates = first.topk(3).indices.tolist()
    after = {t0: model_logits(tiny, prompt + [t0], 1)[0] for t0 in candidates}
    draft = [candidates[1], after[candidates[1]].topk(3).indices[2].item()]  # neither token the likeliest
    rows = model_logits(tiny, prompt + draft, 3)
    seqs = [sequence(prompt, [], params, seed) for seed in range(seeds)]
    result = verify(rows.repeat(seeds, 1), SamplingTensors.build(seqs, 64, torch.device("cpu")), [draft] * seeds)
    emitted = emitted_tokens(result.rows.tokens.tolist(), [draft] * seeds, result.num_accepted.tolist())
    # where the first token was rejected, the second is a plain step after it
    rejected = [seed for seed, tokens in enumerate(emitted) if len(tokens) == 1]
    t = SamplingTensors.build([sequence(prompt, emitted[s], params, s) for s in rejected], 64, torch.device("cpu"))
    seconds = sample(torch.stack([after[emitted[s][0]] for s in rejected]), t).tokens.tolist()
    for seed, token in zip(rejected, seconds):
        emitted[seed] = emitted[seed] + [token]
    pairs = [tuple(tokens[:2]) for tokens in emitted]
    cells = [(t0, t1) for t0 in candidates for t1 in after[t0].topk(3).indices.tolist()]
    counts = torch.tensor([pairs.count(c) for c in cells], dtype=torch.float64)
    probs = torch.tensor([top3(first)[t0] * top3(after[t0])[t1] for t0, t1 in cells])
    assert counts.sum() == seeds
    assert chi_square_p_value(counts, probs) > 1e-3
    assert 0 < sum(len(e) == 3 for e in emitted) < seeds - len(rejected)  # some seeds accepted the whole draft
