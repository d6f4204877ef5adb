"""The int8 KV cache: each (token, KV head) row of head_dim values is stored as int8 with one
float32 scale, written by the rotary/KV-write kernel and read back inside the attention kernels.

    k_cache, v_cache    int8     [num_blocks, block_size, Hk, D]   block-major, as the bf16 cache
    k_scales, v_scales  float32  [num_blocks, block_size, Hk]      one scale per cache row

    stored:  c = floor(x * 127 / amax + 1/2), amax = max |x| over the row (k after rotary)
    read:    x ~ c * scale, scale = amax / 127  (an all-zero row stores scale 0 and zeros)

For the whole model the scales are one tensor [layers, 2, num_blocks, block_size, Hk] beside the
cache [layers, 2, num_blocks, block_size, Hk, D]: a row's scale lives in the same slot of the
same block, so prefix caching and preemption move nothing extra. A row takes D + 4 bytes
(132 for D = 128, against 256 in bf16). The rounding is written out (not torch.round) so the
kernels and this reference agree bit for bit.

Below the references, what the attention kernels share to read a tile of it: the codes as int32
words of four or as bytes, with their scales (int8_rows, load_int8_rows, load_int8_tile), and the
codes made exact float32 or float16 numbers in registers, by one PTX instruction or two per code on
an NVIDIA GPU (PTX) and field by field under Triton's interpreter.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


def quantize_kv_ref(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x: [T, H, D] -> (int8 [T, H, D], float32 scales [T, H])."""
    x = x.float()
    amax = x.abs().amax(-1)
    inv = torch.where(amax > 0, 127.0 / amax, torch.zeros_like(amax))
    codes = torch.floor(x * inv[..., None] + 0.5).clamp(-127, 127).to(torch.int8)
    return codes, amax / 127.0


