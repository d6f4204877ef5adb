"""LMDeploy's Code Llama guide typed with `codellama` in place of `lmdeploy`: the guide's words
(`serve api_server`, `chat turbomind`, ...), its underscore spellings of flags (`--instance_num`),
and one line, not an argparse error, for each LMDeploy flag this project has no use for.

    guide                                           here
    convert codellama HF_DIR                        convert HF_DIR
    chat turbomind ./workspace --cap chat           chat ./workspace --cap chat
    serve api_server ./workspace [HOST PORT]        serve ./workspace [HOST PORT]
    serve api_client URL                            client URL
    serve gradio ./workspace | URL                  serve ./workspace --gradio (the playground is at /)
"""

from __future__ import annotations

import argparse
from pathlib import Path

# (command, the guide's word after it) -> the arguments that replace both
GUIDE_WORDS = {
    ("convert", "codellama"): ["convert"],
    ("chat", "turbomind"): ["chat"],
    ("serve", "api_server"): ["serve"],
    ("serve", "api_client"): ["client"],
    ("serve", "gradio"): ["serve", "--gradio"],
}

# LMDeploy flags with no counterpart here, and why
LACKING = {
    "--backend": "this project has one engine (PyTorch and Triton kernels); leave it out",
    "--model-format": "the format is read from the directory (a workspace or a Hugging Face checkpoint)",
    "--quant-policy": "the KV cache is not quantized here",
    "--cache-max-entry-count": "the GPU's KV pool takes the free memory; fix its size with --num-kv-blocks",
    "--rope-scaling-factor": "RoPE scaling is read from the model's config.json",
    "--log-level": "the server logs at info level",
    "--ssl": "serve TLS from a reverse proxy in front of the server",
    "--chat-template": "Code Llama's prompt formats are built in: choose one with --cap",
    "--adapters": "LoRA adapters are not supported",
    "--session-id": "each console session is its own",
    "--stream-output": "answers always stream",
    "--restful-api": "the playground is served by the API server itself (at /)",
    "--batch-size": "the batch is --max-num-seqs (serve: --instance-num)",
}


class GuideFlagError(ValueError):
    """An LMDeploy flag this project lacks: reported as one line."""


def translate(argv: list[str]) -> list[str]:
    """`argv` with the guide's words replaced by this project's."""
    if len(argv) >= 2 and (argv[0], argv[1]) in GUIDE_WORDS and _is_word(argv):
        return GUIDE_WORDS[(argv[0], argv[1])] + argv[2:]
    return argv


def _is_word(argv: list[str]) -> bool:
    """The guide's word, not a directory of that name given alone (`convert codellama`)."""
    return not Path(argv[1]).exists() or (len(argv) > 2 and not argv[2].startswith("-"))


def normalize_flags(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Underscore spellings of this command's flags (`--instance_num`) become the hyphenated ones;
    an LMDeploy flag without a counterpart raises GuideFlagError."""
    known = parser._option_string_actions
    out = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + argv[i:]
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            hyphenated = name.replace("_", "-")
            if hyphenated in LACKING and hyphenated not in known:
                raise GuideFlagError(f"{name} is LMDeploy's and has no counterpart here: {LACKING[hyphenated]}")
            if name not in known and hyphenated in known:
                arg = hyphenated + eq + value
        out.append(arg)
    return out
