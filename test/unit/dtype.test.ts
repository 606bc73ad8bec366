import { describe, expect, it } from 'vitest';
import { DTYPE_BYTES, fromFloat32, isDType, toFloat32, type DType } from '../../src/main/engine/dtype.js';

const u16bytes = (...bits: number[]): Uint8Array => new Uint8Array(new Uint16Array(bits).buffer);
const u16of = (bytes: Uint8Array): number[] => [...new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2)];
const f32 = (...v: number[]): Float32Array => new Float32Array(v);
const bitsOf = (v: Float32Array): number[] => [...new Uint32Array(v.buffer, v.byteOffset, v.length)];

/** Reference rounding of a float32 value to a format with `mantBits` fraction bits, in double arithmetic. */
function refRound(x: number, mantBits: number, minExp: number, overflowAt: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  if (a === 0 || a === Infinity) return x;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  e = Math.max(e, minExp);
  const ulp = 2 ** (e - mantBits);
  const q = a / ulp; // exact: a power-of-two scale
  const fl = Math.floor(q);
  const diff = q - fl;
  const r = diff > 0.5 || (diff === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  let out = r * ulp;
  if (out >= overflowAt) out = Infinity;
  return x < 0 || Object.is(x, -0) ? -out : out;
}
const refHalf = (x: number): number => refRound(x, 10, -14, 65536);
const refBf16 = (x: number): number => refRound(x, 7, -126, 2 ** 128);

function sameValue(a: number, b: number): boolean {
  return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
}

/** Deterministic pseudo-random u32s (xorshift). */
function* randomU32(n: number, seed = 12345): Generator<number> {
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    yield s;
  }
}

describe('dtype basics', () => {
  it('knows sizes and names', () => {
    expect(DTYPE_BYTES).toEqual({ F32: 4, F16: 2, BF16: 2 });
    expect(isDType('F16')).toBe(true);
    expect(isDType('I8')).toBe(false);
    expect(isDType('f16')).toBe(false);
    expect(isDType('toString')).toBe(false);
  });
});

describe('F16 → F32', () => {
  it('decodes hand-computed bit patterns', () => {
    const v = toFloat32(u16bytes(0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x8000, 0x7c00, 0xfc00, 0x3555), 'F16');
    expect(v[0]).toBe(1);
    expect(v[1]).toBe(-2);
    expect(v[2]).toBe(65504);
    expect(v[3]).toBe(2 ** -24);
    expect(v[4]).toBe(1023 * 2 ** -24);
    expect(v[5]).toBe(2 ** -14);
    expect(Object.is(v[6], -0)).toBe(true);
    expect(v[7]).toBe(Infinity);
    expect(v[8]).toBe(-Infinity);
    expect(v[9]).toBe(0.25 * (1 + 0x155 / 1024)); // 0.333251953125, nearest half to 1/3
    expect(Number.isNaN(toFloat32(u16bytes(0x7e00), 'F16')[0])).toBe(true);
    expect(Number.isNaN(toFloat32(u16bytes(0x7c01), 'F16')[0])).toBe(true);
  });

  it('every half survives half → float → half unchanged (quiet NaNs included)', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = new Uint16Array(fromFloat32(toFloat32(new Uint8Array(all.buffer), 'F16'), 'F16').buffer);
    for (let h = 0; h < 65536; h++) {
      const isSignallingNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0 && (h & 0x200) === 0;
      if (isSignallingNaN) expect(back[h]).toBe(h | 0x200);
      else if (back[h] !== h) expect(back[h]).toBe(h); // only build the assertion on failure: fast
    }
  });
});

