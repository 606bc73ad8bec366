/**
 * Floating-point storage types of checkpoint tensors and their conversion to and from float32.
 *
 * All byte layouts are little-endian, as in safetensors and GGUF. The conversions use typed-array
 * views of the platform's byte order, so they assume a little-endian host (every platform Node
 * ships for in practice: x86-64 and ARM64).
 *
 * Rounding matches PyTorch: float32 → BF16 and float32 → F16 round to nearest, ties to even;
 * F16 overflows to ±inf; NaN stays NaN (quiet); -0 stays -0; F16 subnormals are exact.
 */
import { BlocklabError } from './errors.js';

export type DType = 'F32' | 'F16' | 'BF16';

export const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2 };

const DTYPES: readonly string[] = Object.keys(DTYPE_BYTES);

export function isDType(s: string): s is DType {
  return DTYPES.includes(s);
}

// ---------------------------------------------------------------------------------------------
// F16 → F32: a 65536-entry table of float32 bit patterns, built once on first use.

let f16Table: Uint32Array | undefined;

/** float32 bit pattern of the IEEE half with bits `h` (exact, including subnormals, inf, NaN). */
function halfBitsToFloatBits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf, or NaN with its payload
  if (exp !== 0) return (sign | ((exp - 15 + 127) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0; // ±0
  // subnormal: mant × 2^-24; normalise it into a float32 normal
  let e = -14;
  let m = mant;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | ((e + 127) << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

function getF16Table(): Uint32Array {
  if (!f16Table) {
    const t = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) t[h] = halfBitsToFloatBits(h);
    f16Table = t;
  }
  return f16Table;
}

/** A Uint16Array over `bytes`, copying first when the view is not 2-byte aligned. */
function u16View(bytes: Uint8Array): Uint16Array {
  if (bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  return new Uint16Array(bytes.slice().buffer);
}

function checkLength(bytes: Uint8Array, dtype: DType): number {
  if (!isDType(dtype)) {
    throw new BlocklabError(`unsupported dtype ${JSON.stringify(dtype)}; supported dtypes are ${DTYPES.join(', ')}`);
  }
  const size = DTYPE_BYTES[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new BlocklabError(`${bytes.byteLength} bytes is not a whole number of ${dtype} values (${size} bytes each)`);
  }
  return bytes.byteLength / size;
}

/**
 * Little-endian raw bytes of `dtype` → a new Float32Array that the caller owns (it never shares
 * memory with `bytes`).
 */
export function toFloat32(bytes: Uint8Array, dtype: DType): Float32Array {
  const n = checkLength(bytes, dtype);
  if (dtype === 'F32') {
    // slice() copies into a fresh, aligned ArrayBuffer of exactly this length
    return new Float32Array(bytes.slice().buffer);
  }
  return widenInto(bytes, dtype, new Float32Array(n));
}

/**
 * Little-endian raw bytes of `dtype` widened (exactly) into `out`, which must hold exactly that
 * many values: the weight store writes a block's float32 weights straight into the backend's
 * memory with it. Returns `out`.
 */
export function widenInto(bytes: Uint8Array, dtype: DType, out: Float32Array): Float32Array {
  const n = checkLength(bytes, dtype);
  if (out.length !== n) throw new BlocklabError(`widenInto: ${n} ${dtype} values do not fill ${out.length} float32 slots`);
  const out32 = new Uint32Array(out.buffer, out.byteOffset, n);
  if (dtype === 'F32') {
    out32.set(bytes.byteOffset % 4 === 0 ? new Uint32Array(bytes.buffer, bytes.byteOffset, n) : new Uint32Array(bytes.slice().buffer));
    return out;
  }
  const src = u16View(bytes);
  if (dtype === 'BF16') {
    for (let i = 0; i < n; i++) out32[i] = src[i] << 16;
  } else {
    const table = getF16Table();
    for (let i = 0; i < n; i++) out32[i] = table[src[i]];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// F32 → F16 / BF16, round to nearest even (the algorithm of numpy's npy_floatbits_to_halfbits).

function floatBitsToHalfBits(f: number): number {
  const hSign = (f >>> 16) & 0x8000;
  const fExp = f & 0x7f800000;
  let fSig = f & 0x007fffff;
  if (fExp >= 0x47800000) {
    // overflow, inf or NaN
    if (fExp === 0x7f800000 && fSig !== 0) return hSign | 0x7e00 | (fSig >>> 13); // quiet NaN, payload kept
    return hSign | 0x7c00;
  }
  if (fExp <= 0x38000000) {
    // the result is a half subnormal or zero
    if (fExp < 0x33000000) return hSign; // below half the smallest subnormal: ±0
    const e = fExp >>> 23;
    fSig = (0x00800000 + fSig) >>> (113 - e);
    // round half to even; the shift may have dropped up to 11 bits, which break a tie upward
    if ((fSig & 0x3fff) !== 0x1000 || (f & 0x7ff) !== 0) fSig += 0x1000;
    return hSign | (fSig >>> 13); // a carry into the exponent gives the smallest normal, correctly
  }
  // normal
  const hExp = (fExp - 0x38000000) >>> 13;
  if ((fSig & 0x3fff) !== 0x1000) fSig += 0x1000; // round half to even
  return hSign | ((hExp + (fSig >>> 13)) & 0x7fff); // a carry may round up to inf, correctly
}

/** Float32 values → little-endian bytes of `dtype`, in a fresh buffer the caller owns. */
export function fromFloat32(values: Float32Array, dtype: DType): Uint8Array {
  if (!isDType(dtype)) {
    throw new BlocklabError(`unsupported dtype ${JSON.stringify(dtype)}; supported dtypes are ${DTYPES.join(', ')}`);
  }
  const n = values.length;
  if (dtype === 'F32') return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + n * 4));
  const src = new Uint32Array(values.buffer, values.byteOffset, n);
  const out = new Uint16Array(n);
  if (dtype === 'BF16') {
    for (let i = 0; i < n; i++) {
      const f = src[i];
      if ((f & 0x7fffffff) > 0x7f800000) {
        out[i] = (f >>> 16) | 0x0040; // NaN: keep sign and top payload, force quiet
      } else {
        // round to nearest even; max finite rounds up to inf as in PyTorch
        out[i] = (f + 0x7fff + ((f >>> 16) & 1)) >>> 16; // sum < 2^32: f is not NaN
      }
    }
  } else {
    for (let i = 0; i < n; i++) out[i] = floatBitsToHalfBits(src[i]);
  }
  return new Uint8Array(out.buffer);
}

// ---------------------------------------------------------------------------------------------
// One value at a time (the scales of ggml's quantized blocks)

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** The IEEE half bits of a number rounded first to float32 (as C's float is), then to half, ties to even. */
export function halfBits(x: number): number {
  scratchF32[0] = x;
  return floatBitsToHalfBits(scratchU32[0]);
}

/** The value of the IEEE half with bits `h`, exactly. */
export function halfValue(h: number): number {
  scratchU32[0] = getF16Table()[h & 0xffff];
  return scratchF32[0];
}
