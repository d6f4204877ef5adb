"""`codellama convert HF_DIR --dst DIR`: turn a Hugging Face checkpoint into a workspace (LMDeploy's
`convert codellama HF_DIR` works too)."""

from __future__ import annotations

import argparse
import sys

from .options import add_model_identity_options


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("hf_dir", metavar="HF_DIR",
                        help="the Hugging Face Llama / Code Llama directory (config.json, tokenizer.model, weights)")
    parser.add_argument("--dst", default="./workspace", help="the workspace to write (default ./workspace)")
    add_model_identity_options(parser)
    parser.add_argument("--tp", type=int, default=1, help="tensor-parallel ranks to split the weights for (default 1)")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"],
                        help="weight dtype to store (default: the checkpoint's, else bfloat16)")
    parser.add_argument("--quant", choices=["awq", "int8"],
                        help="quantize the weights: awq (4-bit, groups of 128, activation-aware scales) or int8 "
                             "(per output channel); AWQ and GPTQ checkpoints stay quantized without it")
    parser.add_argument("--calib", metavar="FILE",
                        help="--quant awq: text to calibrate on (default: the standard library's email package, "
                             "one of the default model's held-out packages; its quality is measured on the others)")
    parser.add_argument("--force", action="store_true", help="replace an existing workspace at --dst")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..quant import read_quantization
    from ..workspace import convert

    info = convert(args.hf_dir, args.dst, model_name=args.model_name, capabilities=args.capabilities,
                   tp=args.tp, dtype=args.dtype, force=args.force, progress=not args.no_progress, quant=args.quant,
                   calib=args.calib)
    quantized = read_quantization(args.dst)
    print(f"wrote {args.dst}: {info.name} ({info.variant}, {info.size}), abilities {', '.join(info.capabilities)}, "
          f"tp {args.tp}" + (f", weights {quantized[0].name}" if quantized else ""))
    if info.variant == "unknown" and not args.capabilities:
        print("note: without --model-name the variant is unknown, so only completion is enabled; "
              "convert again with --model-name or --capabilities", file=sys.stderr)
    return 0
