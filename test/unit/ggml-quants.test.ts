/**
 * ggml's Q8_0 and Q4_0 blocks: bytes of hand-computed blocks (ggml-quants.c's
 * quantize_row_q8_0_ref / quantize_row_q4_0_ref worked through by hand: the rounding rule, the
 * nibble order, the half scale), the quantization error within each format's bound on a large
 * sample, and which tensors of a GGUF file get which type. The k-quants (Q4_K, Q6_K) and Q5_0:
 * hand-built blocks read back by hand, and the bytes ggml's own reference quantizers and
 * dequantizers produce for a fixed input (see KQUANT_REFERENCE).
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  dequantizeQ4_0,
  dequantizeQ4_K,
  dequantizeQ5_0,
  dequantizeQ6_K,
  dequantizeQ8_0,
  quantizeQ4_0,
  quantizeQ4_K,
  quantizeQ5_0,
  quantizeQ6_K,
  quantizeQ8_0,
  quantScaleFits,
  QUANT_BLOCK_BYTES,
} from '../../src/main/engine/ggml-quants.js';
import { ggufTensorBytes, ggufTensorType, layoutGguf, useMoreBits } from '../../src/main/engine/gguf.js';
import { halfBits, halfValue } from '../../src/main/engine/dtype.js';

/** 32 values: `head` then zeros */
const block = (head: number[]) => Float32Array.from({ length: 32 }, (_, j) => head[j] ?? 0);
const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');

describe('Q8_0: f16 d = amax/127, then 32 int8 roundf(x · (1/d))', () => {
  it('a block with amax 127 (d = 1, half 0x3C00): halves round away from zero, negatives in two\'s complement', () => {
    const x = block([127, 2.5, -2.5, 0.5, -0.5, 1.49, -1.5, 0, 100.4, -100.6]);
    const q = quantizeQ8_0(x);
    expect(q.length).toBe(34);
    // d: 00 3c; 127 → 7f; 2.5 → 3 (ties to even would give 2); −2.5 → −3 = fd; 0.5 → 1; −0.5 → −1 = ff;
    // 1.49 → 1; −1.5 → −2 = fe; 0 → 0; 100.4 → 100 = 64; −100.6 → −101 = 9b; the rest 0
    expect(hex(q)).toBe(['00 3c', '7f 03 fd 01 ff 01 fe 00 64 9b', ...Array(22).fill('00')].join(' '));
    expect([...dequantizeQ8_0(q)].slice(0, 10)).toEqual([127, 3, -3, 1, -1, 1, -2, 0, 100, -101]);
  });

  it('a scale that is not a half: the quants use d in float32, the stored half rounds it, dequantization uses the half', () => {
    // amax 1: d = fround(1/127) = 0.0078740157, 1/d = 127 exactly in float32; half(d) =
    // 2^-7 · (1 + 8/1024) = 0.00787353515625, bits 0 01000 0000001000 = 0x2008
    const q = quantizeQ8_0(block([1, -0.25, 0.5]));
    // 1·127 = 127 → 7f; −0.25·127 = −31.75 → −32 = e0; 0.5·127 = 63.5 → 64 = 40 (away from zero)
    expect(hex(q.subarray(0, 5))).toBe('08 20 7f e0 40');
    const back = dequantizeQ8_0(q);
    expect(back[0]).toBe(127 * 0.00787353515625); // 0.99993896…: off by 127·(d − half(d)), not by d/2
    expect(back[1]).toBe(-32 * 0.00787353515625);
  });

  it('the quants come from x·(1/d) in float32, not x/d: the two differ next to a half', () => {
    // amax = f32(1/7), d = f32(amax/127); for x = 0.0016872891 (a float32), f32(x · f32(1/d)) is
    // 1.4999999 → 1 while x/d is 1.5 → 2; likewise 0.0028121485 → 2.4999998 → 2 (x/d: 3)
    const q = quantizeQ8_0(block([1 / 7, 0.0016872890992090106, 0.0028121485374867916]));
    expect([...q.subarray(2, 5)]).toEqual([127, 1, 2]);
  });

  it('an all-zero block is d = 0 and zero quants', () => {
    expect([...quantizeQ8_0(new Float32Array(32))]).toEqual(new Array(34).fill(0));
  });
});

