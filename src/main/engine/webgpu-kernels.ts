/**
 * The engine's own WGSL kernels, registered with tfjs's webgpu backend (webgpu.ts registers
 * them when it registers the backend).
 *
 * Widen16: 16-bit weights (BF16 or F16, as a checkpoint stores them) kept in GPU memory two to a
 * 32-bit word, widened to float32 by a shader when a block computes. That halves the GPU memory
 * of frozen weights (the 'packed' residency of the memory plan) and needs no `shader-f16`: the
 * widening is integer bit arithmetic on u32 words, exact for every value (subnormals, ±0, inf,
 * NaN), so what the model computes with is bit for bit the float32 the CPU widening gives
 * (dtype.ts). Every sum stays in float32, as with resident weights.
 *
 * GatherWiden16: rows of a packed table (the embedding's lookup, a chunk of the head's rows),
 * gathered from the words and widened in one pass.
 *
 * PackedMatVec16: y = x · Wᵀ for a few rows of x (decoding: one token per sequence) straight
 * from a packed W [out, in], without widening W first: each weight is read once, at 2 bytes,
 * where the widen-then-multiply route reads 2, writes 4 and reads 4 again. One workgroup per
 * output feature; every product and sum in float32.
 *
 * A tfjs tensor has no 16-bit dtype: the packed words travel as an int32 tensor of
 * ceil(n / 2) elements, element 2i in the low half of word i (little-endian, as stored). Nothing
 * but these kernels may read them: tfjs's own gather, slice, concat and select round int32
 * values above 2^24 through float32 on the GPU (measured on llvmpipe), which would change the
 * low half of a word.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { DType } from './dtype.js';

export const WIDEN16 = 'BlocklabWiden16';
export const GATHER_WIDEN16 = 'BlocklabGatherWiden16';
export const PACKED_MATVEC16 = 'BlocklabPackedMatVec16';
/** The most rows of x PackedMatVec16 takes (its per-lane accumulators): decoding's few tokens. */
export const MATVEC_MAX_ROWS = 8;
const MATVEC_WORKGROUP = 64;

export type Half = Exclude<DType, 'F32'>;

interface WebgpuProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  variableNames: string[];
  workgroupSize: [number, number, number];
  size: boolean;
  getUserCode(): string;
}

interface WebgpuBackendLike {
  runWebGPUProgram(program: WebgpuProgram, inputs: tf.TensorInfo[], outputDtype: 'float32'): tf.TensorInfo;
}

const WORKGROUP = 256;

/** WGSL: the float32 of one F16 or BF16 value given as the low 16 bits of a u32. */
const WIDEN_WGSL: Record<Half, string> = {
  // bfloat16 is the top half of a float32: exact by construction
  BF16: `fn widen(h : u32) -> f32 { return bitcast<f32>(h << 16u); }`,
  // IEEE half → float32 by fields (unpack2x16float may flush subnormals to zero)
  F16: `fn widen(h : u32) -> f32 {
      let sign = (h & 0x8000u) << 16u;
      let e = (h >> 10u) & 0x1fu;
      let m = h & 0x3ffu;
      if (e == 0x1fu) { return bitcast<f32>(sign | 0x7f800000u | (m << 13u)); }
      if (e != 0u) { return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u)); }
      // ±0 and subnormals: m × 2^-24, a float32 normal (or 0), exact; the sign by bits
      return bitcast<f32>(sign | bitcast<u32>(f32(m) * 5.9604644775390625e-8));
    }`,
};

class Widen16Program implements WebgpuProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  variableNames = ['W'];
  workgroupSize: [number, number, number] = [WORKGROUP, 1, 1];
  size = true;
  private readonly dtype: Half;

  constructor(outputShape: number[], dtype: Half) {
    this.outputShape = outputShape;
    this.dtype = dtype;
    this.shaderKey = `blocklab_widen16_${dtype}`;
    // one flat dimension; tfjs spreads a dispatch over the per-dimension limit itself
    this.dispatchLayout = { x: outputShape.map((_, i) => i) };
    const n = outputShape.reduce((a, b) => a * b, 1);
    this.dispatch = [Math.ceil(n / WORKGROUP), 1, 1];
  }

  getUserCode(): string {
    return `
      ${WIDEN_WGSL[this.dtype]}
      fn main(index : i32) {
        if (index < uniforms.size) {
          let word = bitcast<u32>(W[index / 2]);
          let bits = select(word & 0xffffu, word >> 16u, (index & 1) == 1);
          setOutputAtIndex(index, widen(bits));
        }
      }
    `;
  }
}

/**
 * out[n, c] = widen(T[I[n] − offset, c]) for the ids that fall in this block of `rows` rows, and
 * Acc[n, c] (or 0 without it) for the others: a table kept as several blocks of rows is gathered
 * by passing each block's output as the next one's Acc.
 */
