/**
 * Deliberately wrong models, written as data. For each mistake a LLaMA implementation plausibly
 * makes, a transformation of a checkpoint folder such that the *correct* engine run on the
 * transformed folder computes exactly what the *wrong* engine would compute on the original.
 * A reference comparison that passes a transformed folder would pass that wrong engine too.
 *
 * Expressing the mistakes through the checkpoint (config.json and the tensors' bytes) rather than
 * by patching the engine keeps these checks independent of how the engine stores or loads its
 * weights: they use only `loadModel`, `scoreIds` and the forward pass.
 *
 * Why each transformation equals its mistake (q, k: one head's query/key vector, R(θ) the
 * rotation of RoPE, σ a permutation):
 *   - eps, rope_theta, sliding window, rope_scaling: the config value the wrong engine uses.
 *   - RoPE pairing: an engine that rotates adjacent pairs (x₂ᵢ, x₂ᵢ₊₁) — llama.cpp's layout, GPT-J —
 *     instead of (xᵢ, xᵢ₊ₕ) computes the correct rotate-half RoPE of rows reordered
 *     [0, 2, 4, …, 1, 3, 5, …] within each head. Reordering q and k alike leaves q·k unchanged
 *     otherwise, so only the pairing differs.
 *   - RoPE direction (rotate_half with the wrong sign): R(−θ) = F·R(θ)·F with F negating the
 *     second half of a head; F is orthogonal, so the scores equal the correct RoPE of F·q, F·k:
 *     flip the sign bit of the second half of every head's q and k rows.
 *   - kv-head mapping: an engine that lets query head h read kv head h mod nkv (tiling instead of
 *     transformers' repeat_interleave, h // g) equals the correct engine with query head h moved
 *     to slot σ(h) = (h mod nkv)·g + ⌊h / nkv⌋, in q_proj's rows and o_proj's columns alike.
 *   - tied head: lm_head.weight dropped and tie_word_embeddings set: the head is the embedding.
 *   - biases ignored: the bias tensors are zero.
 *   - SwiGLU halves swapped (silu(up)·gate): gate_proj and up_proj exchanged.
 *   - attention scaled by 1/hd instead of 1/√hd: q_proj (and its bias) multiplied by 1/√hd.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fromFloat32, toFloat32, type DType } from '../../src/main/engine/dtype.js';
import { readShardedIndex, readTensorBytes } from '../../src/main/engine/safetensors.js';

export interface RawTensor {
  dtype: DType;
  shape: number[];
  bytes: Uint8Array;
}

/** A checkpoint folder as data: config.json and every tensor's bytes, in the file's order. */
export interface RawCheckpoint {
  config: Record<string, any>;
  tensors: Map<string, RawTensor>;
}

export async function readRawCheckpoint(dir: string): Promise<RawCheckpoint> {
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, any>;
  const tensors = new Map<string, RawTensor>();
  for (const [name, info] of await readShardedIndex(dir)) {
    tensors.set(name, { dtype: info.dtype, shape: [...info.shape], bytes: await readTensorBytes(info) });
  }
  return { config, tensors };
}

/** Writes config.json and one model.safetensors (the safetensors layout, written here by hand). */
export async function writeRawCheckpoint(c: RawCheckpoint, dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify(c.config, null, 2) + '\n');
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, t] of c.tensors) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  await writeFile(join(dir, 'model.safetensors'), Buffer.concat([len, json, ...[...c.tensors.values()].map((t) => Buffer.from(t.bytes))]));
  return dir;
}

// ---------------------------------------------------------------------------------------------
// The shape facts the transformations need, read from config.json as transformers reads it

export interface Dims {
  D: number;
  nh: number;
  nkv: number;
  hd: number;
  g: number;
  layers: number;
}

export function dims(config: Record<string, any>): Dims {
  const D = config.hidden_size as number;
  const nh = config.num_attention_heads as number;
  const nkv = (config.num_key_value_heads ?? nh) as number;
  const hd = (config.head_dim ?? D / nh) as number;
  return { D, nh, nkv, hd, g: nh / nkv, layers: config.num_hidden_layers as number };
}

