"""Variant, size and abilities: Meta's table, model names, workspace metadata, overrides."""

import json

import pytest

from inference.model_info import (ModelInfo, check_name_fits, load_model_info, parse_capabilities,
                                  parse_model_name)

# Meta's table, as the Code Llama release states it
TABLE = {
    "base": {"7b": {"completion", "infilling"}, "13b": {"completion", "infilling"},
             "34b": {"completion"}, "70b": {"completion"}},
    "python": {size: {"completion", "python"} for size in ("7b", "13b", "34b", "70b")},
    "instruct": {"7b": {"completion", "infilling", "chat"}, "13b": {"completion", "infilling", "chat"},
                 "34b": {"completion", "chat"}, "70b": {"completion", "chat"}},
}
NAMES = {"base": "CodeLlama-{}-hf", "python": "codellama/CodeLlama-{}-Python-hf",
         "instruct": "meta-llama/CodeLlama-{}-Instruct-hf"}


@pytest.mark.parametrize("variant", TABLE)
@pytest.mark.parametrize("size", ["7b", "13b", "34b", "70b"])
def test_every_released_model_gets_metas_abilities(tmp_path, variant, size):
    name = NAMES[variant].format(size)
    info = load_model_info(tmp_path, model_name=name)
    assert (info.variant, info.size) == (variant, size)
    assert set(info.capabilities) == TABLE[variant][size]
    for ability in ("completion", "infilling", "chat", "python"):
        if ability in TABLE[variant][size]:
            info.require(ability)
        else:
            with pytest.raises(ValueError, match=f"cannot do {ability}"):
                info.require(ability)


def test_a_directory_name_alone_says_nothing(tmp_path):
    model_dir = tmp_path / "CodeLlama-7b-Instruct-hf"
    model_dir.mkdir()
    info = load_model_info(model_dir)
    assert info.variant == "unknown" and info.capabilities == ("completion",)
    with pytest.raises(ValueError, match="--model-name"):
        info.require("chat")


def test_workspace_metadata_then_name_then_capabilities_override(tmp_path):
    meta = {"model_name": "CodeLlama-13b-hf", "variant": "base", "size": "13b",
            "capabilities": ["completion", "infilling"]}
    (tmp_path / "codellama.json").write_text(json.dumps(meta))
    assert load_model_info(tmp_path).capabilities == ("completion", "infilling")
    assert load_model_info(tmp_path, "CodeLlama-34b-Instruct-hf").capabilities == ("completion", "chat")
    tuned = load_model_info(tmp_path, capabilities=["completion", "chat"])
    assert tuned.name == "CodeLlama-13b-hf" and tuned.capabilities == ("completion", "chat")
    (tmp_path / "codellama.json").write_text(json.dumps({"model_name": "x"}))
    with pytest.raises(ValueError, match="missing variant"):
        load_model_info(tmp_path)


def test_capability_lists_are_validated():
    assert parse_capabilities("completion, infilling,completion") == ["completion", "infilling"]
    for bad in ("", "completion,fly"):
        with pytest.raises(ValueError, match="unknown abilities"):
            parse_capabilities(bad)
    with pytest.raises(ValueError, match="unknown ability"):
        ModelInfo("m", "base", "7b", ("completion",)).require("fly")


@pytest.mark.parametrize("name,expected", [
    ("codellama-7B-INSTRUCT", ("instruct", "7b")), ("CodeLlama-70b-Python-hf", ("python", "70b")),
    ("codellama/CodeLlama-13b-hf", ("base", "13b")), ("CODELLAMA-34B-HF", ("base", "34b")),
])
def test_the_familys_names_in_any_case_with_or_without_hf(name, expected):
    assert parse_model_name(name) == expected


@pytest.mark.parametrize("name", ["gpt2", "llama-2-7b", "CodeLlama-9b-Instruct", "CodeLlama-7b-Chat-hf",
                                  "my-CodeLlama-7b-hf-finetune"])
def test_other_names_are_refused_with_the_list(name):
    with pytest.raises(ValueError, match="is not a Code Llama model name; use one of CodeLlama-7b") as e:
        parse_model_name(name)
    assert "CodeLlama-70b-Instruct[-hf]" in str(e.value)


def test_a_name_whose_size_contradicts_the_checkpoint_is_refused_when_loading(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 5120, "num_hidden_layers": 40}))
    assert load_model_info(tmp_path, "CodeLlama-13b-hf").size == "13b"
    with pytest.raises(ValueError, match="says 7b, but config.json .* is a 13b model"):
        load_model_info(tmp_path, "CodeLlama-7b-Instruct-hf")


def test_sizes_that_contradict_the_checkpoint():
    named_7b = ModelInfo("CodeLlama-7b-hf", "base", "7b", ("completion",))
    check_name_fits(named_7b, 4096, 32)
    check_name_fits(named_7b, 256, 4)  # not a released shape: nothing to contradict
    with pytest.raises(ValueError, match="is a 13b model"):
        check_name_fits(named_7b, 5120, 40)
