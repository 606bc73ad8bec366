/**
 * `blocklab export --format gguf`: a checkpoint written as one GGUF v3 file that llama.cpp (and
 * so Ollama, LM Studio, node-llama-cpp) loads, in F32, F16, or quantized to Q8_0, Q4_0 or
 * Q4_K_M (ggml's blocks and k-quants, see ggml-quants.ts).
 *
 * File layout (little-endian throughout):
 *   u32 magic "GGUF", u32 version 3, u64 tensor count, u64 key/value count,
 *   key/values:   string key, u32 value type, value (arrays: u32 item type, u64 count, items),
 *   tensor infos: string name, u32 n_dims, u64 dims[n_dims] (innermost first: the PyTorch
 *                 shape reversed), u32 ggml type, u64 offset (from the start of the data region),
 *   zero padding to `general.alignment` (32), then the data region: each tensor at its offset,
 *   padded to the alignment. Strings are u64 length + UTF-8 bytes, no terminator.
 *
 * What llama.cpp expects, read from its source (convert_hf_to_gguf.py, src/llama-model.cpp,
 * src/models/{llama,qwen2}.cpp, src/llama-vocab.cpp) at the version node-llama-cpp 3.21.1 ships:
 *
 * - Llama and Mistral use the `llama` architecture, whose RoPE rotates interleaved pairs
 *   (x0,x1),(x2,x3)..; HF rotates halves (x_i, x_{i+hd/2}). The converter therefore permutes the
 *   rows of q_proj and k_proj (weights and biases) head by head:
 *   `W.reshape(n_head, 2, hd/2, in).swapaxes(1, 2)` (n_head_kv heads for k). Qwen2 uses the
 *   `qwen2` architecture, whose RoPE is NeoX-style (halves, as HF): no permutation there.
 * - llama3 rope scaling becomes a `rope_freqs.weight` tensor of hd/2 per-frequency divisors.
 * - Tied embeddings: no `output.weight`; llama.cpp reuses `token_embd.weight`.
 * - 1-D tensors (norms, biases, rope_freqs) stay F32 in an F16 or quantized file, as the converter
 *   and llama-quantize keep them. In a quantized file a matrix whose rows are not a whole number
 *   of 32-value blocks falls back to F16 (both tools do the same). Q8_0 quantizes every other
 *   matrix, embeddings and output included (convert_hf_to_gguf.py --outtype q8_0). Q4_0 and
 *   Q4_K_M follow llama-quantize without an importance matrix (src/llama-quant.cpp,
 *   llama_tensor_get_type): the output matrix — token_embd when tied, since it is then the
 *   output — gets Q6_K (Q8_0 when its rows are not whole 256-value super-blocks); in Q4_K_M the
 *   rest is Q4_K except attn_v and ffn_down in the layers use_more_bits picks (the first and last
 *   eighth, and every third between), which get Q6_K; a k-quant matrix whose rows are not whole
 *   super-blocks falls back as llama-quantize does: Q4_K → Q5_0, Q6_K → Q8_0 (then F16).
 * - The tokenizer goes in `tokenizer.ggml.*`: `gpt2` (byte-level BPE with merges and a named
 *   pre-tokenizer) or `llama` (SentencePiece-style BPE with byte fallback, scored pieces).
 *
 * The file is written tensor by tensor to a temporary sibling, fsynced, and renamed into place:
 * the target is either the previous file or the complete new one, never a half-written file.
 */
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { checkWritableFile } from './atomic.js';
import type { Checkpoint } from './checkpoint.js';
import type { ModelConfig } from './config.js';
import { fromFloat32, toFloat32, type DType } from './dtype.js';
import { BlocklabError } from './errors.js';
import { dequantizeBlocks, QK, QUANT_BLOCK_BYTES, QUANT_BLOCK_VALUES, quantizeBlocks, quantScaleFits, type GgmlQuantType } from './ggml-quants.js';
import { readTensorBytes, readTensorFloat32, type TensorInfo } from './safetensors.js';
import { HfTokenizer } from './tokenizer.js';
import { parseDtypeOption } from './write-checkpoint.js';

// =============================================================================================
// The container: key/values, tensor infos, aligned data

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** gguf_type: the type tag of a key/value (and of array items). */
export const GGUF_TYPE = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

/** ggml_type of the tensors this writer produces (ggml.h). */
export const GGML_TYPE = { F32: 0, F16: 1, Q4_0: 2, Q5_0: 6, Q8_0: 8, Q4_K: 12, Q6_K: 14 } as const;
export type GgmlTypeName = keyof typeof GGML_TYPE;

/** What a GGUF file is exported as (`--dtype`): a tensor type, or a mix of them (Q4_K_M). */
export type GgufFileType = 'F32' | 'F16' | 'Q8_0' | 'Q4_0' | 'Q4_K_M';

const isQuantized = (t: GgmlTypeName): t is GgmlQuantType => t in QUANT_BLOCK_BYTES;

/** values per block and bytes per block of each type (ggml.c's type_traits blck_size, type_size) */
const GGML_BLOCK: Record<GgmlTypeName, { values: number; bytes: number }> = Object.fromEntries(
  (Object.keys(GGML_TYPE) as GgmlTypeName[]).map((t) => [
    t,
    isQuantized(t) ? { values: QUANT_BLOCK_VALUES[t], bytes: QUANT_BLOCK_BYTES[t] } : { values: 1, bytes: t === 'F32' ? 4 : 2 },
  ]),
) as Record<GgmlTypeName, { values: number; bytes: number }>;

/** llama_ftype (llama.h), written as general.file_type: ALL_F32, MOSTLY_F16, MOSTLY_Q4_0, MOSTLY_Q8_0, MOSTLY_Q4_K_M. */
export const LLAMA_FTYPE: Record<GgufFileType, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7, Q4_K_M: 15 };

/** llama.cpp's token types (tokenizer.ggml.token_type). */
export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export type GgufValue =
  | { type: 'u32'; value: number }
  | { type: 'i32'; value: number }
  | { type: 'u64'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; itemType: 'string'; values: readonly string[] }
  | { type: 'array'; itemType: 'i32' | 'u32' | 'f32'; values: ArrayLike<number> };