function elementBytes(t: RawTensor): number {
  return t.dtype === 'F32' ? 4 : 2;
}

/** A copy of `t` whose rows (first dimension) are taken from `from[row]`. */
function reorderRows(t: RawTensor, from: number[]): RawTensor {
  const rowBytes = (t.shape.length === 1 ? 1 : t.shape.slice(1).reduce((a, b) => a * b, 1)) * elementBytes(t);
  const out = new Uint8Array(t.bytes.length);
  from.forEach((src, row) => out.set(t.bytes.subarray(src * rowBytes, (src + 1) * rowBytes), row * rowBytes));
  return { ...t, bytes: out };
}

/** A copy of the 2-D `t` whose columns are taken from `from[col]`. */
function reorderColumns(t: RawTensor, from: number[]): RawTensor {
  const [rows, cols] = t.shape;
  const e = elementBytes(t);
  const out = new Uint8Array(t.bytes.length);
  for (let r = 0; r < rows; r++) {
    from.forEach((src, col) => out.set(t.bytes.subarray((r * cols + src) * e, (r * cols + src + 1) * e), (r * cols + col) * e));
  }
  return { ...t, bytes: out };
}

/** A copy of `t` with the sign of every element of the chosen rows flipped (exact in every dtype). */
function negateRows(t: RawTensor, rows: (row: number) => boolean): RawTensor {
  const perRow = t.shape.length === 1 ? 1 : t.shape.slice(1).reduce((a, b) => a * b, 1);
  const e = elementBytes(t);
  const out = Uint8Array.from(t.bytes);
  for (let i = 0; i < out.length / e; i++) if (rows(Math.floor(i / perRow))) out[i * e + e - 1] ^= 0x80; // little-endian: the sign bit is in the last byte
  return { ...t, bytes: out };
}

function scaled(t: RawTensor, factor: number): RawTensor {
  const values = toFloat32(t.bytes, t.dtype).map((v) => v * factor);
  return { ...t, bytes: fromFloat32(values, t.dtype) };
}

function zeroed(t: RawTensor): RawTensor {
  return { ...t, bytes: new Uint8Array(t.bytes.length) };
}

/** Row order within each head that turns rotate-half RoPE into adjacent-pair RoPE. */
function interleavedPairsOrder(heads: number, hd: number): number[] {
  const order: number[] = [];
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < hd / 2; i++) order.push(h * hd + 2 * i);
    for (let i = 0; i < hd / 2; i++) order.push(h * hd + 2 * i + 1);
  }
  return order;
}

/** For each new query-head slot, the old head that goes there: slot σ(h) = (h mod nkv)·g + ⌊h / nkv⌋ holds head h. */
function tiledKvOrder({ nh, nkv, g }: Dims): number[] {
  const from = new Array<number>(nh);
  for (let h = 0; h < nh; h++) from[(h % nkv) * g + Math.floor(h / nkv)] = h;
  return from;
}

/** Expands a head-level order to row (or column) indices of hd elements each. */
function perHead(order: number[], hd: number): number[] {
  return order.flatMap((h) => Array.from({ length: hd }, (_, i) => h * hd + i));
}

function edit(c: RawCheckpoint, pattern: RegExp, f: (t: RawTensor, name: string) => RawTensor): void {
  for (const [name, t] of c.tensors) if (pattern.test(name)) c.tensors.set(name, f(t, name));
}

function hasTensor(c: RawCheckpoint, pattern: RegExp): boolean {
  return [...c.tensors.keys()].some((n) => pattern.test(n));
}

/** llama3 rope_scaling's bands: does some frequency fall strictly between the kept and the divided ones? */
function hasMediumBand(config: Record<string, any>): boolean {
  const rs = config.rope_scaling;
  if (!rs || (rs.rope_type ?? rs.type) !== 'llama3') return false;
  const { hd } = dims(config);
  const theta = config.rope_theta ?? 10000;
  for (let i = 0; i < hd; i += 2) {
    const wavelen = 2 * Math.PI * Math.pow(theta, i / hd);
    if (wavelen >= rs.original_max_position_embeddings / rs.high_freq_factor && wavelen <= rs.original_max_position_embeddings / rs.low_freq_factor) return true;
  }
  return false;
}