class GatherWiden16Program implements WebgpuProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  variableNames: string[];
  workgroupSize: [number, number, number] = [WORKGROUP, 1, 1];
  size = true;
  private readonly dtype: Half;
  private readonly offset: number;
  private readonly rows: number;
  private readonly cols: number;
  private readonly acc: boolean;

  constructor(n: number, rows: number, cols: number, offset: number, dtype: Half, acc: boolean) {
    this.outputShape = [n, cols];
    this.dtype = dtype;
    this.offset = offset;
    this.rows = rows;
    this.cols = cols;
    this.acc = acc;
    this.variableNames = acc ? ['T', 'I', 'Acc'] : ['T', 'I'];
    this.shaderKey = `blocklab_gather_widen16_${dtype}_${rows}_${cols}_${offset}_${acc}`;
    this.dispatchLayout = { x: [0, 1] };
    this.dispatch = [Math.ceil((n * cols) / WORKGROUP), 1, 1];
  }

  getUserCode(): string {
    return `
      ${WIDEN_WGSL[this.dtype]}
      fn main(index : i32) {
        if (index < uniforms.size) {
          let n = index / ${this.cols};
          let c = index - n * ${this.cols};
          let r = I[n] - ${this.offset};
          if (r >= 0 && r < ${this.rows}) {
            let word = bitcast<u32>(T[(r * ${this.cols} + c) / 2]);
            let bits = select(word & 0xffffu, word >> 16u, (c & 1) == 1);
            setOutputAtIndex(index, widen(bits));
          } else {
            setOutputAtIndex(index, ${this.acc ? 'Acc[index]' : '0.0'});
          }
        }
      }
    `;
  }
}

/**
 * out[n, o] = Σ_k X[n, k] · widen(W[o, k]) for X [N, K] float32 and W [O, K] packed (flat words,
 * element o·K + k). Workgroup o: its lanes take k = lane, lane + 64, … (a whole word at a time
 * when K is even), keep N partial sums each, and add them up in a tree in workgroup memory.
 */
class PackedMatVec16Program implements WebgpuProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  variableNames = ['X', 'W'];
  workgroupSize: [number, number, number] = [MATVEC_WORKGROUP, 1, 1];
  size = true;
  private readonly dtype: Half;
  private readonly n: number;
  private readonly k: number;
  private readonly o: number;

  constructor(n: number, k: number, o: number, dtype: Half) {
    this.outputShape = [n, o];
    this.dtype = dtype;
    this.n = n;
    this.k = k;
    this.o = o;
    this.shaderKey = `blocklab_packed_matvec16_${dtype}_${n}_${k}_${o}`;
    this.dispatchLayout = { x: [0, 1] };
    // one workgroup per output feature (tfjs spreads more than 65535 over y and z)
    this.dispatch = [o, 1, 1];
  }

  getUserCode(): string {
    const { n: N, k: K, o: O } = this;
    const WG = MATVEC_WORKGROUP;
    // K even: row o starts on a word; each lane takes whole words (two weights) at a time
    const loop =
      K % 2 === 0
        ? `
          let w0 = row / 2;
          for (var j = lane; j < ${K / 2}; j = j + ${WG}) {
            let word = bitcast<u32>(W[w0 + j]);
            let a = widen(word & 0xffffu);
            let b = widen(word >> 16u);
            for (var r = 0; r < ${N}; r = r + 1) {
              acc[r] = acc[r] + a * X[r * ${K} + 2 * j] + b * X[r * ${K} + 2 * j + 1];
            }
          }`
        : `
          for (var k = lane; k < ${K}; k = k + ${WG}) {
            let e = row + k;
            let word = bitcast<u32>(W[e / 2]);
            let w = widen(select(word & 0xffffu, word >> 16u, (e & 1) == 1));
            for (var r = 0; r < ${N}; r = r + 1) {
              acc[r] = acc[r] + w * X[r * ${K} + k];
            }
          }`;
    return `
      ${WIDEN_WGSL[this.dtype]}
      var<workgroup> partial : array<f32, ${WG * N}>;
      fn main(index : i32) {
        let o = index / ${WG};
        let lane = i32(localId.x);
        var acc : array<f32, ${N}>;
        for (var r = 0; r < ${N}; r = r + 1) { acc[r] = 0.0; }
        if (o < ${O}) {
          let row = o * ${K};
          ${loop}
        }
        for (var r = 0; r < ${N}; r = r + 1) { partial[r * ${WG} + lane] = acc[r]; }
        workgroupBarrier();
        for (var stride = ${WG / 2}; stride > 0; stride = stride / 2) {
          if (lane < stride) {
            for (var r = 0; r < ${N}; r = r + 1) {
              partial[r * ${WG} + lane] = partial[r * ${WG} + lane] + partial[r * ${WG} + lane + stride];
            }
          }
          workgroupBarrier();
        }
        // (the bound from the uniforms, which tfjs always binds: a shader must read them)
        if (lane == 0 && o < uniforms.outShape[1]) {
          for (var r = 0; r < ${N}; r = r + 1) { setOutputAtIndex(r * ${O} + o, partial[r * ${WG}]); }
        }
      }
    `;
  }
}

