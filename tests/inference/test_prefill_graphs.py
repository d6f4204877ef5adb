"""A step through the pieces between attentions (what PrefillGraphs captures per token bucket),
run eagerly on the CPU: the same hidden states and KV cache as the model's forward, whatever the
padding rows held before."""

import pytest
import torch

from inference.attention import AttentionMetadata
from inference.config import ModelConfig
from inference.model import LlamaModel
from inference.prefill_graphs import TOKEN_BUCKETS, PrefillGraphs, token_buckets
from inference.weights import load_weights
from tests.models import tiny_llama

PAGE = 4


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path, _ = tiny_llama(tmp_path_factory.mktemp("m"), vocab=512, hidden=64, heads=4, kv_heads=2, intermediate=128,
                         layers=3)
    model = LlamaModel(ModelConfig.from_dir(path), torch.float32, "cpu")
    load_weights(model, path)
    return model


def mixed_step(model: LlamaModel, kv_int8: bool):
    """A decoding sequence (one token after 6 cached) beside a prompt of 5 tokens after 3 cached:
    6 rows, its metadata, and a cache whose earlier rows hold random values."""
    cfg = model.cfg
    shape = (cfg.num_layers, 2, 8, PAGE, model.num_local_kv_heads, cfg.head_dim)
    gen = torch.Generator().manual_seed(0)
    if kv_int8:
        kv, scales = torch.randint(-127, 128, shape, generator=gen, dtype=torch.int8), torch.rand(shape[:-1]) / 50
    else:
        kv, scales = torch.randn(shape, generator=gen), None
    i32 = dict(dtype=torch.int32)
    tables = torch.tensor([[0, 1, 0, 0], [2, 3, 4, 0]], **i32)
    positions = torch.tensor([6, 3, 4, 5, 6, 7])
    slots = torch.tensor([1 * PAGE + 2, 2 * PAGE + 3, 3 * PAGE, 3 * PAGE + 1, 3 * PAGE + 2, 3 * PAGE + 3])
    meta = AttentionMetadata(torch.tensor([0, 1, 6], **i32), torch.tensor([7, 8], **i32), tables, slots,
                             max_query_len=5, max_context_len=8, num_decodes=1)
    ids = torch.randint(3, cfg.vocab_size, (6,), generator=gen)
    return ids, positions, kv, scales, meta


@pytest.mark.parametrize("kv_int8", [False, True])
@torch.inference_mode()
def test_pieces_compute_what_the_forward_does(model, kv_int8):
    ids, positions, kv, scales, meta = mixed_step(model, kv_int8)
    pieces = PrefillGraphs(model, torch.device("cpu"), buckets=(4, 8, 16), capture_graphs=False)
    pieces.hidden.normal_()  # stale rows from an earlier step must not matter
    pieces.attn.normal_()
    kv_want, kv_got = kv.clone(), kv.clone()
    scales_want, scales_got = (None, None) if scales is None else (scales.clone(), scales.clone())
    want = model(ids, positions, kv_want, meta, scales_want)
    got = pieces.run(ids, positions, kv_got, meta, scales_got)
    assert got.shape == want.shape == (6, model.cfg.hidden_size)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kv_got, kv_want, rtol=0, atol=1e-5 if not kv_int8 else 1)
    assert pieces.hidden[6:8].abs().sum() == 0  # the bucket of 8's padding rows start at zero


def test_steps_beyond_the_largest_bucket_do_not_fit(model):
    pieces = PrefillGraphs(model, torch.device("cpu"), buckets=(4, 8), capture_graphs=False)
    assert pieces.fits(8) and not pieces.fits(9)


def test_no_bucket_is_larger_than_a_step_can_be():
    assert token_buckets(4096) == token_buckets(512) == TOKEN_BUCKETS
    assert token_buckets(100) == (16, 32, 64, 96, 100)
    assert token_buckets(64) == (16, 32, 64)
