/**
 * ggml's block quantizations, laid out as GGUF files hold them, written bit for bit as
 * ggml-quants.c's reference quantizers write them (quantize_row_*_ref: what llama-quantize and
 * convert_hf_to_gguf.py produce without an importance matrix) and read back as its dequantizers
 * read them: the 32-value blocks Q8_0, Q4_0 and Q5_0, and the 256-value super-blocks ("k-quants")
 * Q4_K and Q6_K that a Q4_K_M file is made of.
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
 *   block_q5_0, 22 bytes: f16 d, u8 qh[4], u8 qs[16]   as Q4_0 with a fifth bit per value in qh
 *     (bit j of the little-endian u32: element j; bit j+16: element j+16): d = max / −16,
 *     q = min(31, trunc(x·(1/d) + 16.5)), x = (q − 16)·d.
 *
 * The k-quants search their scales (make_qkx2_quants, make_qx_quants) and are transcribed
 * operation by operation in float32, each product and sum rounded as C rounds it (no fused
 * multiply-add: a build of llama.cpp with -march=native may contract some of them and then
 * differ in the last bit of a few scales — a different encoding, equally valid):
 *
 *   block_q4_K, 144 bytes: f16 d, f16 dmin, u8 scales[12], u8 qs[128]
 *     8 sub-blocks of 32; sub-block j has a 6-bit scale sc_j and min m_j (packed in `scales`:
 *     for j < 4 the low 6 bits of bytes j and j+4; for j ≥ 4 the nibbles of byte j+4 and the
 *     top 2 bits of bytes j−4 and j), x = d·sc_j·q − dmin·m_j, q in 0..15; the quants of each
 *     64 values: value l in the low nibble of byte l, value l+32 in its high nibble.
 *   block_q6_K, 210 bytes: u8 ql[128], u8 qh[64], i8 scales[16], f16 d
 *     16 sub-blocks of 16, x = d·scales[j]·(q − 32), q in 0..63: per 128 values, the low 4 bits
 *     of values l, l+32, l+64, l+96 in ql[l] low, ql[l+32] low, ql[l] high, ql[l+32] high, and
 *     their top 2 bits in qh[l] bits 0–1, 2–3, 4–5, 6–7.
 *
 * Inputs must be finite and their scales within the half range (|d| < 65520); the caller
 * (gguf.ts) checks this and names the tensor.
 */
import { halfBits, halfValue } from './dtype.js';

export type GgmlQuantType = 'Q8_0' | 'Q4_0' | 'Q5_0' | 'Q4_K' | 'Q6_K';

/** values per block (QK8_0 = QK4_0 = QK5_0 = 32) */
export const QK = 32;
/** values per k-quant super-block (QK_K) */
export const QK_K = 256;

/** values per block of each type */
export const QUANT_BLOCK_VALUES: Record<GgmlQuantType, number> = { Q8_0: QK, Q4_0: QK, Q5_0: QK, Q4_K: QK_K, Q6_K: QK_K };

/** bytes per block: the scales and the quants */
export const QUANT_BLOCK_BYTES: Record<GgmlQuantType, number> = { Q8_0: 2 + QK, Q4_0: 2 + QK / 2, Q5_0: 2 + 4 + QK / 2, Q4_K: 2 + 2 + 12 + QK_K / 2, Q6_K: QK_K / 2 + QK_K / 4 + QK_K / 16 + 2 };

const f32 = Math.fround;

