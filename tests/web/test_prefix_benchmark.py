"""The shared-prefix workload of `codellama bench gateway` (the run itself needs a GPU; its
orchestration is the `--dp` machinery tested in test_replicas.py)."""

from __future__ import annotations

from inference.tokenizer import Tokenizer
from tests.models import OWN_TOKENIZER
from web.prefix_benchmark import editor_prompts, file_texts, prefix_cache_use


def test_files_are_long_distinct_and_reproducible():
    tok = Tokenizer(OWN_TOKENIZER)
    files = file_texts(tok, 3, 300, seed=1)
    assert len(set(files)) == 3 and all(len(tok.encode(f, bos=False)) >= 300 for f in files)
    assert file_texts(tok, 3, 300, seed=1) == files and file_texts(tok, 3, 300, seed=2) != files


def test_every_prompt_is_one_file_with_a_request_of_its_own_below_it():
    files = ["# a.py\nx = 1", "# b.py\ny = 2"]
    prompts = editor_prompts(files, 20, seed=0)
    assert len(set(prompts)) == 20
    assert {next(f for f in files if p.startswith(f + "\n")) for p in prompts} == set(files)
    assert editor_prompts(files, 20, seed=0) == prompts  # the same order for every policy


def test_the_hit_rate_is_counted_over_the_run_only():
    before = [{"hits": 100, "queries": 400, "generated": 10}, {"hits": 0, "queries": 50, "generated": 5}]
    after = [{"hits": 400, "queries": 800, "generated": 40}, {"hits": 0, "queries": 150, "generated": 15}]
    use = prefix_cache_use(before, after)
    assert use["hit_rate"] == 0.6  # 300 of 500 looked up during the run
    assert use["per_replica"] == [{"hit_rate": 0.75, "share_of_tokens": 0.75},
                                  {"hit_rate": 0.0, "share_of_tokens": 0.25}]
