"""Command-line options shared by several subcommands: the engine's and the sampler's."""

from __future__ import annotations

import argparse
import os

from ..model_info import parse_capabilities, tensor_parallel_size


def add_model_identity_options(parser: argparse.ArgumentParser) -> None:
    """Which Code Llama a checkpoint is, for a directory whose workspace metadata does not say
    (pass them to LLMEngine as model_name= and capabilities=)."""
    parser.add_argument("--model-name", help="which Code Llama this is, e.g. CodeLlama-7b-Instruct-hf "
                                             "(sets the variant, size and abilities)")
    parser.add_argument("--capabilities", nargs="+", action=_CapabilitiesAction, metavar="ABILITY",
                        help="abilities instead of the model's own (fine-tuned models): completion, "
                             "infilling, chat, python, separated by spaces or commas")


class _CapabilitiesAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None) -> None:
        try:
            setattr(namespace, self.dest, parse_capabilities(",".join(values)))
        except ValueError as e:
            parser.error(f"{option_string}: {e}")


def add_engine_options(parser: argparse.ArgumentParser, max_num_seqs: int = 256,
                       max_num_seqs_names: tuple[str, ...] = ("--max-num-seqs",),
                       max_num_seqs_help: str = "sequences batched together") -> None:
    """`max_num_seqs*`: how this command names and defaults the batch limit (serve: LMDeploy's
    --instance-num, 32)."""
    g = parser.add_argument_group("engine")
    g.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], help="default: bfloat16 on GPU, float32 on CPU")
    g.add_argument("--device", help="cuda, cuda:1 or cpu (default: cuda when available)")
    g.add_argument("--tp", type=int, metavar="N",
                   help="tensor-parallel processes, one per GPU (default: what the workspace is split for, else 1)")
    g.add_argument("--max-model-len", "--session-len", type=int, metavar="TOKENS",
                   help="context window (default: the model's; --session-len is LMDeploy's name)")
    g.add_argument(*max_num_seqs_names, dest="max_num_seqs", type=int, default=max_num_seqs, metavar="N",
                   help=f"{max_num_seqs_help} (default {max_num_seqs})")
    g.add_argument("--num-kv-blocks", type=int, help="fixed KV-cache pool size in blocks (default: GPU, what memory "
                                                     "allows; CPU, enough for max-num-seqs full-length sequences)")
    g.add_argument("--kv-cache-gib", type=float, metavar="GIB",
                   help="fixed KV-cache size in GiB, whatever its dtype (an int8 cache holds about twice the tokens "
                        "of a bf16 one in it); default: what memory allows")
    g.add_argument("--block-size", type=int, default=16, help="tokens per KV-cache block (default 16)")
    g.add_argument("--cpu-threads", type=int, metavar="N",
                   help="CPU: torch threads of the engine (default: one fewer than this process's cores, at least 1)")
    g.add_argument("--no-prefix-caching", action="store_true", help="do not reuse cached prompt prefixes")
    g.add_argument("--enforce-eager", action="store_true", help="GPU: no CUDA graphs (debugging)")
    g.add_argument("--load-format", choices=["auto", "random"], default="auto",
                   help="random: seeded random weights of the model's shape, no checkpoint read (benchmarks)")
    g.add_argument("--quant", choices=["awq", "int8"],
                   help="int8: round a dense checkpoint's projections to int8 as they load; with --load-format "
                        "random, random weights of that scheme (AWQ / GPTQ checkpoints and quantized workspaces "
                        "are served quantized without it)")
    g.add_argument("--kv-cache-dtype", choices=["auto", "int8"], default="auto",
                   help="int8: the KV cache in int8 with a scale per token and head, about twice the tokens "
                        "(default auto: the model's dtype)")
    g.add_argument("--speculate", choices=["auto", "ngram", "suffix", "off"],
                   help="speculative decoding without a draft model: drafts from the sequence's own prompt and "
                        "output (ngram), from the server's recent outputs (suffix), or both (auto); default: auto "
                        "where a step-time table is shipped for this GPU and model shape (an H200 with the 7B "
                        "shape, bf16), else off")
    g.add_argument("--num-speculative-tokens", type=int, default=5, help="the longest draft a step verifies (default 5)")
    g.add_argument("--speculative-step-times", metavar="FILE",
                   help="`codellama bench verify --out FILE`: measured step times, so that drafts are verified "
                        "only where they pay (default: the table shipped for this GPU and shape, if any)")


def engine_kwargs(args: argparse.Namespace, model: str | None) -> dict:
    """LLMEngine's keyword arguments; `--tp` defaults to the workspace's split (checked here,
    before any process starts)."""
    return dict(dtype=args.dtype, device=args.device, max_model_len=args.max_model_len,
                max_num_seqs=args.max_num_seqs, num_kv_blocks=args.num_kv_blocks, kv_cache_gib=args.kv_cache_gib,
                block_size=args.block_size,
                enable_prefix_caching=not args.no_prefix_caching, enforce_eager=args.enforce_eager,
                load_format=args.load_format, quantization=args.quant, kv_cache_dtype=args.kv_cache_dtype,
                speculate=args.speculate, num_speculative_tokens=args.num_speculative_tokens,
                speculative_step_times=args.speculative_step_times,
                tensor_parallel_size=tensor_parallel_size(model, args.tp))


def engine_cpu_threads(args: argparse.Namespace) -> int | None:
    """Torch threads for an engine on the CPU (None on a GPU, where they do not matter).
    One fewer than the cores this process may use, so that the other process of `serve` (or
    whatever else runs) keeps a core: an OpenMP pool that has to share its cores spins and
    waits on the slowest thread: one request took about 60 s instead of 1-8 s on a loaded 2-core
    machine (BENCHMARKS.md, "CPU threads")."""
    if args.cpu_threads is not None:
        if args.cpu_threads < 1:
            raise ValueError(f"--cpu-threads must be >= 1, got {args.cpu_threads}")
        return args.cpu_threads
    device = args.device or ("cpu" if not _cuda_available() else "cuda")
    if not device.startswith("cpu"):
        return None
    return max(1, len(os.sched_getaffinity(0)) - 1)


def use_cpu_threads(threads: int | None) -> None:
    """Give this process's torch `threads` threads (an engine running here)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def add_sampling_options(parser: argparse.ArgumentParser, max_tokens: int | None = 256) -> None:
    g = parser.add_argument_group("sampling")
    g.add_argument("--max-tokens", type=int, default=max_tokens, help=f"tokens to generate at most (default {max_tokens})")
    g.add_argument("--temperature", type=float, default=0.2, help="0 is greedy (default 0.2)")
    g.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (default 0.95)")
    g.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens (0: off)")
    g.add_argument("--min-p", type=float, default=0.0)
    g.add_argument("--repetition-penalty", type=float, default=1.0)
    g.add_argument("--presence-penalty", type=float, default=0.0)
    g.add_argument("--frequency-penalty", type=float, default=0.0)
    g.add_argument("--seed", type=int, help="make sampling reproducible")
    g.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop string (repeatable)")
    g.add_argument("--ignore-eos", action="store_true", help="keep generating past the end-of-sequence token")


def sampling_kwargs(args: argparse.Namespace) -> dict:
    return dict(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                min_p=args.min_p, repetition_penalty=args.repetition_penalty,
                presence_penalty=args.presence_penalty, frequency_penalty=args.frequency_penalty,
                seed=args.seed, stop=args.stop, ignore_eos=args.ignore_eos)