/** C's roundf: to nearest, halves away from zero (exact: |v| + 0.5 is exact in a double). */
function roundf(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

function blocksOf(n: number, size = QK): number {
  if (n % size !== 0) throw new Error(`${n} values are not a whole number of ${size}-value blocks`);
  return n / size;
}

/** The half at `at`, little-endian, as float. */
function getHalf(bytes: Uint8Array, at: number): number {
  return halfValue(bytes[at] | (bytes[at + 1] << 8));
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

export function quantizeQ5_0(x: Float32Array): Uint8Array {
  const nb = blocksOf(x.length);
  const size = QUANT_BLOCK_BYTES.Q5_0;
  const out = new Uint8Array(nb * size);
  for (let i = 0; i < nb; i++) {
    const o = i * QK;
    const p = i * size;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = x[o + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = f32(max / -16);
    const id = d !== 0 ? f32(1 / d) : 0;
    putHalf(out, p, d);
    let qh = 0;
    for (let j = 0; j < QK / 2; j++) {
      const q0 = Math.min(31, Math.trunc(f32(f32(x[o + j] * id) + 16.5)));
      const q1 = Math.min(31, Math.trunc(f32(f32(x[o + QK / 2 + j] * id) + 16.5)));
      out[p + 6 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
      qh |= ((q0 & 0x10) >> 4) << j;
      qh |= ((q1 & 0x10) >> 4) << (j + QK / 2);
    }
    out[p + 2] = qh & 0xff;
    out[p + 3] = (qh >>> 8) & 0xff;
    out[p + 4] = (qh >>> 16) & 0xff;
    out[p + 5] = (qh >>> 24) & 0xff;
  }
  return out;
}

// ------------------------------------------------------------------------------ k-quants

/** ggml's nearest_int: round half to even, by adding 1.5·2^23 in float32 (|v| < 2^22). */
function nearestInt(v: number): number {
  return f32(v + 12582912) - 12582912;
}

/**
 * make_qkx2_quants: a scale and a (non-positive) min for n values as q in 0..nmax with
 * x ≈ scale·q + min, searching nstep + 1 scales around nmax/(max − min) for the least weighted
 * squared error. Writes the quants to L; returns [scale, −min].
 */
function makeQkx2Quants(n: number, nmax: number, x: Float32Array, xo: number, weights: Float32Array, L: Uint8Array, lo: number, Laux: Uint8Array, rmin: number, rdelta: number, nstep: number): [number, number] {
  let min = x[xo];
  let max = x[xo];
  let sumW = weights[0];
  let sumX = f32(sumW * x[xo]);
  for (let i = 1; i < n; i++) {
    const v = x[xo + i];
    if (v < min) min = v;
    if (v > max) max = v;
    const w = weights[i];
    sumW = f32(sumW + w);
    sumX = f32(sumX + f32(w * v));
  }
  if (min > 0) min = 0;
  if (max === min) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    return [0, -min];
  }
  let iscale = f32(nmax / f32(max - min));
  let scale = f32(1 / iscale);
  let bestMad = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.max(0, Math.min(nmax, nearestInt(f32(iscale * f32(x[xo + i] - min)))));
    L[lo + i] = l;
    const diff = f32(f32(f32(scale * l) + min) - x[xo + i]);
    bestMad = f32(bestMad + f32(weights[i] * f32(diff * diff)));
  }
  for (let is = 0; is <= nstep; is++) {
    // (max − min) with the min found so far: a better candidate moves the range the next ones try
    iscale = f32(f32(f32(rmin + f32(rdelta * is)) + nmax) / f32(max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.max(0, Math.min(nmax, nearestInt(f32(iscale * f32(x[xo + i] - min)))));
      Laux[i] = l;
      const wl = f32(weights[i] * l);
      sumL = f32(sumL + wl);
      sumL2 = f32(sumL2 + f32(wl * l));
      sumXL = f32(sumXL + f32(wl * x[xo + i]));
    }
    const D = f32(f32(sumW * sumL2) - f32(sumL * sumL));
    if (D > 0) {
      let thisScale = f32(f32(f32(sumW * sumXL) - f32(sumX * sumL)) / D);
      let thisMin = f32(f32(f32(sumL2 * sumX) - f32(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = f32(sumXL / sumL2);
      }
      let mad = 0;
      for (let i = 0; i < n; i++) {
        const diff = f32(f32(f32(thisScale * Laux[i]) + thisMin) - x[xo + i]);
        mad = f32(mad + f32(weights[i] * f32(diff * diff)));
      }
      if (mad < bestMad) {
        for (let i = 0; i < n; i++) L[lo + i] = Laux[i];
        bestMad = mad;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  return [scale, -min];
}

/**
 * make_qx_quants with rmse_type 1 and no importance: a signed scale for n values as q in
 * −nmax..nmax−1 (stored + nmax in L), the least x²-weighted squared error over 19 scales
 * around −nmax/max (max: the value of largest magnitude, signed).
 */
function makeQxQuants(n: number, nmax: number, x: Float32Array, xo: number, L: Int8Array, lo: number): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i];
    }
  }
  if (amax < f32(1e-30)) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    return 0;
  }
  const sums = (iscale: number, store: boolean): [number, number] => {
    let sumlx = 0;
    let suml2 = 0;
    for (let i = 0; i < n; i++) {
      const v = x[xo + i];
      const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f32(iscale * v))));
      if (store) L[lo + i] = l + nmax;
      const w = f32(v * v);
      sumlx = f32(sumlx + f32(f32(w * v) * l));
      suml2 = f32(suml2 + f32(f32(w * l) * l));
    }
    return [sumlx, suml2];
  };
  let [sumlx, suml2] = sums(f32(-nmax / max), true);
  let scale = f32(sumlx / suml2);
  let best = f32(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    const iscale = f32(-f32(nmax + f32(f32(0.1) * is)) / max);
    [sumlx, suml2] = sums(iscale, false);
    if (suml2 > 0 && f32(sumlx * sumlx) > f32(best * suml2)) {
      sums(iscale, true);
      scale = f32(sumlx / suml2);
      best = f32(scale * sumlx);
    }
  }
  return scale;
}

