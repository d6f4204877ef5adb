"""Train the embedded default model's SentencePiece tokenizer on Python's own standard library.

Run once; the result is committed as inference/assets/tokenizer.model. The settings follow the
Llama / Code Llama tokenizer: BPE, byte fallback, digits split, whitespace kept, and the Code Llama
infilling pieces as single tokens.
"""

import io
import sys
import sysconfig
from pathlib import Path

import sentencepiece as spm

from inference.tokenizer import INFILL_PIECES


def corpus_lines(limit_bytes: int = 12_000_000):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    total = 0
    for path in sorted(stdlib.rglob("*.py")):
        if "test" in path.parts or "site-packages" in path.parts:
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        for line in text.splitlines():
            if line.strip():
                total += len(line)
                yield line
        if total > limit_bytes:
            return


def main(out: str = "inference/assets/tokenizer.model", vocab_size: int = 4096) -> None:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=corpus_lines(), model_writer=model, model_type="bpe", vocab_size=vocab_size,
        character_coverage=0.9999, byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity", add_dummy_prefix=True,
        user_defined_symbols=list(INFILL_PIECES.values()) + ["☺"], unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        shuffle_input_sentence=False, num_threads=1, max_sentence_length=8192,
    )
    Path(out).write_bytes(model.getvalue())
    print(f"wrote {out} ({len(model.getvalue())} bytes, vocab {vocab_size})")


if __name__ == "__main__":
    main(*sys.argv[1:])