/** Constructors for typed values: `[key, gguf.u32(4)]`. */
export const gguf = {
  u32: (value: number): GgufValue => ({ type: 'u32', value }),
  i32: (value: number): GgufValue => ({ type: 'i32', value }),
  u64: (value: number): GgufValue => ({ type: 'u64', value }),
  f32: (value: number): GgufValue => ({ type: 'f32', value }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  string: (value: string): GgufValue => ({ type: 'string', value }),
  strings: (values: readonly string[]): GgufValue => ({ type: 'array', itemType: 'string', values }),
  i32s: (values: ArrayLike<number>): GgufValue => ({ type: 'array', itemType: 'i32', values }),
  u32s: (values: ArrayLike<number>): GgufValue => ({ type: 'array', itemType: 'u32', values }),
  f32s: (values: ArrayLike<number>): GgufValue => ({ type: 'array', itemType: 'f32', values }),
};

export type GgufKv = [key: string, value: GgufValue];

export interface GgufTensor {
  /** GGUF tensor name, e.g. `blk.0.attn_q.weight` (at most 63 bytes) */
  name: string;
  type: GgmlTypeName;
  /** the shape in PyTorch order (outermost first, row-major data); written reversed */
  shape: number[];
  /** the tensor's bytes in `type`, produced when its turn comes */
  data: () => Promise<Uint8Array>;
}

const GGML_MAX_NAME = 64;
const IO_CHUNK = 1 << 30;
const encoder = new TextEncoder();

/** A little-endian byte builder for the header. */
class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.reserve(1);
    this.view.setUint8(this.length, v);
    this.length += 1;
  }
  u32(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.reserve(4);
    this.view.setInt32(this.length, v, true);
    this.length += 4;
  }
  f32(v: number): void {
    this.reserve(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  u64(v: number): void {
    this.reserve(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  string(s: string): void {
    const b = encoder.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  padTo(alignment: number): void {
    const pad = (alignment - (this.length % alignment)) % alignment;
    this.reserve(pad);
    this.length += pad; // the buffer is zero-filled
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

const ITEM_TYPE: Record<'string' | 'i32' | 'u32' | 'f32', number> = {
  string: GGUF_TYPE.STRING,
  i32: GGUF_TYPE.INT32,
  u32: GGUF_TYPE.UINT32,
  f32: GGUF_TYPE.FLOAT32,
};

function checkInt(key: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new BlocklabError(`GGUF key ${key}: ${v} is not an integer in [${min}, ${max}]`);
  }
}

function writeValue(w: ByteWriter, key: string, v: GgufValue): void {
  switch (v.type) {
    case 'u32':
      checkInt(key, v.value, 0, 0xffffffff);
      w.u32(GGUF_TYPE.UINT32);
      w.u32(v.value);
      return;
    case 'i32':
      checkInt(key, v.value, -0x80000000, 0x7fffffff);
      w.u32(GGUF_TYPE.INT32);
      w.i32(v.value);
      return;
    case 'u64':
      checkInt(key, v.value, 0, Number.MAX_SAFE_INTEGER);
      w.u32(GGUF_TYPE.UINT64);
      w.u64(v.value);
      return;
    case 'f32':
      w.u32(GGUF_TYPE.FLOAT32);
      w.f32(v.value);
      return;
    case 'bool':
      w.u32(GGUF_TYPE.BOOL);
      w.u8(v.value ? 1 : 0);
      return;
    case 'string':
      w.u32(GGUF_TYPE.STRING);
      w.string(v.value);
      return;
    case 'array': {
      w.u32(GGUF_TYPE.ARRAY);
      w.u32(ITEM_TYPE[v.itemType]);
      w.u64(v.values.length);
      if (v.itemType === 'string') {
        for (const s of v.values as readonly string[]) w.string(s);
      } else {
        const values = v.values as ArrayLike<number>;
        for (let i = 0; i < values.length; i++) {
          if (v.itemType === 'f32') w.f32(values[i]);
          else if (v.itemType === 'i32') {
            checkInt(key, values[i], -0x80000000, 0x7fffffff);
            w.i32(values[i]);
          } else {
            checkInt(key, values[i], 0, 0xffffffff);
            w.u32(values[i]);
          }
        }
      }
      return;
    }
  }
}

export interface GgufLayout {
  /** header, key/values, tensor infos and the padding up to the data region */
  header: Uint8Array;
  /** byte offset of each tensor from the start of the data region */
  offsets: number[];
  /** byte length of each tensor (without padding) */
  byteLengths: number[];
  /** the size of the whole file */
  totalBytes: number;
}

/** Bytes of a tensor of this type and shape (rows of a block type must be whole blocks). */
export function ggufTensorBytes(type: GgmlTypeName, shape: number[]): number {
  const { values, bytes } = GGML_BLOCK[type];
  const rowLength = shape[shape.length - 1];
  if (rowLength % values !== 0) throw new Error(`a ${type} row of ${rowLength} values is not a whole number of ${values}-value blocks`);
  return (shape.reduce((a, b) => a * b, 1) / values) * bytes;
}

/**
 * The header of a GGUF v3 file and where every tensor's data goes. `general.alignment` is
 * taken from the key/values when present (it must then be a u32 power of two).
 */
export function layoutGguf(kvs: GgufKv[], tensors: Pick<GgufTensor, 'name' | 'type' | 'shape'>[]): GgufLayout {
  const keys = new Set<string>();
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  for (const [key, v] of kvs) {
    if (keys.has(key)) throw new BlocklabError(`GGUF key ${key} is given twice`);
    keys.add(key);
    if (key === 'general.alignment') {
      if (v.type !== 'u32' || v.value <= 0 || (v.value & (v.value - 1)) !== 0) {
        throw new BlocklabError('general.alignment must be a u32 power of two');
      }
      alignment = v.value;
    }
  }
  const names = new Set<string>();
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(kvs.length);
  for (const [key, v] of kvs) {
    w.string(key);
    writeValue(w, key, v);
  }
  const offsets: number[] = [];
  const byteLengths: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    if (names.has(t.name)) throw new BlocklabError(`GGUF tensor ${t.name} is given twice`);
    names.add(t.name);
    if (encoder.encode(t.name).length >= GGML_MAX_NAME) {
      throw new BlocklabError(`GGUF tensor name ${t.name} is longer than llama.cpp's limit of ${GGML_MAX_NAME - 1} bytes`);
    }
    if (!(t.type in GGML_TYPE)) throw new BlocklabError(`GGUF tensor ${t.name}: unsupported type ${String(t.type)}`);
    if (t.shape.length < 1 || t.shape.length > 4 || t.shape.some((d) => !Number.isSafeInteger(d) || d <= 0)) {
      throw new BlocklabError(`GGUF tensor ${t.name}: shape [${t.shape.join(', ')}] must have 1 to 4 positive dimensions`);
    }
    if (t.shape[t.shape.length - 1] % GGML_BLOCK[t.type].values !== 0) {
      throw new BlocklabError(`GGUF tensor ${t.name}: rows of ${t.shape[t.shape.length - 1]} values are not whole ${t.type} blocks of ${GGML_BLOCK[t.type].values}`);
    }
    w.string(t.name);
    w.u32(t.shape.length);
    for (let i = t.shape.length - 1; i >= 0; i--) w.u64(t.shape[i]); // ggml's ne[0] is the innermost
    w.u32(GGML_TYPE[t.type]);
    w.u64(offset);
    const n = ggufTensorBytes(t.type, t.shape);
    offsets.push(offset);
    byteLengths.push(n);
    offset += n + ((alignment - (n % alignment)) % alignment);
  }
  w.padTo(alignment);
  const header = w.result();
  return { header, offsets, byteLengths, totalBytes: header.length + offset };
}

async function writeAll(fh: Awaited<ReturnType<typeof open>>, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.byteLength) {
    const { bytesWritten } = await fh.write(data, done, Math.min(IO_CHUNK, data.byteLength - done));
    done += bytesWritten;
  }
}

/**
 * Writes a GGUF file atomically: a temporary sibling is written tensor by tensor (each tensor's
 * data produced only when its turn comes), fsynced, and renamed over `file` (its folder is
 * created if needed). An existing file is replaced only with `overwrite`, and only a GGUF file. Returns the file's size.
 */
export async function writeGguf(
  file: string,
  kvs: GgufKv[],
  tensors: GgufTensor[],
  opts: { overwrite?: boolean; onTensor?: (index: number, name: string) => void } = {},
): Promise<{ bytes: number }> {
  const existing = await stat(file).catch(() => null);
  if (existing?.isDirectory()) {
    throw new BlocklabError('is a folder; give --out a file name ending in .gguf', { file });
  }
  // only a GGUF file is ever replaced, and only when asked
  await checkWritableFile(file, opts.overwrite ?? false, { bytes: new TextEncoder().encode('GGUF'), format: 'GGUF' });
  const layout = layoutGguf(kvs, tensors);
  const dir = dirname(file);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const fh = await open(tmp, 'wx');
  let closed = false;
  try {
    await writeAll(fh, layout.header);
    const zeros = new Uint8Array(GGUF_DEFAULT_ALIGNMENT * 4);
    let written = layout.header.length;
    for (const [i, t] of tensors.entries()) {
      opts.onTensor?.(i, t.name);
      const data = await t.data();
      if (data.byteLength !== layout.byteLengths[i]) {
        throw new BlocklabError(
          `GGUF tensor ${t.name}: got ${data.byteLength} bytes of data, but ${t.type} [${t.shape.join(', ')}] is ${layout.byteLengths[i]} bytes`,
        );
      }
      if (written !== layout.header.length + layout.offsets[i]) throw new Error(`GGUF writer out of step at ${t.name}`);
      await writeAll(fh, data);
      written += data.byteLength;
      const end = i + 1 < tensors.length ? layout.header.length + layout.offsets[i + 1] : layout.totalBytes;
      if (end > written) {
        await writeAll(fh, zeros.subarray(0, end - written));
        written = end;
      }
    }
    await fh.sync();
    await fh.close();
    closed = true;
    await rename(tmp, file);
  } catch (e) {
    if (!closed) await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    if (e instanceof BlocklabError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC') throw new BlocklabError('the disk is full; free space or write elsewhere (nothing was written)', { file, cause: e });
    throw e;
  }
  const dh = await open(dir, 'r').catch(() => null);
  if (dh) {
    await dh.sync().catch(() => undefined);
    await dh.close();
  }
  return { bytes: layout.totalBytes };
}

// =============================================================================================
// Weights: names, the Q/K permutation, llama3 rope factors

/**
 * HF rotate-half row order → llama.cpp's interleaved pairs, per head:
 * `W.reshape(heads, 2, hd/2, cols).swapaxes(1, 2).reshape(W.shape)`. Row h·hd + 2i + j of the
 * result is row h·hd + j·hd/2 + i of `w`. `cols` is 1 for a bias. `inverse` undoes it.
 */
export function permuteRotaryRows(w: Float32Array, heads: number, cols: number, inverse = false): Float32Array {
  const rows = w.length / cols;
  if (!Number.isInteger(rows) || rows % heads !== 0 || (rows / heads) % 2 !== 0) {
    throw new Error(`cannot permute ${w.length} values as ${heads} heads of even size × ${cols}`);
  }
  const hd = rows / heads;
  const half = hd / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        let src = (h * hd + j * half + i) * cols;
        let dst = (h * hd + 2 * i + j) * cols;
        if (inverse) [src, dst] = [dst, src];
        out.set(w.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

/**
 * llama3 rope scaling as convert_hf_to_gguf.py writes it: one divisor per rotary frequency
 * (1 for short wavelengths, `factor` for long ones, a smooth blend between), which llama.cpp
 * applies as theta_i / factor_i — the same frequencies transformers' llama3 rope computes.
 */
export function llama3RopeFactors(config: ModelConfig): Float32Array {
  const rs = config.ropeScaling;
  if (!rs) throw new Error('llama3RopeFactors needs rope_scaling llama3');
  const dim = config.headDim;
  const lowFreqWavelen = rs.originalMaxPositionEmbeddings / rs.lowFreqFactor;
  const highFreqWavelen = rs.originalMaxPositionEmbeddings / rs.highFreqFactor;
  const out = new Float32Array(dim / 2);
  for (let k = 0; k < dim / 2; k++) {
    const freq = Math.fround(1 / Math.fround(Math.pow(config.ropeTheta, Math.fround((2 * k) / dim))));
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highFreqWavelen) out[k] = 1;
    else if (wavelen > lowFreqWavelen) out[k] = rs.factor;
    else {
      const smooth = (rs.originalMaxPositionEmbeddings / wavelen - rs.lowFreqFactor) / (rs.highFreqFactor - rs.lowFreqFactor);
      out[k] = 1 / ((1 - smooth) / rs.factor + smooth);
    }
  }
  return out;
}

export type GgufArchitecture = 'llama' | 'qwen2';

/** The llama.cpp architecture of a config, or a refusal saying why it cannot be exported. */
export function ggufArchitecture(config: ModelConfig): GgufArchitecture {
  if (config.architecture === 'Qwen2ForCausalLM') {
    if (config.headDim * config.numHeads !== config.hiddenSize) {
      throw new BlocklabError(
        `GGUF export of Qwen2 needs head_dim × num_attention_heads = hidden_size (llama.cpp's qwen2 graph assumes it); this model has ${config.headDim} × ${config.numHeads} ≠ ${config.hiddenSize}`,
      );
    }
    if (config.ropeScaling) {
      throw new BlocklabError('GGUF export of Qwen2 with llama3 rope_scaling is not supported: llama.cpp\'s qwen2 graph has no rope_freqs tensor');
    }
    return 'qwen2';
  }
  return 'llama';
}

/** HF tensor name → GGUF tensor name. */
export function ggufTensorName(hf: string): string {
  if (hf === 'model.embed_tokens.weight') return 'token_embd.weight';
  if (hf === 'model.norm.weight') return 'output_norm.weight';
  if (hf === 'lm_head.weight') return 'output.weight';
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hf);
  const parts: Record<string, string> = {
    input_layernorm: 'attn_norm',
    'self_attn.q_proj': 'attn_q',
    'self_attn.k_proj': 'attn_k',
    'self_attn.v_proj': 'attn_v',
    'self_attn.o_proj': 'attn_output',
    'mlp.gate_proj': 'ffn_gate',
    'mlp.up_proj': 'ffn_up',
    'mlp.down_proj': 'ffn_down',
    post_attention_layernorm: 'ffn_norm',
  };
  if (m && parts[m[2]]) return `blk.${m[1]}.${parts[m[2]]}.${m[3]}`;
  throw new BlocklabError(`tensor ${hf} has no GGUF name`);
}

/** The largest float32 that rounds to a finite half (65504 is the largest half; 65520 rounds to inf). */
const HALF_OVERFLOW = 65520;

/** llama-quantize's use_more_bits: the first and last eighth of the layers, and every third one between. */
export function useMoreBits(layer: number, layers: number): boolean {
  const eighth = Math.floor(layers / 8);
  return layer < eighth || layer >= Math.floor((7 * layers) / 8) || (layer - eighth) % 3 === 2;
}

/**
 * The ggml type of one weight in a file of `fileType` (see the file comment): 1-D tensors F32;
 * in a Q4_0 file the output matrix (token_embd when `tied`) Q6_K; in a Q4_K_M file Q4_K, and Q6_K
 * for the output and the attn_v / ffn_down of the layers useMoreBits picks (`layers` of them);
 * a matrix whose rows are not whole blocks of its type falls back (`fallback`): Q4_K → Q5_0,
 * Q6_K → Q8_0, anything else (or rows not whole 32-value blocks either) → F16.
 */
export function ggufTensorType(name: string, shape: number[], fileType: GgufFileType, tied: boolean, layers = 0): { type: GgmlTypeName; fallback: boolean } {
  if (shape.length === 1) return { type: 'F32', fallback: false };
  if (fileType === 'F32' || fileType === 'F16') return { type: fileType, fallback: false };
  const isOutput = name === 'output.weight' || (tied && name === 'token_embd.weight');
  let type: GgmlQuantType = fileType === 'Q4_K_M' ? 'Q4_K' : fileType;
  if (isOutput && fileType !== 'Q8_0') type = 'Q6_K';
  const layer = /^blk\.(\d+)\.(attn_v|ffn_down)\.weight$/.exec(name);
  if (fileType === 'Q4_K_M' && layer && useMoreBits(Number(layer[1]), layers)) type = 'Q6_K';
  const row = shape[shape.length - 1];
  if (row % QUANT_BLOCK_VALUES[type] === 0) return { type, fallback: false };
  const instead: GgmlTypeName = type === 'Q4_K' ? 'Q5_0' : type === 'Q6_K' ? 'Q8_0' : 'F16';
  // the output of a Q4_0 file: Q8_0 as llama-quantize picks when it cannot be Q6_K (not a fallback of the file's type)
  if (isOutput && fileType === 'Q4_0' && row % QK === 0) return { type: 'Q8_0', fallback: false };
  return { type: instead !== 'F16' && row % QK === 0 ? instead : 'F16', fallback: true };
}

interface PlannedWeight {
  tensor: GgufTensor;
  /** the values llama.cpp will compute with, in the checkpoint's (HF) layout: the tensor's bytes decoded and un-permuted */
  asWritten: () => Promise<Float32Array>;
}

function weightTensor(hfName: string, info: TensorInfo, type: GgmlTypeName, permute: { heads: number } | null): PlannedWeight {
  const cols = info.shape.length === 1 ? 1 : info.shape[1];
  const tensor: GgufTensor = {
    name: ggufTensorName(hfName),
    type,
    shape: info.shape,
    data: async () => {
      if (!permute && info.dtype === type) return readTensorBytes(info); // bit for bit
      let values = await readTensorFloat32(info);
      if (permute) values = permuteRotaryRows(values, permute.heads, cols);
      if (type === 'F16') {
        for (let i = 0; i < values.length; i++) {
          if (Math.abs(values[i]) >= HALF_OVERFLOW && Number.isFinite(values[i])) {
            throw new BlocklabError(`tensor ${hfName} holds ${values[i]}, beyond the F16 range (±65504); export with --dtype f32`, { file: info.file });
          }
        }
      }
      if (isQuantized(type)) {
        let maxAbs = 0;
        for (let i = 0; i < values.length; i++) maxAbs = Math.max(maxAbs, Math.abs(values[i])); // NaN propagates
        if (!Number.isFinite(maxAbs)) {
          throw new BlocklabError(`tensor ${hfName} holds ${maxAbs}, which a ${type} block cannot hold; the checkpoint looks damaged (export with --dtype f32 to keep it as it is)`, { file: info.file });
        }
        if (!quantScaleFits(type, maxAbs)) {
          throw new BlocklabError(
            `tensor ${hfName} holds a value of magnitude ${maxAbs}, beyond what a ${type} block's half-precision scale can hold; export with --dtype f32`,
            { file: info.file },
          );
        }
        return quantizeBlocks(type, values);
      }
      return fromFloat32(values, type as DType);
    },
  };
  return {
    tensor,
    asWritten: async () => {
      const bytes = await tensor.data();
      const values = isQuantized(type) ? dequantizeBlocks(type, bytes) : toFloat32(bytes, type as DType);
      return permute ? permuteRotaryRows(values, permute.heads, cols, true) : values;
    },
  };
}

// =============================================================================================
// Tokenizer → tokenizer.ggml.*

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Split regexes of the byte-level pre-tokenizers llama.cpp implements, as tokenizer.json writes them. */
const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

export interface GgufTokenizer {
  /** tokenizer.ggml.model */
  model: 'gpt2' | 'llama';
  /** tokenizer.ggml.pre */
  pre: string;
  kvs: GgufKv[];
}

/**
 * Which llama.cpp byte-level pre-tokenizer reproduces this tokenizer.json's pre-tokenizer, or
 * a refusal. ByteLevel with its built-in (GPT-2) regex → `gpt-2`; a Split with Llama 3's regex
 * then a regex-less ByteLevel → `llama-bpe`; the same with Qwen2's regex → `qwen2`.
 * (convert_hf_to_gguf.py names the pre-tokenizer from a hash of known tokenizers' output; these
 * are the names it gives GPT-2, Llama 3 and Qwen2. llama.cpp's `gpt-2` also cleans " ." → "."
 * when detokenizing, as transformers does with clean_up_tokenization_spaces; token ids are
 * unaffected.)
 */
function bytelevelPre(tj: Json, model: Json, file: string): string {
  const pt = tj.pre_tokenizer;
  const refuse = (what: string): never => {
    throw new BlocklabError(
      `GGUF export: ${what}; llama.cpp tokenizes byte-level BPE only with the pre-tokenizers it implements (GPT-2, Llama 3, Qwen2 regexes), so the GGUF would tokenize differently from this checkpoint`,
      { file },
    );
  };
  const normalizer = tj.normalizer;
  const byteLevel = (p: unknown, regex: boolean): boolean =>
    isObject(p) && p.type === 'ByteLevel' && p.add_prefix_space !== true && (p.use_regex ?? true) === regex;
  let pre: string;
  if (byteLevel(pt, true)) {
    pre = 'gpt-2';
  } else if (
    isObject(pt) &&
    pt.type === 'Sequence' &&
    Array.isArray(pt.pretokenizers) &&
    pt.pretokenizers.length === 2 &&
    byteLevel(pt.pretokenizers[1], false)
  ) {
    const split = pt.pretokenizers[0] as Json;
    const pattern = isObject(split.pattern) ? split.pattern.Regex : undefined;
    if (split.type !== 'Split' || split.behavior !== 'Isolated' || split.invert === true || typeof pattern !== 'string') {
      return refuse(`the pre-tokenizer ${JSON.stringify(split).slice(0, 200)} is not a regex Split`);
    }
    if (pattern === LLAMA3_SPLIT) pre = 'llama-bpe';
    else if (pattern === QWEN2_SPLIT) pre = 'qwen2';
    else return refuse(`the pre-tokenizer regex ${JSON.stringify(pattern).slice(0, 200)} is not one llama.cpp implements`);
  } else {
    return refuse(`the pre-tokenizer ${JSON.stringify(pt).slice(0, 200)} is not supported`);
  }
  // llama.cpp's llama-bpe ignores merges for words in the vocabulary (Llama 3's ignore_merges); the others do not
  const ignoreMerges = model.ignore_merges === true;
  if (ignoreMerges !== (pre === 'llama-bpe')) {
    return refuse(`ignore_merges ${ignoreMerges} with the ${pre} pre-tokenizer is a combination llama.cpp does not have`);
  }
  if (normalizer !== null && normalizer !== undefined && !(pre === 'qwen2' && isObject(normalizer) && normalizer.type === 'NFC')) {
    return refuse(`the normalizer ${JSON.stringify(normalizer).slice(0, 200)} is not supported with byte-level BPE`);
  }
  return pre;
}

/** "a b" merge strings from tokenizer.json's model.merges (strings, or [a, b] pairs since transformers 4.45). */
function mergeStrings(merges: unknown, file: string): string[] {
  if (!Array.isArray(merges)) throw new BlocklabError('GGUF export: the BPE model has no "merges" list', { file });
  return merges.map((m, i) => {
    if (typeof m === 'string') return m;
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') {
      if (m[0].includes(' ') || m[1].includes(' ') || m[0] === '') {
        throw new BlocklabError(`GGUF export: merge ${i} ${JSON.stringify(m)} contains a space, which llama.cpp's "a b" merge format cannot hold`, { file });
      }
      return `${m[0]} ${m[1]}`;
    }
    throw new BlocklabError(`GGUF export: merge ${i} is neither "a b" nor ["a", "b"]`, { file });
  });
}

/** Special tokens that look like control tokens even when not flagged special (the converter's rule). */
function looksSpecial(s: string): boolean {
  return (s.startsWith('<|') && s.endsWith('|>')) || (s.startsWith('<｜') && s.endsWith('｜>')) || ['<pad>', '<mask>'].includes(s);
}

/**
 * tokenizer.ggml.* for a checkpoint folder's tokenizer.json: the token list (padded with unused
 * `[PADn]` tokens up to the model's vocab_size), token types, merges or scores, the special
 * token ids, and add_bos/add_eos as Blocklab's tokenizer applies them.
 */
export async function ggufTokenizer(dir: string, config: ModelConfig): Promise<GgufTokenizer> {
  const file = join(dir, 'tokenizer.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new BlocklabError(
      'GGUF export needs the checkpoint\'s tokenizer.json (llama.cpp reads the tokenizer from the GGUF file); add the tokenizer files to the folder',
      { file: dir },
    );
  }
  const tok = await HfTokenizer.fromFolder(dir);
  const tj = JSON.parse(text) as Json;
  const model = (tj.model ?? {}) as Json;
  if (tok.vocabSize > config.vocabSize) {
    throw new BlocklabError(`tokenizer.json has ${tok.vocabSize} tokens but config.json says vocab_size ${config.vocabSize}`, { file });
  }
  if (model.type !== 'BPE' || !isObject(model.vocab)) {
    throw new BlocklabError(
      `GGUF export supports BPE tokenizers (byte-level like GPT-2/Llama 3/Qwen2, or SentencePiece-style with byte_fallback like Llama 2/Mistral); this tokenizer.json's model is ${JSON.stringify(model.type ?? null)}`,
      { file },
    );
  }

  // ids → token strings and types, from the vocabulary and the added tokens
  const V = config.vocabSize;
  const tokens: (string | undefined)[] = new Array(V);
  const types = new Int32Array(V).fill(TOKEN_TYPE.NORMAL);
  for (const [s, id] of Object.entries(model.vocab as Record<string, number>)) {
    if (Number.isInteger(id) && id >= 0 && id < V) tokens[id] = s;
  }
  const added = Array.isArray(tj.added_tokens) ? (tj.added_tokens as Json[]) : [];
  for (const a of added) {
    const id = a.id as number;
    const content = a.content as string;
    if (!Number.isInteger(id) || id < 0 || id >= V || typeof content !== 'string') continue;
    tokens[id] = content;
    types[id] = a.special === true || looksSpecial(content) ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED;
  }
  const seen = new Map<string, number>();
  for (let id = 0; id < V; id++) {
    if (tokens[id] === undefined || tokens[id] === '') {
      tokens[id] = `[PAD${id}]`;
      types[id] = TOKEN_TYPE.UNUSED;
    }
    const prev = seen.get(tokens[id]!);
    if (prev !== undefined) {
      throw new BlocklabError(`GGUF export: ids ${prev} and ${id} are both the token ${JSON.stringify(tokens[id])}; llama.cpp needs distinct token strings`, { file });
    }
    seen.set(tokens[id]!, id);
  }

  // BOS/EOS as Blocklab's tokenizer adds them to encode(text)
  const bare = tok.encode('a', { addSpecialTokens: false });
  const full = tok.encode('a');
  let at = -1;
  for (let i = 0; i + bare.length <= full.length && at < 0; i++) {
    if (bare.every((t, j) => full[i + j] === t)) at = i;
  }
  const prefix = at < 0 ? [] : full.slice(0, at);
  const suffix = at < 0 ? [] : full.slice(at + bare.length);
  const bos = tok.bosTokenId ?? config.bosTokenId;
  const eos = tok.eosTokenIds[0] ?? config.eosTokenIds[0] ?? null;
  const addBos = prefix.length === 1 && prefix[0] === bos;
  const addEos = suffix.length === 1 && suffix[0] === eos;
  if (at < 0 || prefix.length > (addBos ? 1 : 0) || suffix.length > (addEos ? 1 : 0)) {
    throw new BlocklabError(
      `GGUF export: this tokenizer adds [${prefix.join(', ')}] before and [${suffix.join(', ')}] after the text; llama.cpp can only add the BOS and EOS tokens`,
      { file },
    );
  }

  const kvs: GgufKv[] = [];
  let ggmlModel: 'gpt2' | 'llama';
  let pre: string;
  const byteFallback = model.byte_fallback === true;
  if (!byteFallback) {
    ggmlModel = 'gpt2';
    pre = bytelevelPre(tj, model, file);
    kvs.push(['tokenizer.ggml.model', gguf.string('gpt2')], ['tokenizer.ggml.pre', gguf.string(pre)]);
    kvs.push(['tokenizer.ggml.tokens', gguf.strings(tokens as string[])], ['tokenizer.ggml.token_type', gguf.i32s(types)]);
    kvs.push(['tokenizer.ggml.merges', gguf.strings(mergeStrings(model.merges, file))]);
  } else {
    ggmlModel = 'llama';
    pre = 'default';
    const addSpacePrefix = sentencePieceSpacing(tj, file);
    // SentencePiece merges pairs by the score of the merged piece; give each piece the rank of the
    // first merge that makes it, so that llama.cpp merges in the order of tokenizer.json's merges
    const merges = mergeStrings(model.merges, file);
    const scores = new Float32Array(V);
    const scored = new Set<number>();
    for (const [rank, m] of merges.entries()) {
      const sp = m.indexOf(' ', 1);
      const id = (model.vocab as Record<string, number>)[m.slice(0, sp) + m.slice(sp + 1)];
      if (id !== undefined && id < V && !scored.has(id)) {
        scores[id] = -rank;
        scored.add(id);
      }
    }
    for (let id = 0; id < V; id++) if (types[id] === TOKEN_TYPE.NORMAL && /^<0x[0-9A-Fa-f]{2}>$/.test(tokens[id]!)) types[id] = TOKEN_TYPE.BYTE;
    const unk = typeof model.unk_token === 'string' ? (model.vocab as Record<string, number>)[model.unk_token] : undefined;
    if (unk !== undefined && unk < V) {
      types[unk] = TOKEN_TYPE.UNKNOWN;
      kvs.push(['tokenizer.ggml.unknown_token_id', gguf.u32(unk)]);
    }
    kvs.unshift(['tokenizer.ggml.model', gguf.string('llama')], ['tokenizer.ggml.pre', gguf.string('default')]);
    kvs.push(['tokenizer.ggml.tokens', gguf.strings(tokens as string[])], ['tokenizer.ggml.scores', gguf.f32s(scores)]);
    kvs.push(['tokenizer.ggml.token_type', gguf.i32s(types)], ['tokenizer.ggml.add_space_prefix', gguf.bool(addSpacePrefix)]);
  }
  if (bos !== null && bos < V) kvs.push(['tokenizer.ggml.bos_token_id', gguf.u32(bos)]);
  if (eos !== null && eos < V) kvs.push(['tokenizer.ggml.eos_token_id', gguf.u32(eos)]);
  if (addBos && bos === null) throw new BlocklabError('GGUF export: the tokenizer adds a BOS token but names none', { file });
  kvs.push(['tokenizer.ggml.add_bos_token', gguf.bool(addBos)], ['tokenizer.ggml.add_eos_token', gguf.bool(addEos)]);
  if (tok.chatTemplate !== null) kvs.push(['tokenizer.chat_template', gguf.string(tok.chatTemplate)]);
  return { model: ggmlModel, pre, kvs };
}

/**
 * A SentencePiece-style tokenizer.json (BPE with byte_fallback) must turn spaces into "▁" and
 * put one before the text, as llama.cpp's SPM tokenizer does: the legacy normalizer
 * (Prepend "▁" + Replace " " → "▁") or a Metaspace pre-tokenizer. Returns add_space_prefix.
 */
function sentencePieceSpacing(tj: Json, file: string): boolean {
  const n = tj.normalizer;
  const p = tj.pre_tokenizer;
  const steps = isObject(n) && n.type === 'Sequence' && Array.isArray(n.normalizers) ? (n.normalizers as Json[]) : isObject(n) ? [n] : [];
  const isPrepend = (s: Json) => s.type === 'Prepend' && s.prepend === '▁';
  const isReplace = (s: Json) => s.type === 'Replace' && isObject(s.pattern) && s.pattern.String === ' ' && s.content === '▁';
  if ((p === null || p === undefined) && steps.length > 0 && steps.every((s) => isPrepend(s) || isReplace(s)) && steps.some(isReplace)) {
    return steps.some(isPrepend);
  }
  if ((n === null || n === undefined) && isObject(p) && p.type === 'Metaspace' && p.replacement === '▁' && p.split !== true) {
    const scheme = p.prepend_scheme ?? (p.add_prefix_space === false ? 'never' : 'always');
    return scheme !== 'never';
  }
  throw new BlocklabError(
    `GGUF export: a byte_fallback BPE tokenizer must map spaces to "▁" the SentencePiece way (normalizer Prepend+Replace, or a Metaspace pre-tokenizer without split); this one has normalizer ${JSON.stringify(n ?? null).slice(0, 120)} and pre_tokenizer ${JSON.stringify(p ?? null).slice(0, 120)}`,
    { file },
  );
}

// =============================================================================================
// A checkpoint → GGUF

export interface GgufExportPlan {
  architecture: GgufArchitecture;
  dtype: GgufFileType;
  kvs: GgufKv[];
  tensors: GgufTensor[];
  tokenizer: { model: string; pre: string };
  /** things that differ between the GGUF and the engine, worth telling the user */
  warnings: string[];
  /** how many tensors of each ggml type the file holds */
  tensorTypes: Partial<Record<GgmlTypeName, number>>;
  /**
   * Each checkpoint weight (by HF name) as llama.cpp will see it: the bytes this plan writes,
   * decoded (dequantized) and un-permuted back into the checkpoint's layout. A model loaded from
   * these computes what the GGUF file computes, up to llama.cpp's arithmetic.
   */
  asWritten: Map<string, () => Promise<Float32Array>>;
}

/** The default GGUF dtype: F32 for an F32 checkpoint (exact), F16 for F16 and BF16 ones. */
export function defaultGgufDtype(source: DType): GgufFileType {
  return source === 'F32' ? 'F32' : 'F16';
}

/** Everything that goes into the GGUF file of a checkpoint, with tensor data still unread. */
export async function planGgufExport(ckpt: Checkpoint, opts: { dtype?: GgufFileType; name?: string } = {}): Promise<GgufExportPlan> {
  const c = ckpt.config;
  const arch = ggufArchitecture(c);
  const dtype = opts.dtype ?? defaultGgufDtype(ckpt.dtype);
  const warnings: string[] = [];
  if (c.slidingWindow !== null && c.slidingWindow < c.maxPositionEmbeddings && c.slidingWindowFromLayer < c.numLayers) {
    warnings.push(
      `sliding_window ${c.slidingWindow} is not in the GGUF (llama.cpp's ${arch} graph attends to the whole context, as its own converter does): beyond ${c.slidingWindow} tokens llama.cpp computes something different from this checkpoint`,
    );
  }
  const tokenizer = await ggufTokenizer(ckpt.dir, c);
  const name = opts.name ?? basename(ckpt.dir.replace(/[\\/]+$/, ''));

  const p = `${arch}.`;
  const kvs: GgufKv[] = [
    ['general.architecture', gguf.string(arch)],
    ['general.name', gguf.string(name)],
    ['general.file_type', gguf.u32(LLAMA_FTYPE[dtype])],
    ['general.alignment', gguf.u32(GGUF_DEFAULT_ALIGNMENT)],
    [`${p}vocab_size`, gguf.u32(c.vocabSize)],
    [`${p}context_length`, gguf.u32(c.maxPositionEmbeddings)],
    [`${p}embedding_length`, gguf.u32(c.hiddenSize)],
    [`${p}block_count`, gguf.u32(c.numLayers)],
    [`${p}feed_forward_length`, gguf.u32(c.intermediateSize)],
    [`${p}attention.head_count`, gguf.u32(c.numHeads)],
    [`${p}attention.head_count_kv`, gguf.u32(c.numKvHeads)],
    [`${p}attention.layer_norm_rms_epsilon`, gguf.f32(c.rmsNormEps)],
    [`${p}rope.freq_base`, gguf.f32(c.ropeTheta)],
    [`${p}rope.dimension_count`, gguf.u32(c.headDim)],
  ];
  if (c.headDim * c.numHeads !== c.hiddenSize) {
    kvs.push([`${p}attention.key_length`, gguf.u32(c.headDim)], [`${p}attention.value_length`, gguf.u32(c.headDim)]);
  }
  kvs.push(...tokenizer.kvs);
  if (ckpt.expansion) kvs.push(['blocklab.expansion', gguf.string(JSON.stringify(ckpt.expansion))]);

  const tensors: GgufTensor[] = [];
  const asWritten = new Map<string, () => Promise<Float32Array>>();
  const fallbacks: { hf: string; type: GgmlTypeName }[] = [];
  const info = (hf: string): TensorInfo => {
    const t = ckpt.tensors.get(hf);
    if (!t) throw new BlocklabError(`tensor ${hf} is missing`, { file: ckpt.dir });
    return t;
  };
  const permuteQK = arch === 'llama';
  const add = (hf: string) => {
    let permute: { heads: number } | null = null;
    if (permuteQK && /\.self_attn\.q_proj\.(weight|bias)$/.test(hf)) permute = { heads: c.numHeads };
    if (permuteQK && /\.self_attn\.k_proj\.(weight|bias)$/.test(hf)) permute = { heads: c.numKvHeads };
    const source = info(hf);
    const { type, fallback } = ggufTensorType(ggufTensorName(hf), source.shape, dtype, c.tieWordEmbeddings, c.numLayers);
    if (fallback) fallbacks.push({ hf, type });
    const w = weightTensor(hf, source, type, permute);
    tensors.push(w.tensor);
    asWritten.set(hf, w.asWritten);
  };
  if (c.ropeScaling) {
    const factors = llama3RopeFactors(c);
    tensors.push({ name: 'rope_freqs.weight', type: 'F32', shape: [factors.length], data: async () => fromFloat32(factors, 'F32') });
  }
  add('model.embed_tokens.weight');
  for (let i = 0; i < c.numLayers; i++) {
    const b = `model.layers.${i}.`;
    add(`${b}input_layernorm.weight`);
    for (const proj of ['q_proj', 'k_proj', 'v_proj']) {
      add(`${b}self_attn.${proj}.weight`);
      if (c.qkvBias) add(`${b}self_attn.${proj}.bias`);
    }
    add(`${b}self_attn.o_proj.weight`);
    if (c.oBias) add(`${b}self_attn.o_proj.bias`);
    add(`${b}post_attention_layernorm.weight`);
    for (const proj of ['gate_proj', 'up_proj', 'down_proj']) {
      add(`${b}mlp.${proj}.weight`);
      if (c.mlpBias) add(`${b}mlp.${proj}.bias`);
    }
  }
  add('model.norm.weight');
  if (!c.tieWordEmbeddings) add('lm_head.weight');
  if (fallbacks.length) {
    const types = [...new Set(fallbacks.map((f) => f.type))].sort().join(' / ');
    const blocks = dtype === 'Q4_K_M' ? `whole ${QUANT_BLOCK_VALUES.Q4_K}-value super-blocks` : `a multiple of ${QK} values`;
    warnings.push(
      `${fallbacks.length} matri${fallbacks.length === 1 ? 'x is' : 'ces are'} ${types}, not ${dtype}'s type: ${dtype} needs rows of ${blocks} (as llama.cpp's tools do, they fall back): ${fallbacks
        .slice(0, 4)
        .map((f) => f.hf)
        .join(', ')}${fallbacks.length > 4 ? ', …' : ''}`,
    );
  }
  const tensorTypes: Partial<Record<GgmlTypeName, number>> = {};
  for (const t of tensors) tensorTypes[t.type] = (tensorTypes[t.type] ?? 0) + 1;
  return { architecture: arch, dtype, kvs, tensors, tokenizer: { model: tokenizer.model, pre: tokenizer.pre }, warnings, tensorTypes, asWritten };
}

export interface GgufExportResult {
  out: string;
  format: 'gguf';
  dtype: GgufFileType;
  bytes: number;
  tensors: number;
  architecture: GgufArchitecture;
  tokenizer: { model: string; pre: string };
  tensorTypes: Partial<Record<GgmlTypeName, number>>;
  warnings: string[];
}

/** Writes a checkpoint as one GGUF file at `out` (atomically; see writeGguf). `plan` is planGgufExport's, made here when not given. */
export async function exportCheckpointGguf(
  ckpt: Checkpoint,
  opts: { out: string; dtype?: GgufFileType; overwrite?: boolean; name?: string; plan?: GgufExportPlan; onTensor?: (index: number, total: number, name: string) => void },
): Promise<GgufExportResult> {
  const plan = opts.plan ?? (await planGgufExport(ckpt, { dtype: opts.dtype, name: opts.name }));
  const { bytes } = await writeGguf(opts.out, plan.kvs, plan.tensors, {
    overwrite: opts.overwrite,
    onTensor: opts.onTensor ? (i, name) => opts.onTensor!(i, plan.tensors.length, name) : undefined,
  });
  return {
    out: opts.out,
    format: 'gguf',
    dtype: plan.dtype,
    bytes,
    tensors: plan.tensors.length,
    architecture: plan.architecture,
    tokenizer: plan.tokenizer,
    tensorTypes: plan.tensorTypes,
    warnings: plan.warnings,
  };
}

/** `--dtype` of a GGUF export: f32, f16, q8_0, q4_0, q4_k_m (case-insensitive; float32 and float16 too), or null. */
export function parseGgufDtype(text: string): GgufFileType | null {
  const float = parseDtypeOption(text);
  if (float === 'F32' || float === 'F16') return float;
  const t = text.toLowerCase();
  if (t === 'q8_0') return 'Q8_0';
  if (t === 'q4_0') return 'Q4_0';
  if (t === 'q4_k_m') return 'Q4_K_M';
  return null;
}