/** Registers the kernels with tfjs's webgpu backend (idempotent). */
export function registerWebgpuKernels(): void {
  if (tf.getKernel(WIDEN16, 'webgpu')) return;
  tf.registerKernel({
    kernelName: PACKED_MATVEC16,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, w } = inputs as { x: tf.TensorInfo; w: tf.TensorInfo };
      const { out, dtype } = attrs as unknown as { out: number; dtype: Half };
      const [n, k] = x.shape;
      return (backend as unknown as WebgpuBackendLike).runWebGPUProgram(new PackedMatVec16Program(n, k, out, dtype), [x, w], 'float32');
    },
  });
  tf.registerKernel({
    kernelName: GATHER_WIDEN16,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { table, ids, acc } = inputs as { table: tf.TensorInfo; ids: tf.TensorInfo; acc?: tf.TensorInfo };
      const { offset, dtype } = attrs as unknown as { offset: number; dtype: Half };
      const [rows, words] = table.shape;
      const program = new GatherWiden16Program(ids.shape[0], rows, words * 2, offset, dtype, acc !== undefined);
      return (backend as unknown as WebgpuBackendLike).runWebGPUProgram(program, acc ? [table, ids, acc] : [table, ids], 'float32');
    },
  });
  tf.registerKernel({
    kernelName: WIDEN16,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { packed } = inputs as { packed: tf.TensorInfo };
      const { shape, dtype } = attrs as unknown as { shape: number[]; dtype: Half };
      return (backend as unknown as WebgpuBackendLike).runWebGPUProgram(new Widen16Program(shape, dtype), [packed], 'float32');
    },
  });
}

/** Whether the active backend can widen packed weights (webgpu, with the kernels registered). */
export function canWidenOnBackend(): boolean {
  const b = tf.getBackend();
  return [WIDEN16, GATHER_WIDEN16, PACKED_MATVEC16].every((k) => tf.getKernel(k, b) !== undefined);
}

/**
 * A tensor's stored 16-bit bytes as the int32 words to upload: ceil(n / 2) of them, the last one
 * padded with a zero half when n is odd.
 */
export function packHalfWords(bytes: Uint8Array): Int32Array {
  const words = new Int32Array(Math.ceil(bytes.byteLength / 4));
  new Uint8Array(words.buffer).set(bytes);
  return words;
}

/** The packed words of `bytes` (a BF16 or F16 tensor's stored bytes) as an int32 tensor on the backend. */
export function uploadPacked(bytes: Uint8Array): tf.Tensor1D {
  const words = packHalfWords(bytes);
  return tf.tensor1d(words, 'int32');
}

/** float32 values of a packed tensor, in `shape` (the stored tensor's own), widened on the GPU. */
export function widen16(packed: tf.Tensor, shape: number[], dtype: Half): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (packed.dtype !== 'int32' || packed.size !== Math.ceil(n / 2)) {
    throw new Error(`widen16: ${packed.size} packed ${packed.dtype} words for ${n} values`);
  }
  return tf.engine().runKernel(WIDEN16, { packed }, { shape, dtype } as unknown as tf.NamedAttrMap) as tf.Tensor;
}

/**
 * Rows `ids` [N] (int32) of a packed table kept as consecutive blocks of rows — int32 words
 * [rows, D / 2] each, in order — widened: float32 [N, D]. An id outside the table gives a row of 0.
 */
export function gatherWiden16(parts: tf.Tensor2D[], ids: tf.Tensor1D, dtype: Half): tf.Tensor2D {
  const cols = parts[0].shape[1];
  let acc: tf.Tensor2D | null = null;
  let offset = 0;
  for (const table of parts) {
    if (table.dtype !== 'int32' || table.shape[1] !== cols) throw new Error(`gatherWiden16: a block of ${table.shape.join(' × ')} ${table.dtype} is not ${cols} int32 words to a row`);
    const inputs: tf.NamedTensorMap = acc ? { table, ids, acc } : { table, ids };
    const next = tf.engine().runKernel(GATHER_WIDEN16, inputs, { offset, dtype } as unknown as tf.NamedAttrMap) as tf.Tensor2D;
    acc?.dispose();
    acc = next;
    offset += table.shape[0];
  }
  return acc!;
}

/**
 * x [N, K] · Wᵀ for a packed W [out, K] (`w`: its ceil(out·K / 2) int32 words, any shape) →
 * [N, out] float32, for N ≤ MATVEC_MAX_ROWS; `out` is read from the word count.
 */
export function packedMatVec16(x: tf.Tensor2D, w: tf.Tensor, dtype: Half): tf.Tensor2D {
  const [n, k] = x.shape;
  const out = Math.floor((2 * w.size) / k);
  if (w.dtype !== 'int32' || Math.ceil((out * k) / 2) !== w.size) throw new Error(`packedMatVec16: ${w.size} ${w.dtype} words are no whole number of rows of ${k} values`);
  if (n < 1 || n > MATVEC_MAX_ROWS) throw new Error(`packedMatVec16 takes 1 to ${MATVEC_MAX_ROWS} rows of x, not ${n}`);
  return tf.engine().runKernel(PACKED_MATVEC16, { x, w }, { out, dtype } as unknown as tf.NamedAttrMap) as tf.Tensor2D;
}
