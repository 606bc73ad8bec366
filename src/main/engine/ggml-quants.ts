/**
 * ggml's 32-value block quantizations Q8_0 and Q4_0, laid out as GGUF files hold them, written
 * bit for bit as ggml-quants.c's reference quantizers write them (quantize_row_q8_0_ref,
 * quantize_row_q4_0_ref: what llama-quantize and convert_hf_to_gguf.py produce without an
 * importance matrix) and read back as its dequantizers read them.
 *
 *   block_q8_0, 34 bytes: f16 d, int8 qs[32]        x[j]    = qs[j]·d
 *     d = amax / 127, qs[j] = roundf(x[j]·(1/d))       (roundf: halves away from zero)
 *   block_q4_0, 18 bytes: f16 d, u8 qs[16]          x[j]    = ((qs[j] & 0xF) − 8)·d
 *                                                   x[j+16] = ((qs[j] >> 4) − 8)·d
 *     d = max / −8, where max is the value of largest magnitude with its sign (the first one on
 *     a tie); q = min(15, trunc(x·(1/d) + 8.5)): element j in the low nibble of byte j,
 *     element j+16 in its high nibble — not consecutive pairs.
 *
 * Every step is float32 as in C: d and 1/d are float32, the quants come from x·(1/d), not x/d,
 * and only the stored d is rounded to half (ties to even), so the quants are computed with a
 * scale slightly different from the one stored. Per value, |x − dequant(x)| is at most |d|/2
 * (Q8_0; Q4_0 too, except the values at −max, which clip to 15 and are off by at most |d|)
 * plus |q|·|d − half(d)| ≤ 2^−11·|q·d| from the half scale.
 *
 * Inputs must be finite and their scales within the half range (|d| < 65520); the caller
 * (gguf.ts) checks this and names the tensor.
 */
import { halfBits, halfValue } from './dtype.js';

export type GgmlQuantType = 'Q8_0' | 'Q4_0';

/** values per block (QK8_0 = QK4_0 = 32) */
export const QK = 32;

/** bytes per block: a half scale and the quants */
export const QUANT_BLOCK_BYTES: Record<GgmlQuantType, number> = { Q8_0: 2 + QK, Q4_0: 2 + QK / 2 };

const f32 = Math.fround;

/** C's roundf: to nearest, halves away from zero (exact: |v| + 0.5 is exact in a double). */
function roundf(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

function blocksOf(n: number): number {
  if (n % QK !== 0) throw new Error(`${n} values are not a whole number of ${QK}-value blocks`);
  return n / QK;
}

function putHalf(out: Uint8Array, at: number, x: number): void {
  const h = halfBits(x);
  out[at] = h & 0xff;
  out[at + 1] = h >>> 8;
}

export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const nb = blocksOf(x.length);
  const out = new Uint8Array(nb * QUANT_BLOCK_BYTES.Q8_0);
  for (let i = 0; i < nb; i++) {
    const o = i * QK;
    const p = i * QUANT_BLOCK_BYTES.Q8_0;
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[o + j]));
    const d = f32(amax / 127);
    const id = d !== 0 ? f32(1 / d) : 0;
    putHalf(out, p, d);
    for (let j = 0; j < QK; j++) out[p + 2 + j] = roundf(f32(x[o + j] * id)) & 0xff; // int8, two's complement
  }
  return out;
}

export function quantizeQ4_0(x: Float32Array): Uint8Array {
  const nb = blocksOf(x.length);
  const out = new Uint8Array(nb * QUANT_BLOCK_BYTES.Q4_0);
  for (let i = 0; i < nb; i++) {
    const o = i * QK;
    const p = i * QUANT_BLOCK_BYTES.Q4_0;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = x[o + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = f32(max / -8); // an all-zero block gives −0, stored as 0x8000 as in C
    const id = d !== 0 ? f32(1 / d) : 0;
    putHalf(out, p, d);
    for (let j = 0; j < QK / 2; j++) {
      const q0 = Math.min(15, Math.trunc(f32(f32(x[o + j] * id) + 8.5)));
      const q1 = Math.min(15, Math.trunc(f32(f32(x[o + QK / 2 + j] * id) + 8.5)));
      out[p + 2 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}

function blocksIn(bytes: Uint8Array, type: GgmlQuantType): number {
  const size = QUANT_BLOCK_BYTES[type];
  if (bytes.length % size !== 0) throw new Error(`${bytes.length} bytes are not a whole number of ${type} blocks (${size} bytes each)`);
  return bytes.length / size;
}

export function dequantizeQ8_0(bytes: Uint8Array): Float32Array {
  const nb = blocksIn(bytes, 'Q8_0');
  const out = new Float32Array(nb * QK);
  for (let i = 0; i < nb; i++) {
    const p = i * QUANT_BLOCK_BYTES.Q8_0;
    const d = halfValue(bytes[p] | (bytes[p + 1] << 8));
    for (let j = 0; j < QK; j++) out[i * QK + j] = ((bytes[p + 2 + j] << 24) >> 24) * d;
  }
  return out;
}

export function dequantizeQ4_0(bytes: Uint8Array): Float32Array {
  const nb = blocksIn(bytes, 'Q4_0');
  const out = new Float32Array(nb * QK);
  for (let i = 0; i < nb; i++) {
    const p = i * QUANT_BLOCK_BYTES.Q4_0;
    const d = halfValue(bytes[p] | (bytes[p + 1] << 8));
    for (let j = 0; j < QK / 2; j++) {
      const b = bytes[p + 2 + j];
      out[i * QK + j] = ((b & 0x0f) - 8) * d;
      out[i * QK + QK / 2 + j] = ((b >> 4) - 8) * d;
    }
  }
  return out;
}

export function quantizeBlocks(type: GgmlQuantType, x: Float32Array): Uint8Array {
  return type === 'Q8_0' ? quantizeQ8_0(x) : quantizeQ4_0(x);
}

export function dequantizeBlocks(type: GgmlQuantType, bytes: Uint8Array): Float32Array {
  return type === 'Q8_0' ? dequantizeQ8_0(bytes) : dequantizeQ4_0(bytes);
}

/** Whether a block whose largest magnitude is `maxAbs` has a scale that fits in a half (65520 rounds to inf). */
export function quantScaleFits(type: GgmlQuantType, maxAbs: number): boolean {
  return Number.isFinite(maxAbs) && Math.fround(maxAbs / (type === 'Q8_0' ? 127 : 8)) < 65520;
}