def dequantize_kv_ref(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """int8 [..., D] and scales [...] -> float32 [..., D]."""
    return codes.float() * scales[..., None]


def check_kv_scales(k_cache: torch.Tensor, k_scales: torch.Tensor | None, v_scales: torch.Tensor | None) -> bool:
    """Whether the cache is int8, after checking that it comes with scales of the right shape."""
    if k_cache.dtype != torch.int8:
        return False
    assert k_scales is not None and v_scales is not None, "an int8 KV cache needs its scales"
    assert k_scales.shape == v_scales.shape == k_cache.shape[:3] and k_scales.dtype == torch.float32
    assert k_scales.is_contiguous() and v_scales.is_contiguous()
    return True


@triton.jit
def int8_to_f32(codes):
    # 2^23 + 128 + c as float32 bits, minus 2^23 + 128: exact, without the slow I2F conversion unit
    return (codes.to(tl.int32) + 0x4B000080).to(tl.float32, bitcast=True) - 8388736.0


@triton.jit
def _interleave(c0, c1, c2, c3):
    """The j-th codes of each word [R, W] -> [R, 4 W] in memory order (kept in the loading thread)."""
    codes = tl.join(tl.join(c0, c2), tl.join(c1, c3))  # [R, W, 2, 2]: c0, c1, c2, c3 in row-major order
    return tl.reshape(codes, (codes.shape[0], codes.shape[1] * 4))


@triton.jit
def words_to_f32(words):
    """int32 words of four int8 codes [R, W] -> float32 [R, 4 W] in memory order, exact (the GPU
    only: PTX). A word's codes, xor 0x80, are 128 + c; prmt puts each below the byte 0x4B, which
    reads as the float32 2^23 + 128 + c."""
    c0, c1, c2, c3 = tl.inline_asm_elementwise(
        """{
        .reg .b32 t;
        xor.b32 t, $4, 0x80808080;
        prmt.b32 $0, t, 0x4B000000, 0x7440;
        prmt.b32 $1, t, 0x4B000000, 0x7441;
        prmt.b32 $2, t, 0x4B000000, 0x7442;
        prmt.b32 $3, t, 0x4B000000, 0x7443;
        }""", "=r,=r,=r,=r,r", [words], dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=True, pack=1)
    return _interleave(c0, c1, c2, c3).to(tl.float32, bitcast=True) - 8388736.0


@triton.jit
def codes_to_f32(codes, PTX: tl.constexpr):
    if PTX:
        values = words_to_f32(codes)
    else:
        values = int8_to_f32(codes)
    return values


@triton.jit
def words_to_f16(words, PTX: tl.constexpr):
    """int32 words of four int8 codes [R, W] -> float16 [R, 4 W] in memory order, exact. On the GPU
    (PTX) two prmt put the codes (xor 0x80: 128 + c) below the byte 0x64 in pairs, which read as the
    float16 1024 + 128 + c, and one sub.f16x2 per pair takes 1152 off; Triton's interpreter shifts
    each code out."""
    if PTX:
        c0, c1, c2, c3 = tl.inline_asm_elementwise(
            """{
            .reg .b32 t, k, lo, hi;
            mov.b32 k, 0x64806480;
            xor.b32 t, $4, 0x80808080;
            prmt.b32 lo, t, 0x64646464, 0x4140;
            prmt.b32 hi, t, 0x64646464, 0x4342;
            sub.f16x2 lo, lo, k;
            sub.f16x2 hi, hi, k;
            mov.b32 {$0, $1}, lo;
            mov.b32 {$2, $3}, hi;
            }""", "=h,=h,=h,=h,r", [words], dtype=(tl.float16, tl.float16, tl.float16, tl.float16), is_pure=True,
            pack=1)
    else:
        c0 = ((words << 24) >> 24).to(tl.float16)  # arithmetic shifts: each byte's sign extended
        c1 = ((words << 16) >> 24).to(tl.float16)
        c2 = ((words << 8) >> 24).to(tl.float16)
        c3 = (words >> 24).to(tl.float16)
    return _interleave(c0, c1, c2, c3)


@triton.jit
def int8_rows(k_cache_ptr, v_cache_ptr, k_scale_ptr, v_scale_ptr, slots, kvh, HK: tl.constexpr, D: tl.constexpr,
              BLOCK_D: tl.constexpr, WORDS: tl.constexpr):
    """Where KV head kvh's codes (int32 words of four when WORDS, else int8) and scales lie at
    slots; a row further on is HK * D codes and HK scales on."""
    if WORDS:
        offs = ((slots * (HK * D) + kvh * D) // 4)[:, None] + tl.arange(0, D // 4)[None, :]
        k = k_cache_ptr.to(tl.pointer_type(tl.int32)) + offs
        v = v_cache_ptr.to(tl.pointer_type(tl.int32)) + offs
    else:
        offs = (slots * (HK * D) + kvh * D)[:, None] + tl.arange(0, BLOCK_D)[None, :]
        k = k_cache_ptr + offs
        v = v_cache_ptr + offs
    return k, v, k_scale_ptr + slots * HK + kvh, v_scale_ptr + slots * HK + kvh


@triton.jit
def load_int8_rows(k, v, k_scale, v_scale, first, tmask, HK: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr,
                   WORDS: tl.constexpr):
    """The codes and scales first slots past the places int8_rows gave (of the rows in tmask)."""
    if WORDS:
        mask = tmask[:, None]
        row = HK * D // 4
    else:
        mask = tmask[:, None] & (tl.arange(0, BLOCK_D) < D)[None, :]
        row = HK * D
    return (tl.load(k + first * row, mask=mask, other=0), tl.load(v + first * row, mask=mask, other=0),
            tl.load(k_scale + first * HK, mask=tmask, other=0.0), tl.load(v_scale + first * HK, mask=tmask, other=0.0))


@triton.jit
def load_int8_tile(k_cache_ptr, v_cache_ptr, k_scale_ptr, v_scale_ptr, slots, tmask, kvh,
                   HK: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr, WORDS: tl.constexpr):
    """The codes of KV head kvh at slots (int32 words of four when WORDS, else int8) and their scales."""
    k, v, k_scale, v_scale = int8_rows(k_cache_ptr, v_cache_ptr, k_scale_ptr, v_scale_ptr, slots, kvh, HK, D, BLOCK_D,
                                       WORDS)
    return load_int8_rows(k, v, k_scale, v_scale, 0, tmask, HK, D, BLOCK_D, WORDS)