function slidingWindowActive(config: Record<string, any>): boolean {
  const arch = config.architectures?.[0];
  return typeof config.sliding_window === 'number' && (arch === 'MistralForCausalLM' || (arch === 'Qwen2ForCausalLM' && config.use_sliding_window === true));
}

export interface WrongModel {
  /** short name, used in test titles */
  name: string;
  /** the implementation mistake the transformed checkpoint stands for */
  mistake: string;
  /** whether the mistake can change this checkpoint's output at all (kv mapping under MHA cannot) */
  applies(c: RawCheckpoint): boolean;
  /** transforms the checkpoint in place */
  apply(c: RawCheckpoint): void;
}

const QK = /\.self_attn\.[qk]_proj\.(weight|bias)$/;

export const WRONG_MODELS: WrongModel[] = [
  {
    name: 'rms_norm_eps',
    mistake: 'RMSNorm with the other common epsilon (1e-6 for 1e-5 and back): the config value ignored',
    applies: () => true,
    apply: (c) => {
      c.config.rms_norm_eps = c.config.rms_norm_eps === 1e-5 ? 1e-6 : 1e-5;
    },
  },
  {
    name: 'rope_theta ×1.001',
    mistake: 'rope_theta off by 0.1 % (a base rounded or parsed wrongly)',
    applies: () => true,
    apply: (c) => {
      c.config.rope_theta = (c.config.rope_theta ?? 10000) * 1.001;
    },
  },
  {
    name: 'RoPE adjacent pairs',
    mistake: 'RoPE rotating adjacent pairs (x₂ᵢ, x₂ᵢ₊₁) instead of rotate-half pairs (xᵢ, xᵢ₊ₕ)',
    applies: () => true,
    apply: (c) => {
      const d = dims(c.config);
      edit(c, QK, (t, name) => reorderRows(t, interleavedPairsOrder(name.includes('.q_proj.') ? d.nh : d.nkv, d.hd)));
    },
  },
  {
    name: 'RoPE direction',
    mistake: 'rotate_half with the wrong sign: every position rotated the other way',
    applies: () => true,
    apply: (c) => {
      const { hd } = dims(c.config);
      edit(c, QK, (t) => negateRows(t, (row) => row % hd >= hd / 2));
    },
  },
  {
    name: 'kv heads tiled',
    mistake: 'grouped-query attention mapping query head h to kv head h mod n_kv (tile) instead of h // g (repeat_interleave)',
    applies: (c) => {
      const d = dims(c.config);
      return d.nkv > 1 && d.g > 1;
    },
    apply: (c) => {
      const d = dims(c.config);
      const rows = perHead(tiledKvOrder(d), d.hd);
      edit(c, /\.self_attn\.q_proj\.(weight|bias)$/, (t) => reorderRows(t, rows));
      edit(c, /\.self_attn\.o_proj\.weight$/, (t) => reorderColumns(t, rows));
    },
  },
  {
    name: 'head tied',
    mistake: 'an untied model run with the embedding as its LM head (lm_head.weight ignored)',
    applies: (c) => c.tensors.has('lm_head.weight'),
    apply: (c) => {
      c.tensors.delete('lm_head.weight');
      c.config.tie_word_embeddings = true;
    },
  },
  {
    name: 'q/k/v biases ignored',
    mistake: 'q/k/v projection biases not added (Qwen2, Llama attention_bias)',
    applies: (c) => hasTensor(c, /\.[qkv]_proj\.bias$/),
    apply: (c) => edit(c, /\.[qkv]_proj\.bias$/, zeroed),
  },
  {
    name: 'o_proj bias ignored',
    mistake: 'o_proj bias not added (Llama attention_bias)',
    applies: (c) => hasTensor(c, /\.o_proj\.bias$/),
    apply: (c) => edit(c, /\.o_proj\.bias$/, zeroed),
  },
  {
    name: 'MLP biases ignored',
    mistake: 'gate/up/down biases not added (Llama mlp_bias)',
    applies: (c) => hasTensor(c, /\.mlp\.\w+_proj\.bias$/),
    apply: (c) => edit(c, /\.mlp\.\w+_proj\.bias$/, zeroed),
  },
  {
    name: 'SwiGLU halves swapped',
    mistake: 'silu(up(x))·gate(x) instead of silu(gate(x))·up(x)',
    applies: () => true,
    apply: (c) => {
      for (const [name, t] of [...c.tensors]) {
        const m = /^(.*\.mlp\.)gate_proj\.(weight|bias)$/.exec(name);
        if (!m) continue;
        const up = `${m[1]}up_proj.${m[2]}`;
        c.tensors.set(name, c.tensors.get(up)!);
        c.tensors.set(up, t);
      }
    },
  },
  {
    name: 'attention scale 1/hd',
    mistake: 'attention scores scaled by 1/head_dim instead of 1/√head_dim',
    applies: () => true,
    apply: (c) => {
      const { hd } = dims(c.config);
      edit(c, /\.self_attn\.q_proj\.(weight|bias)$/, (t) => scaled(t, 1 / Math.sqrt(hd)));
    },
  },
  {
    name: 'sliding window +1',
    mistake: 'a sliding window that lets a query see one key too many (q − k ≤ W instead of < W)',
    applies: (c) => slidingWindowActive(c.config),
    apply: (c) => {
      c.config.sliding_window += 1;
    },
  },
  {
    name: 'sliding window ignored',
    mistake: 'full causal attention where the config asks for a sliding window',
    applies: (c) => slidingWindowActive(c.config),
    apply: (c) => {
      c.config.sliding_window = null;
    },
  },
  {
    name: 'llama3 scaling ignored',
    mistake: 'rope_scaling of type llama3 not applied',
    applies: (c) => (c.config.rope_scaling?.rope_type ?? c.config.rope_scaling?.type) === 'llama3',
    apply: (c) => {
      c.config.rope_scaling = null;
    },
  },
  {
    name: 'llama3 smoothing skipped',
    mistake: 'llama3 scaling without the smoothed middle band (every wavelength above original/high_freq_factor divided by factor)',
    applies: (c) => hasMediumBand(c.config),
    apply: (c) => {
      // the band [orig/high, orig/low] shrinks to [orig/high, orig/(0.999·high)]: no frequency is left in it
      c.config.rope_scaling = { ...c.config.rope_scaling, low_freq_factor: 0.999 * c.config.rope_scaling.high_freq_factor };
    },
  },
];

/**
 * Controls: transformations that must NOT change the model. They show that a wrong model fails
 * because of its mistake and not because rewriting the folder broke something.
 */
export const SYMMETRIES: WrongModel[] = [
  {
    name: 'rewritten as is',
    mistake: 'none: the folder read and written back unchanged (one file, no shards)',
    applies: () => true,
    apply: () => undefined,
  },
  {
    name: 'heads relabelled',
    mistake: 'none: kv heads in reverse order with their query heads (q_proj rows, o_proj columns) reversed too — the same model',
    applies: (c) => dims(c.config).nh > 1,
    apply: (c) => {
      const d = dims(c.config);
      const reversed = (n: number) => perHead(Array.from({ length: n }, (_, h) => n - 1 - h), d.hd);
      edit(c, /\.self_attn\.q_proj\.(weight|bias)$/, (t) => reorderRows(t, reversed(d.nh)));
      edit(c, /\.self_attn\.[kv]_proj\.(weight|bias)$/, (t) => reorderRows(t, reversed(d.nkv)));
      edit(c, /\.self_attn\.o_proj\.weight$/, (t) => reorderColumns(t, reversed(d.nh)));
    },
  },
];