describe('Q4_0: f16 d = max/−8 (max: the value of largest magnitude, signed), then 16 bytes of nibbles min(15, trunc(x/d + 8.5))', () => {
  it('max −8 (d = 1): element j in the low nibble of byte j, element j+16 in its high nibble', () => {
    const x = block([-8, 7, 0, 0.49, 0.5, -0.5, -0.51, 3.2]);
    x[16] = 1;
    x[17] = -1;
    x[18] = 7.9; // 7.9 + 8.5 = 16.4 → 16 → clipped to 15
    const q = quantizeQ4_0(x);
    expect(q.length).toBe(18);
    // nibbles low (j < 16): 0 15 8 8 9 8 7 11 8…; high (j ≥ 16): 9 7 15 8…
    expect(hex(q)).toBe(['00 3c', '90 7f f8 88 89 88 87 8b', ...Array(8).fill('88')].join(' '));
    const back = dequantizeQ4_0(q);
    expect([...back.subarray(0, 8)]).toEqual([-8, 7, 0, 0, 1, 0, -1, 3]);
    expect([...back.subarray(16, 19)]).toEqual([1, -1, 7]);
  });

  it('a positive max gives a negative scale; the value at −max clips to 15 and is off by |d|', () => {
    const q = quantizeQ4_0(block([8, -8, 4]));
    // d = 8/−8 = −1 (half bc00); 8 → trunc(−8 + 8.5) = 0; −8 → 16 → 15; 4 → trunc(4.5) = 4
    expect(hex(q)).toBe(['00 bc', '80 8f 84', ...Array(13).fill('88')].join(' '));
    expect([...dequantizeQ4_0(q).subarray(0, 3)]).toEqual([8, -7, 4]);
  });

  it('an all-zero block: d = 0/−8 = −0 (half 0x8000, as C computes it), every nibble 8', () => {
    expect(hex(quantizeQ4_0(new Float32Array(32)))).toBe(['00 80', ...Array(16).fill('88')].join(' '));
  });
});