describe('F32 → F16 rounding', () => {
  it('rounds ties to even and handles edges', () => {
    const bits = u16of(
      fromFloat32(
        f32(
          1 + 2 ** -11, // tie between 1 and 1+2^-10: even is 1
          1 + 3 * 2 ** -11, // tie between 1+2^-10 and 1+2^-9: even is 1+2^-9
          1 + 2 ** -11 + 2 ** -20, // just above the tie: up
          65504,
          65519.99, // below the midpoint: 65504
          65520, // the midpoint to 65536: ties to even, which is inf
          1e6,
          -1e6,
          2 ** -24,
          2 ** -25, // tie between 0 and the smallest subnormal: 0
          2 ** -25 + 2 ** -40, // just above: smallest subnormal
          3 * 2 ** -25, // tie between 1 and 2 subnormal ulps: 2
          2 ** -26,
          -0,
          Infinity,
          -Infinity,
          NaN,
          2 ** -14 - 2 ** -25, // rounds up into the smallest normal
        ),
        'F16',
      ),
    );
    expect(bits.slice(0, 17)).toEqual([
      0x3c00, 0x3c02, 0x3c01, 0x7bff, 0x7bff, 0x7c00, 0x7c00, 0xfc00, 0x0001, 0x0000, 0x0001, 0x0002, 0x0000, 0x8000,
      0x7c00, 0xfc00, bits[16],
    ]);
    expect(bits[16] & 0x7c00).toBe(0x7c00);
    expect(bits[16] & 0x3ff).not.toBe(0);
    expect(bits[17]).toBe(0x0400);
  });

  it('matches reference round-to-nearest-even on random float32 values', () => {
    const n = 100_000;
    const src = new Uint32Array(n);
    let i = 0;
    for (const r of randomU32(n)) {
      // bias toward the half range: exponents 100..150 hit subnormals, normals and overflow
      src[i++] = i % 2 === 0 ? r : (r & 0x807fffff) | ((100 + (r % 51)) << 23);
    }
    const values = new Float32Array(src.buffer);
    const back = toFloat32(fromFloat32(values, 'F16'), 'F16');
    for (let j = 0; j < n; j++) {
      const want = refHalf(values[j]);
      if (!sameValue(back[j], want)) expect([j, values[j], back[j]]).toEqual([j, values[j], want]);
    }
  });
});

describe('BF16', () => {
  it('decodes and encodes known patterns', () => {
    const v = toFloat32(u16bytes(0x3f80, 0xc000, 0x7f80, 0xff80, 0x8000, 0x0001, 0x7fc0), 'BF16');
    expect([...v.slice(0, 4)]).toEqual([1, -2, Infinity, -Infinity]);
    expect(Object.is(v[4], -0)).toBe(true);
    expect(v[5]).toBe(2 ** -133); // a float32 subnormal
    expect(Number.isNaN(v[6])).toBe(true);
    expect(u16of(fromFloat32(f32(1, -2, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -0, Infinity), 'BF16'))).toEqual([
      0x3f80, 0xc000, 0x3f80, 0x3f82, 0x3f81, 0x8000, 0x7f80,
    ]);
    // largest float32 rounds up to inf, as in PyTorch
    expect(u16of(fromFloat32(f32(3.4028234663852886e38), 'BF16'))).toEqual([0x7f80]);
    const nan = u16of(fromFloat32(new Float32Array(new Uint32Array([0x7f800001, 0xffc00000]).buffer), 'BF16'));
    expect(nan.every((b) => (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0)).toBe(true);
  });

  it('matches reference round-to-nearest-even on random float32 values', () => {
    const n = 100_000;
    const values = new Float32Array(new Uint32Array([...randomU32(n, 777)]).buffer);
    const back = toFloat32(fromFloat32(values, 'BF16'), 'BF16');
    for (let j = 0; j < n; j++) {
      const want = refBf16(values[j]);
      if (!sameValue(back[j], want)) expect([j, values[j], back[j]]).toEqual([j, values[j], want]);
    }
  });
});

describe('F32 and alignment', () => {
  it('round-trips F32 bit-exactly, -0 and NaN included', () => {
    const v = f32(1.5, -0, Infinity, -Infinity, NaN, 2 ** -149, 3.4e38);
    const back = toFloat32(fromFloat32(v, 'F32'), 'F32');
    expect(bitsOf(back)).toEqual(bitsOf(v));
  });

  it('reads unaligned views and returns arrays that do not share memory', () => {
    for (const dtype of ['F32', 'F16', 'BF16'] as DType[]) {
      const values = f32(1, -2, 0.5, 3);
      const bytes = fromFloat32(values, dtype);
      const shifted = new Uint8Array(bytes.byteLength + 1);
      shifted.set(bytes, 1);
      const view = shifted.subarray(1);
      const got = toFloat32(view, dtype);
      expect([...got]).toEqual([1, -2, 0.5, 3]);
      got[0] = 42;
      expect([...toFloat32(view, dtype)][0]).toBe(1);
      // aligned F32 input: the result is still the caller's own copy
      const aligned = fromFloat32(values, 'F32');
      const own = toFloat32(aligned, 'F32');
      own[1] = 7;
      expect(toFloat32(aligned, 'F32')[1]).toBe(-2);
    }
  });

  it('refuses a byte count that is not a whole number of values', () => {
    expect(() => toFloat32(new Uint8Array(3), 'F16')).toThrow(/whole number/);
    expect(() => toFloat32(new Uint8Array(6), 'F32')).toThrow(/whole number/);
  });

  it('handles empty input', () => {
    for (const dtype of ['F32', 'F16', 'BF16'] as DType[]) {
      expect(toFloat32(new Uint8Array(0), dtype).length).toBe(0);
      expect(fromFloat32(new Float32Array(0), dtype).byteLength).toBe(0);
    }
  });
});
