#!/usr/bin/env bash
# Quantization on the GPU machine in one command (about 5 minutes on one H200), from the
# repository root, nothing to install:
#     bash scripts/gpu_quant_check.sh
# 1. the GPU tests of the kernels (tests/kernels, bf16 at real sizes, int8 KV, quantized GEMV /
#    GEMM at CodeLlama-7B sizes, CUDA-graph replay) and of a quantized model on the GPU;
# 2. `codellama bench kernels`: paged decode attention over bf16 and int8 KV caches (and a sweep of
#    the int8 kernel's tiles), and the W4A16 / W8A16 kernels beside bf16 cuBLAS;
# writing $OUT/gpu-tests.txt and $OUT/kernels.json, and printing a summary of the figures.
set -uo pipefail
out="${OUT:-./gpu-quant-out}"
mkdir -p "$out"
python -m pytest -q -m gpu tests/kernels tests/inference/test_quant_gpu.py -p no:cacheprovider \
    > "$out/gpu-tests.txt" 2>&1
tail -n 15 "$out/gpu-tests.txt"
python -m inference.cli bench kernels --out "$out/kernels.json" > /dev/null 2> "$out/bench-stderr.txt" \
    || tail -n 20 "$out/bench-stderr.txt"
python - "$out/kernels.json" <<'EOF'
import json, sys

record = json.load(open(sys.argv[1]))
k = record["kernels"]
print(record["device"]["card"], "copy bandwidth %.2f TB/s" % record["copy_bandwidth_tb_s"])
for r in k["quant_gemv_7b"]:
    print("gemv %-8s m=%-2d bf16 %.4f ms | w4a16 %.4f ms (x%.2f) | w8a16 %.4f ms (x%.2f)%s" % (
        r["projection"], r["m"], r["bf16_ms"], r["w4a16_ms"], r["w4a16_speedup"], r["w8a16_ms"],
        r["w8a16_speedup"], "" if r["projection"] == "layer" else "  w4 %.0f%% of copy bw" % r["w4a16_pct_of_copy_bw"]))
for r in k["quant_gemm_7b"]:
    print("gemm %-8s m=%d tflops: %s" % (r["projection"], r["m"], ", ".join(
        "%s %.0f" % (key[:-7], v) for key, v in r.items() if key.endswith("_tflops"))))
for r in k["decode_attention"][:6] + k["decode_attention_int8_kv"]:
    print("decode attention %s %-4s batch %d x %5d: %.3f ms, %.0f%% of copy bw" % (
        r["shape"], r.get("kv", "bf16"), r["batch"], r["context"], r["ms"], r["pct_of_copy_bw"]))
EOF