describe('quantization error within each format\'s bound', () => {
  // 4096 blocks of Gaussian weights (Box–Muller over an LCG), each with a few outliers and its own scale
  const n = 4096 * 32;
  const x = new Float32Array(n);
  let s = 12345;
  const u = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) + 0.5) / 2 ** 32;
  for (let i = 0; i < n; i++) {
    const g = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
    const scale = 10 ** (((i >> 5) % 9) - 6); // blocks from 1e-6 to 1e2: half subnormal scales too
    x[i] = (u() < 0.02 ? 8 * g : g) * scale;
  }
  const HALF_REL = 2 ** -11; // a normal half's relative rounding

  it('Q8_0: |x − x̂| ≤ d/2 + 127·|d − half(d)| for every value; the bound is nearly reached', () => {
    const q = quantizeQ8_0(x);
    const back = dequantizeQ8_0(q);
    let worst = 0;
    let over = -Infinity; // the largest error − bound
    for (let b = 0; b < n / 32; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
      const d = Math.fround(amax / 127);
      const dh = halfValue(q[b * 34] | (q[b * 34 + 1] << 8));
      const bound = d / 2 + 127 * Math.abs(d - dh) + 1e-6 * amax;
      for (let j = 0; j < 32; j++) {
        const e = Math.abs(x[b * 32 + j] - back[b * 32 + j]);
        over = Math.max(over, e - bound);
        if (dh >= 2 ** -14) worst = Math.max(worst, e / d); // normal half scales
      }
      if (d >= 2 ** -14) over = Math.max(over, Math.abs(d - dh) - d * HALF_REL);
    }
    expect(over).toBeLessThanOrEqual(0);
    expect(worst).toBeGreaterThan(0.45); // measured 0.544: rounding error d/2 plus a little of the half scale's
    expect(worst).toBeLessThan(0.5 + 127 * HALF_REL);
  });

  it('Q4_0: |x − x̂| ≤ |d|/2 (+ half rounding) except where x/d > 7.5 (the side opposite max, clipped to 15), there ≤ |d|', () => {
    const q = quantizeQ4_0(x);
    const back = dequantizeQ4_0(q);
    let clipped = 0;
    let over = -Infinity;
    for (let b = 0; b < n / 32; b++) {
      let amax = 0;
      let max = 0;
      for (let j = 0; j < 32; j++) {
        const v = x[b * 32 + j];
        if (amax < Math.abs(v)) [amax, max] = [Math.abs(v), v];
      }
      const d = Math.fround(max / -8);
      const dh = halfValue(q[b * 18] | (q[b * 18 + 1] << 8));
      const slack = 8 * Math.abs(d - dh) + 1e-6 * amax;
      for (let j = 0; j < 32; j++) {
        const v = x[b * 32 + j];
        const e = Math.abs(v - back[b * 32 + j]);
        if (v / d > 7.5) {
          clipped++;
          over = Math.max(over, e - (Math.abs(d) + slack));
        } else {
          over = Math.max(over, e - (Math.abs(d) / 2 + slack));
        }
      }
    }
    expect(over).toBeLessThanOrEqual(0);
    expect(clipped).toBeGreaterThan(0); // the exception happens in this sample
  });

  it('scales beyond the half range are detected (the caller refuses them); lengths must be whole blocks', () => {
    expect(quantScaleFits('Q8_0', 65504 * 127)).toBe(true);
    expect(quantScaleFits('Q8_0', 65520 * 127)).toBe(false);
    expect(quantScaleFits('Q4_0', 65504 * 8)).toBe(true);
    expect(quantScaleFits('Q4_0', 65520 * 8)).toBe(false);
    expect(quantScaleFits('Q8_0', NaN)).toBe(false);
    expect(() => quantizeQ8_0(new Float32Array(48))).toThrow(/not a whole number of 32-value blocks/);
    expect(() => dequantizeQ4_0(new Uint8Array(QUANT_BLOCK_BYTES.Q4_0 + 1))).toThrow(/not a whole number of Q4_0 blocks/);
  });
});

describe('which tensors get which type (llama.cpp\'s converter and llama-quantize)', () => {
  it('1-D F32; Q8_0 everywhere else; Q4_0 with the output (or tied token_embd) at Q8_0; rows not of whole blocks F16', () => {
    const t = (name: string, shape: number[], file: 'F32' | 'F16' | 'Q8_0' | 'Q4_0', tied = false) => ggufTensorType(name, shape, file, tied);
    expect(t('blk.0.attn_norm.weight', [64], 'Q4_0')).toEqual({ type: 'F32', fallback: false });
    expect(t('blk.0.attn_q.bias', [64], 'Q8_0')).toEqual({ type: 'F32', fallback: false });
    expect(t('blk.0.attn_q.weight', [64, 64], 'Q8_0')).toEqual({ type: 'Q8_0', fallback: false });
    expect(t('token_embd.weight', [100, 64], 'Q8_0', true)).toEqual({ type: 'Q8_0', fallback: false });
    expect(t('blk.0.ffn_up.weight', [96, 64], 'Q4_0')).toEqual({ type: 'Q4_0', fallback: false });
    expect(t('output.weight', [100, 64], 'Q4_0')).toEqual({ type: 'Q8_0', fallback: false }); // rows of 64: no Q6_K
    expect(t('output.weight', [100, 512], 'Q4_0')).toEqual({ type: 'Q6_K', fallback: false }); // whole super-blocks: Q6_K
    expect(t('token_embd.weight', [100, 64], 'Q4_0', false)).toEqual({ type: 'Q4_0', fallback: false });
    expect(t('token_embd.weight', [100, 64], 'Q4_0', true)).toEqual({ type: 'Q8_0', fallback: false });
    expect(t('blk.0.ffn_down.weight', [64, 80], 'Q4_0')).toEqual({ type: 'F16', fallback: true }); // ne[0] = 80
    expect(t('blk.0.ffn_down.weight', [64, 80], 'F16')).toEqual({ type: 'F16', fallback: false });
    expect(t('blk.0.ffn_down.weight', [80, 64], 'Q8_0')).toEqual({ type: 'Q8_0', fallback: false }); // rows of 64
  });

  it('sizes: (values / 32) blocks of 34 (Q8_0) or 18 (Q4_0) bytes; a row that is not whole blocks is refused', () => {
    expect(ggufTensorBytes('Q8_0', [3, 64])).toBe(3 * 2 * 34);
    expect(ggufTensorBytes('Q4_0', [3, 64])).toBe(3 * 2 * 18);
    expect(() => ggufTensorBytes('Q4_0', [64, 80])).toThrow(/80 values is not a whole number of 32-value blocks/);
    expect(() => layoutGguf([], [{ name: 'w', type: 'Q8_0', shape: [2, 48] }])).toThrow(/rows of 48 values are not whole Q8_0 blocks of 32/);
    const l = layoutGguf([], [{ name: 'a', type: 'Q4_0', shape: [1, 32] }, { name: 'b', type: 'Q8_0', shape: [1, 32] }]);
    expect(l.byteLengths).toEqual([18, 34]);
    expect(l.offsets).toEqual([0, 32]); // 18 bytes padded to the 32-byte alignment
  });
});