/** Sub-block j's 6-bit scale and min from a Q4_K block's 12 packed bytes at `at` (get_scale_min_k4). */
function scaleMinK4(j: number, q: Uint8Array, at: number): [number, number] {
  if (j < 4) return [q[at + j] & 63, q[at + j + 4] & 63];
  return [(q[at + j + 4] & 0xf) | ((q[at + j - 4] >> 6) << 4), (q[at + j + 4] >> 4) | ((q[at + j] >> 6) << 4)];
}

export function quantizeQ4_K(x: Float32Array): Uint8Array {
  const nb = blocksOf(x.length, QK_K);
  const size = QUANT_BLOCK_BYTES.Q4_K;
  const out = new Uint8Array(nb * size);
  const L = new Uint8Array(QK_K);
  const Laux = new Uint8Array(32);
  const weights = new Float32Array(32);
  const scales = new Float32Array(8);
  const mins = new Float32Array(8);
  for (let i = 0; i < nb; i++) {
    const o = i * QK_K;
    const p = i * size;
    let maxScale = 0;
    let maxMin = 0;
    for (let j = 0; j < 8; j++) {
      let sumX2 = 0;
      for (let l = 0; l < 32; l++) sumX2 = f32(sumX2 + f32(x[o + 32 * j + l] * x[o + 32 * j + l]));
      const avX = f32(Math.sqrt(f32(sumX2 / 32)));
      for (let l = 0; l < 32; l++) weights[l] = f32(avX + Math.abs(x[o + 32 * j + l]));
      const [scale, min] = makeQkx2Quants(32, 15, x, o + 32 * j, weights, L, 32 * j, Laux, -1, f32(0.1), 20);
      scales[j] = scale;
      mins[j] = min;
      if (scale > maxScale) maxScale = scale;
      if (min > maxMin) maxMin = min;
    }
    const invScale = maxScale > 0 ? f32(63 / maxScale) : 0;
    const invMin = maxMin > 0 ? f32(63 / maxMin) : 0;
    const sc = p + 4; // the 12 packed bytes
    for (let j = 0; j < 8; j++) {
      const ls = Math.min(63, nearestInt(f32(invScale * scales[j])) & 0xff);
      const lm = Math.min(63, nearestInt(f32(invMin * mins[j])) & 0xff);
      if (j < 4) {
        out[sc + j] = ls;
        out[sc + j + 4] = lm;
      } else {
        out[sc + j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
        out[sc + j - 4] |= (ls >> 4) << 6;
        out[sc + j] |= (lm >> 4) << 6;
      }
    }
    putHalf(out, p, f32(maxScale / 63));
    putHalf(out, p + 2, f32(maxMin / 63));
    const d = getHalf(out, p);
    const dmin = getHalf(out, p + 2);
    for (let j = 0; j < 8; j++) {
      const [s, m] = scaleMinK4(j, out, sc);
      const dj = f32(d * s);
      if (dj === 0) continue;
      const dm = f32(dmin * m);
      for (let ii = 0; ii < 32; ii++) L[32 * j + ii] = Math.max(0, Math.min(15, nearestInt(f32(f32(x[o + 32 * j + ii] + dm) / dj))));
    }
    const q = p + 16;
    for (let j = 0; j < QK_K; j += 64) {
      for (let l = 0; l < 32; l++) out[q + j / 2 + l] = L[j + l] | (L[j + l + 32] << 4);
    }
  }
  return out;
}

export function quantizeQ6_K(x: Float32Array): Uint8Array {
  const nb = blocksOf(x.length, QK_K);
  const size = QUANT_BLOCK_BYTES.Q6_K;
  const out = new Uint8Array(nb * size);
  const L = new Int8Array(QK_K);
  const scales = new Float32Array(16);
  for (let i = 0; i < nb; i++) {
    const o = i * QK_K;
    const p = i * size;
    let maxScale = 0;
    let maxAbsScale = 0;
    for (let ib = 0; ib < 16; ib++) {
      const scale = makeQxQuants(16, 32, x, o + 16 * ib, L, 16 * ib);
      scales[ib] = scale;
      if (Math.abs(scale) > maxAbsScale) {
        maxAbsScale = Math.abs(scale);
        maxScale = scale;
      }
    }
    if (maxAbsScale === 0) continue; // all zero, d = 0
    const iscale = f32(-128 / maxScale);
    putHalf(out, p + 208, f32(1 / iscale));
    const sc = p + 192;
    for (let ib = 0; ib < 16; ib++) out[sc + ib] = Math.min(127, nearestInt(f32(iscale * scales[ib]))) & 0xff;
    const d = getHalf(out, p + 208);
    for (let j = 0; j < 16; j++) {
      const dj = f32(d * ((out[sc + j] << 24) >> 24));
      if (dj === 0) continue;
      for (let ii = 0; ii < 16; ii++) L[16 * j + ii] = Math.max(-32, Math.min(31, nearestInt(f32(x[o + 16 * j + ii] / dj)))) + 32;
    }
    for (let j = 0; j < QK_K; j += 128) {
      const ql = p + j / 2;
      const qh = p + 128 + j / 4;
      for (let l = 0; l < 32; l++) {
        const [q1, q2, q3, q4] = [L[j + l], L[j + l + 32], L[j + l + 64], L[j + l + 96]];
        out[ql + l] = (q1 & 0xf) | ((q3 & 0xf) << 4);
        out[ql + l + 32] = (q2 & 0xf) | ((q4 & 0xf) << 4);
        out[qh + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
      }
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
    const d = getHalf(bytes, p);
    for (let j = 0; j < QK; j++) out[i * QK + j] = ((bytes[p + 2 + j] << 24) >> 24) * d;
  }
  return out;
}

export function dequantizeQ4_0(bytes: Uint8Array): Float32Array {
  const nb = blocksIn(bytes, 'Q4_0');
  const out = new Float32Array(nb * QK);
  for (let i = 0; i < nb; i++) {
    const p = i * QUANT_BLOCK_BYTES.Q4_0;
    const d = getHalf(bytes, p);
    for (let j = 0; j < QK / 2; j++) {
      const b = bytes[p + 2 + j];
      out[i * QK + j] = ((b & 0x0f) - 8) * d;
      out[i * QK + QK / 2 + j] = ((b >> 4) - 8) * d;
    }
  }
  return out;
}

export function dequantizeQ5_0(bytes: Uint8Array): Float32Array {
  const nb = blocksIn(bytes, 'Q5_0');
  const size = QUANT_BLOCK_BYTES.Q5_0;
  const out = new Float32Array(nb * QK);
  for (let i = 0; i < nb; i++) {
    const p = i * size;
    const d = getHalf(bytes, p);
    const qh = (bytes[p + 2] | (bytes[p + 3] << 8) | (bytes[p + 4] << 16) | (bytes[p + 5] << 24)) >>> 0;
    for (let j = 0; j < QK / 2; j++) {
      const b = bytes[p + 6 + j];
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      out[i * QK + j] = (((b & 0x0f) | h0) - 16) * d;
      out[i * QK + QK / 2 + j] = (((b >> 4) | h1) - 16) * d;
    }
  }
  return out;
}

export function dequantizeQ4_K(bytes: Uint8Array): Float32Array {
  const nb = blocksIn(bytes, 'Q4_K');
  const size = QUANT_BLOCK_BYTES.Q4_K;
  const out = new Float32Array(nb * QK_K);
  for (let i = 0; i < nb; i++) {
    const p = i * size;
    const d = getHalf(bytes, p);
    const dmin = getHalf(bytes, p + 2);
    for (let j = 0; j < 8; j += 2) {
      const [s1, m1] = scaleMinK4(j, bytes, p + 4);
      const [s2, m2] = scaleMinK4(j + 1, bytes, p + 4);
      const d1 = f32(d * s1);
      const min1 = f32(dmin * m1);
      const d2 = f32(d * s2);
      const min2 = f32(dmin * m2);
      const q = p + 16 + j * 16;
      const y = i * QK_K + j * 32;
      for (let l = 0; l < 32; l++) {
        out[y + l] = f32(d1 * (bytes[q + l] & 0xf)) - min1;
        out[y + 32 + l] = f32(d2 * (bytes[q + l] >> 4)) - min2;
      }
    }
  }
  return out;
}

export function dequantizeQ6_K(bytes: Uint8Array): Float32Array {
  const nb = blocksIn(bytes, 'Q6_K');
  const size = QUANT_BLOCK_BYTES.Q6_K;
  const out = new Float32Array(nb * QK_K);
  for (let i = 0; i < nb; i++) {
    const p = i * size;
    const d = getHalf(bytes, p + 208);
    const sc = (k: number) => (bytes[p + 192 + k] << 24) >> 24;
    for (let n = 0; n < QK_K; n += 128) {
      const ql = p + n / 2;
      const qh = p + 128 + n / 4;
      const s = n / 16;
      const y = i * QK_K + n;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = bytes[qh + l];
        const q1 = ((bytes[ql + l] & 0xf) | ((h & 3) << 4)) - 32;
        const q2 = ((bytes[ql + l + 32] & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((bytes[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((bytes[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
        out[y + l] = f32(d * sc(s + is)) * q1;
        out[y + l + 32] = f32(d * sc(s + is + 2)) * q2;
        out[y + l + 64] = f32(d * sc(s + is + 4)) * q3;
        out[y + l + 96] = f32(d * sc(s + is + 6)) * q4;
      }
    }
  }
  return out;
}

const QUANTIZE: Record<GgmlQuantType, (x: Float32Array) => Uint8Array> = { Q8_0: quantizeQ8_0, Q4_0: quantizeQ4_0, Q5_0: quantizeQ5_0, Q4_K: quantizeQ4_K, Q6_K: quantizeQ6_K };
const DEQUANTIZE: Record<GgmlQuantType, (b: Uint8Array) => Float32Array> = { Q8_0: dequantizeQ8_0, Q4_0: dequantizeQ4_0, Q5_0: dequantizeQ5_0, Q4_K: dequantizeQ4_K, Q6_K: dequantizeQ6_K };

export function quantizeBlocks(type: GgmlQuantType, x: Float32Array): Uint8Array {
  return QUANTIZE[type](x);
}

export function dequantizeBlocks(type: GgmlQuantType, bytes: Uint8Array): Float32Array {
  return DEQUANTIZE[type](bytes);
}

/**
 * Whether a block whose largest magnitude is `maxAbs` has a scale that fits in a half (65520
 * rounds to inf): d = amax/127 (Q8_0), /8 (Q4_0), /16 (Q5_0); a k-quant's half scale is a
 * sub-block scale (at most about range/14 ≤ 2·amax/14 for Q4_K, amax/31 for Q6_K) over 63 (Q4_K)
 * or 128 (Q6_K) — bounded here with a margin.
 */
export function quantScaleFits(type: GgmlQuantType, maxAbs: number): boolean {
  const divisor: Record<GgmlQuantType, number> = { Q8_0: 127, Q4_0: 8, Q5_0: 16, Q4_K: (14 * 63) / 2, Q6_K: 30 * 128 };
  return Number.isFinite(maxAbs) && Math.fround(maxAbs / divisor[type]) < 65520;
}
