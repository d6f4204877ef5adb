"""What each replica of `codellama serve --dp N` gets: the user's own serve arguments (less what
the supervisor decides: data parallelism, the routing policy, host and port) and its GPUs."""

from __future__ import annotations

import argparse
import os

SUPERVISOR_ONLY = frozenset({"dp", "router_policy", "host", "port", "host_arg", "port_arg"})


def _flag_args(action: argparse.Action, value) -> list[str]:
    if isinstance(action, argparse.BooleanOptionalAction):
        return [action.option_strings[0] if value else action.option_strings[-1]]
    if action.nargs == 0:  # store_true / store_false / store_const
        return [action.option_strings[0]]
    flag = action.option_strings[-1]
    if isinstance(value, (list, tuple)):
        if action.nargs in ("+", "*") or isinstance(action.nargs, int):
            return [flag, *map(str, value)]
        return [arg for item in value for arg in (flag, str(item))]  # an append action
    return [flag, str(value)]


def replica_argv(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """`codellama serve` arguments that parse back into `args` for everything a replica shares:
    every option the user changed from its default, read from the parser's own actions (so an
    option added to the serve command reaches the replicas without being listed here)."""
    positionals, options, seen = [], [], set()
    for action in parser._actions:  # argparse keeps no public list of a parser's arguments
        dest = action.dest
        if dest in seen or dest in SUPERVISOR_ONLY or action.default is argparse.SUPPRESS:
            continue
        seen.add(dest)  # two flags may share a destination (--instance-num, --max-num-seqs)
        value = getattr(args, dest, action.default)
        if not action.option_strings:
            if value is not None:
                positionals.append(str(value))
        elif value != action.default:
            options += _flag_args(action, value)
    return positionals + options


def replica_devices(dp: int, tp: int, device: str | None, cuda_available: bool) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES for each replica: replica i takes the GPUs i*tp .. i*tp+tp-1 of those
    this process sees; None for CPU replicas."""
    if device == "cpu" or (device is None and not cuda_available):
        return [None] * dp
    if device not in (None, "cuda"):
        raise ValueError(f"--dp gives each replica its own GPUs: leave out --device {device} (or give cpu)")
    if not cuda_available:
        raise ValueError("--device cuda: no CUDA GPU is visible")
    visible = _visible_gpus()
    if dp * tp > len(visible):
        raise ValueError(f"--dp {dp} x --tp {tp} needs {dp * tp} GPUs; {len(visible)} are visible")
    return [",".join(visible[i * tp:(i + 1) * tp]) for i in range(dp)]


def _visible_gpus() -> list[str]:
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def gateway_key(api_keys: list[str]) -> str | None:
    """The one key the gateway checks and sends on to the replicas: smg 1.13 authenticates clients
    with one `--api-key` (its `--tenant-api-key` keys were refused when tried through `smg launch`)."""
    if len(api_keys) > 1:
        raise ValueError("--dp: the gateway checks one API key; give --api-keys a single key")
    return api_keys[0] if api_keys else None