// ---------------------------------------------------------------------------------------------
// k-quants and Q5_0

describe('Q4_K, Q6_K and Q5_0 blocks, read by hand', () => {
  const half = (bytes: Uint8Array, at: number, v: number) => {
    const h = halfBits(v);
    bytes[at] = h & 0xff;
    bytes[at + 1] = h >> 8;
  };

  it('Q4_K: d·sc·q − dmin·m per sub-block of 32; 6-bit scales packed across the 12 bytes; values l and l+32 share a byte', () => {
    const b = new Uint8Array(QUANT_BLOCK_BYTES.Q4_K);
    half(b, 0, 1); // d
    half(b, 2, 0.5); // dmin
    // sub-block 1: sc 3, m 2 (low 6 bits of bytes 4+1 and 4+5); sub-block 4: sc 37 = 0b10_0101, m 19 = 0b01_0011:
    // their low nibbles in byte 4+8, their top 2 bits in bits 6–7 of bytes 4+0 and 4+4
    b[4 + 1] = 3;
    b[4 + 5] = 2;
    b[4 + 8] = 0x5 | (0x3 << 4);
    b[4 + 0] = 0b10 << 6;
    b[4 + 4] = 0b01 << 6;
    // sub-block 1 is the high nibbles of qs[0..31]; sub-block 4 the low nibbles of qs[64..95]
    b[16 + 0] = 9 << 4;
    b[16 + 64] = 7;
    const x = dequantizeQ4_K(b);
    expect(x[32]).toBe(1 * 3 * 9 - 0.5 * 2); // 26
    expect(x[128]).toBe(1 * 37 * 7 - 0.5 * 19); // 249.5
    expect(x[0]).toBe(0); // sub-block 0: sc 0, m 0 (its top bits are sub-block 4's)
  });

  it('Q6_K: d·scale·(q − 32) per sub-block of 16; low 4 bits in ql, top 2 in qh, four values to a qh byte', () => {
    const b = new Uint8Array(QUANT_BLOCK_BYTES.Q6_K);
    half(b, 208, 0.25); // d
    b[192 + 2] = 0xfe; // sub-block 2 (values 32..47): scale −2
    b[192 + 12] = 5; // sub-block 12 (values 192..207): scale 5
    // value 32: ql[32] low nibble, qh[0] bits 2–3; q = 0x3 | (2 << 4) = 35 → 35 − 32 = 3
    b[32] = 0x3;
    b[128 + 0] = 2 << 2;
    // value 192 = 128 + 64: second half, ql[64 + 0] high nibble, qh[32 + 0] bits 4–5; q = 0xa | (1 << 4) = 26 → −6
    b[64] = 0xa << 4;
    b[128 + 32] = 1 << 4;
    const x = dequantizeQ6_K(b);
    expect(x[32]).toBe(0.25 * -2 * 3); // −1.5
    expect(x[192]).toBe(0.25 * 5 * -6); // −7.5
    expect(x[0]).toBe(-0); // scale 0: 0.25 · 0 · (0 − 32) is −0 in float32, as in C
  });

  it('Q5_0: the fifth bit of value j in bit j of qh, of value j+16 in bit j+16; x = (q − 16)·d', () => {
    const q = quantizeQ5_0(Float32Array.from({ length: 32 }, (_, j) => (j === 0 ? -16 : j === 1 ? 15 : j === 16 ? 3 : j === 17 ? -1 : 0)));
    // max −16 → d = 1; −16 → 0; 15 → trunc(31.5) = 31 (bit 4 set); 3 → 19 (bit 4 set); −1 → 15
    expect(hex(q.subarray(0, 2))).toBe('00 3c');
    const qh = q[2] | (q[3] << 8) | (q[4] << 16) | (q[5] << 24);
    expect(qh).toBe((1 << 1) | (1 << 16) | (0xffff & ~0b11) | ((0xfffc & ~0b10) << 16)); // zeros are 16: bit 4 set everywhere else
    expect([...dequantizeQ5_0(q).subarray(0, 2)]).toEqual([-16, 15]);
    expect([...dequantizeQ5_0(q).subarray(16, 18)]).toEqual([3, -1]);
  });
});

