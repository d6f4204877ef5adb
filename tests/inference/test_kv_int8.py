"""The model over an int8 KV cache: prefill and decode steps stay close to the float cache's
logits and pick the same greedy tokens."""

import torch

from inference.config import ModelConfig
from inference.model import LlamaModel
from inference.weights import load_weights
from tests.inference.model_steps import step_logits
from tests.models import tiny_llama


def test_int8_cache_logits_stay_close_to_the_float_cache(tmp_path):
    path, _ = tiny_llama(tmp_path, vocab=512, hidden=128, heads=4, kv_heads=2, intermediate=256, layers=2)
    model = LlamaModel(ModelConfig.from_dir(path), torch.float32, "cpu")
    load_weights(model, path)
    prompt, then = list(range(5, 45)), [7, 300, 12, 99, 400, 3, 17, 250]  # past block boundaries
    want, got = step_logits(model, prompt, then), step_logits(model, prompt, then, kv_int8=True)
    want[0], got[0] = want[0][-1], got[0][-1]  # the prompt's last position
    errors = [((g - w).norm() / w.norm()).item() for w, g in zip(want, got)]
    assert max(errors) < 1e-2 and min(errors) > 0, errors
    assert [int(w.argmax()) for w in want] == [int(g.argmax()) for g in got]