/**
 * What ggml-quants.c's own reference code gives for KQUANT_INPUT: its quantize_row_q4_K_ref,
 * quantize_row_q6_K_ref and quantize_row_q5_0_ref, and the dequantize_row_* of what they wrote, as
 * fetched from ggml and built with gcc 12.2 -O2 -ffp-contract=off on x86-64 (no fused
 * multiply-add, as in a build without -march=native): the first 16 hex digits of the SHA-256 of
 * the blocks, and of the float32 values read back. Ours are transcriptions, in float32 step by
 * step; a single bit of any scale or quant would change the hash (a transcription that kept the
 * search's first (max − min) instead of the one each better candidate moves it to differed in
 * 737 of 1280 Q4_K blocks).
 */
const KQUANT_REFERENCE = {
  Q4_K: { blocks: 'bdb971faddffe433', values: '48ef3447a248ea91' },
  Q6_K: { blocks: '334ab63a28b942c2', values: 'e2f60d53bf64ff75' },
  Q5_0: { blocks: '76e35edb19c7cbed', values: 'dd5271dc5d3bf5a4' },
};

/** 16 super-blocks of seeded Gaussian weights (σ 0.02), and edge cases: zeros, a constant, all positive, an outlier, tiny values, values on a grid (ties) */
function kquantInput(): Float32Array {
  let seed = 20261203;
  const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const x = new Float32Array(16 * 256);
  for (let i = 0; i < x.length; i++) x[i] = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand()) * 0.02;
  x.fill(0, 256, 512);
  x.fill(0.5, 512, 768);
  for (let i = 768; i < 1024; i++) x[i] = Math.abs(x[i]) + 0.01;
  x[1100] = 3.5;
  for (let i = 1280; i < 1536; i++) x[i] *= 1e-6;
  for (let i = 1536; i < 1792; i++) x[i] = Math.round(x[i] * 200) / 8;
  return x;
}

describe("k-quants and Q5_0 as ggml's reference code writes and reads them", () => {
  const sha = (b: Uint8Array | Float32Array) => createHash('sha256').update(Buffer.from(b.buffer, b.byteOffset, b.byteLength)).digest('hex').slice(0, 16);
  const x = kquantInput();
  it.each([
    ['Q4_K', quantizeQ4_K, dequantizeQ4_K],
    ['Q6_K', quantizeQ6_K, dequantizeQ6_K],
    ['Q5_0', quantizeQ5_0, dequantizeQ5_0],
  ] as const)('%s: the same blocks bit for bit, and the same values read back', (type, quantize, dequantize) => {
    const q = quantize(x);
    expect(q.length).toBe((x.length / (type === 'Q5_0' ? 32 : 256)) * QUANT_BLOCK_BYTES[type]);
    expect(sha(q)).toBe(KQUANT_REFERENCE[type].blocks);
    const back = dequantize(q);
    expect(sha(back)).toBe(KQUANT_REFERENCE[type].values);
    // and they approximate the input: the worst error over the Gaussian super-blocks, within a
    // fraction of σ (measured: Q4_K 0.0040, Q6_K 0.0010, Q5_0 0.0025; σ 0.02)
    let worst = 0;
    for (let i = 2048; i < x.length; i++) worst = Math.max(worst, Math.abs(back[i] - x[i]));
    expect(worst).toBeLessThan({ Q4_K: 0.005, Q6_K: 0.0015, Q5_0: 0.003 }[type]);
  });

  it('all-zero super-blocks are zero, and lengths must be whole super-blocks', () => {
    expect([...dequantizeQ4_K(quantizeQ4_K(new Float32Array(256)))].every((v) => v === 0)).toBe(true);
    expect([...quantizeQ6_K(new Float32Array(256))].every((b) => b === 0)).toBe(true);
    expect(() => quantizeQ4_K(new Float32Array(288))).toThrow(/not a whole number of 256-value blocks/);
  });
});

describe("Q4_K_M: llama-quantize's choice of type per tensor", () => {
  it('use_more_bits: the first and last eighth of the layers, and every third one from the first eighth on', () => {
    // 32 layers: n/8 = 4, 7n/8 = 28; (i − 4) % 3 == 2 → 6, 9, …, 27
    expect(Array.from({ length: 32 }, (_, i) => i).filter((i) => useMoreBits(i, 32))).toEqual([0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
    // 22 layers (TinyLlama): n/8 = 2, 7n/8 = 19
    expect(Array.from({ length: 22 }, (_, i) => i).filter((i) => useMoreBits(i, 22))).toEqual([0, 1, 4, 7, 10, 13, 16, 19, 20, 21]);
  });

  it('Q4_K; Q6_K for the output and the picked layers\' attn_v and ffn_down; rows not whole super-blocks fall back to Q5_0 / Q8_0, then F16', () => {
    const t = (name: string, shape: number[], tied = false) => ggufTensorType(name, shape, 'Q4_K_M', tied, 32);
    expect(t('blk.5.attn_q.weight', [4096, 4096])).toEqual({ type: 'Q4_K', fallback: false });
    expect(t('blk.5.attn_v.weight', [1024, 4096])).toEqual({ type: 'Q4_K', fallback: false });
    expect(t('blk.6.attn_v.weight', [1024, 4096])).toEqual({ type: 'Q6_K', fallback: false });
    expect(t('blk.31.ffn_down.weight', [4096, 11008])).toEqual({ type: 'Q6_K', fallback: false }); // 11008 = 43 · 256
    expect(t('blk.31.ffn_up.weight', [11008, 4096])).toEqual({ type: 'Q4_K', fallback: false });
    expect(t('output.weight', [32000, 4096])).toEqual({ type: 'Q6_K', fallback: false });
    expect(t('token_embd.weight', [32000, 4096])).toEqual({ type: 'Q4_K', fallback: false });
    expect(t('token_embd.weight', [32000, 4096], true)).toEqual({ type: 'Q6_K', fallback: false }); // tied: the output
    expect(t('blk.0.ffn_norm.weight', [4096])).toEqual({ type: 'F32', fallback: false });
    // Qwen2-0.5B's hidden size 896 = 28 · 32: not whole super-blocks
    expect(t('blk.5.attn_q.weight', [896, 896])).toEqual({ type: 'Q5_0', fallback: true });
    expect(t('blk.6.attn_v.weight', [128, 896])).toEqual({ type: 'Q8_0', fallback: true });
    expect(t('blk.5.attn_q.weight', [80, 80])).toEqual({ type: 'F16', fallback: true });
    // sizes: 144 bytes a Q4_K super-block, 210 a Q6_K one, 22 a Q5_0 block
    expect(ggufTensorBytes('Q4_K', [2, 512])).toBe(2 * 2 * 144);
    expect(ggufTensorBytes('Q6_K', [2, 512])).toBe(2 * 2 * 210);
    expect(ggufTensorBytes('Q5_0', [2, 64])).toBe(2 * 2 * 22);
  });
});
