/**
 * The GGUF writer's bytes, read back by an independent minimal reader written here from the
 * format description (not from gguf.ts), the Q/K row permutation against hand-computed cases
 * and against RoPE itself, llama3 rope factors, tensor names, and the atomic write.
 */
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  GGUF_TYPE,
  gguf,
  ggufTensorName,
  llama3RopeFactors,
  permuteRotaryRows,
  writeGguf,
  type GgufKv,
  type GgufTensor,
} from '../../src/main/engine/gguf.js';
import { parseHfConfig } from '../../src/main/engine/config.js';
import { fromFloat32 } from '../../src/main/engine/dtype.js';
import { testDir } from '../helpers/tmp.js';

// ---------------------------------------------------------------------------------------------
// An independent reader: GGUF v3 as the spec (ggml/docs/gguf.md) describes it

interface ReadTensor {
  name: string;
  dims: number[];
  type: number;
  offset: number;
}
interface ReadGguf {
  version: number;
  kv: Map<string, { type: number; itemType?: number; value: unknown }>;
  tensors: ReadTensor[];
  dataStart: number;
  bytes: Uint8Array;
}

function readGguf(bytes: Uint8Array): ReadGguf {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 0;
  const u32 = () => ((p += 4), dv.getUint32(p - 4, true));
  const u64 = () => {
    const v = dv.getBigUint64(p, true);
    p += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error('u64 too large');
    return Number(v);
  };
  const str = () => {
    const n = u64();
    const s = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(p, p + n));
    p += n;
    return s;
  };
  const scalar = (type: number): unknown => {
    switch (type) {
      case 0: return dv.getUint8((p += 1) - 1);
      case 1: return dv.getInt8((p += 1) - 1);
      case 2: return dv.getUint16((p += 2) - 2, true);
      case 3: return dv.getInt16((p += 2) - 2, true);
      case 4: return u32();
      case 5: return dv.getInt32((p += 4) - 4, true);
      case 6: return dv.getFloat32((p += 4) - 4, true);
      case 7: {
        const b = dv.getUint8(p++);
        if (b > 1) throw new Error(`bool byte ${b}`);
        return b === 1;
      }
      case 8: return str();
      case 10: return u64();
      case 11: return Number(dv.getBigInt64((p += 8) - 8, true));
      case 12: return dv.getFloat64((p += 8) - 8, true);
      default: throw new Error(`unknown value type ${type}`);
    }
  };
  const magic = String.fromCharCode(...bytes.subarray(0, 4));
  if (magic !== 'GGUF') throw new Error(`magic ${magic}`);
  p = 4;
  const version = u32();
  const nTensors = u64();
  const nKv = u64();
  const kv = new Map<string, { type: number; itemType?: number; value: unknown }>();
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const type = u32();
    if (type === 9) {
      const itemType = u32();
      const n = u64();
      const values: unknown[] = [];
      for (let j = 0; j < n; j++) values.push(scalar(itemType));
      kv.set(key, { type, itemType, value: values });
    } else {
      kv.set(key, { type, value: scalar(type) });
    }
  }
  const tensors: ReadTensor[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nd = u32();
    const dims: number[] = [];
    for (let j = 0; j < nd; j++) dims.push(u64());
    tensors.push({ name, dims, type: u32(), offset: u64() });
  }
  const alignment = (kv.get('general.alignment')?.value as number | undefined) ?? 32;
  const dataStart = Math.ceil(p / alignment) * alignment;
  for (let i = p; i < dataStart; i++) if (bytes[i] !== 0) throw new Error('non-zero header padding');
  return { version, kv, tensors, dataStart, bytes };
}

function tensorData(g: ReadGguf, t: ReadTensor): Uint8Array {
  const n = t.dims.reduce((a, b) => a * b, 1) * (t.type === 0 ? 4 : 2);
  return g.bytes.subarray(g.dataStart + t.offset, g.dataStart + t.offset + n);
}

let dir: string;
beforeAll(async () => {
  dir = await testDir('gguf-unit');
});

const bytesOf = (values: number[], type: 'F32' | 'F16') => fromFloat32(Float32Array.from(values), type);

describe('the GGUF v3 container', () => {
  const kvs: GgufKv[] = [
    ['general.architecture', gguf.string('llama')],
    ['general.name', gguf.string('tïny ✓')],
    ['general.alignment', gguf.u32(32)],
    ['a.u32', gguf.u32(4_000_000_000)],
    ['a.i32', gguf.i32(-7)],
    ['a.u64', gguf.u64(2 ** 40 + 3)],
    ['a.f32', gguf.f32(1e-5)],
    ['a.bool', gguf.bool(true)],
    ['a.strings', gguf.strings(['Ġthe', '', '<|eot_id|>'])],
    ['a.i32s', gguf.i32s(Int32Array.from([1, -2, 3]))],
    ['a.f32s', gguf.f32s([0.5, -0.25])],
  ];
  const m = [1, 2, 3, 4, 5, 6]; // a [2, 3] matrix, row-major
  const v = [1, 2, 3, 4, 5]; // 5 halves = 10 bytes: padded to 32
  const tensors: GgufTensor[] = [
    { name: 'blk.0.attn_q.weight', type: 'F32', shape: [2, 3], data: async () => bytesOf(m, 'F32') },
    { name: 'blk.0.attn_norm.weight', type: 'F16', shape: [5], data: async () => bytesOf(v, 'F16') },
    { name: 'output_norm.weight', type: 'F32', shape: [1], data: async () => bytesOf([9], 'F32') },
  ];

  it('writes magic, version 3, counts, every key/value type, reversed dims, 32-byte aligned offsets and data', async () => {
    const file = join(dir, 'hand.gguf');
    const { bytes } = await writeGguf(file, kvs, tensors);
    const raw = new Uint8Array(await readFile(file));
    expect(raw.length).toBe(bytes);
    // the first 24 bytes, spelled out
    expect([...raw.subarray(0, 24)]).toEqual([0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0]);

    const g = readGguf(raw);
    expect(g.version).toBe(3);
    const t = (k: string) => g.kv.get(k)!;
    expect(t('general.architecture')).toEqual({ type: GGUF_TYPE.STRING, value: 'llama' });
    expect(t('general.name').value).toBe('tïny ✓');
    expect(t('general.alignment')).toEqual({ type: GGUF_TYPE.UINT32, value: 32 });
    expect(t('a.u32')).toEqual({ type: GGUF_TYPE.UINT32, value: 4_000_000_000 });
    expect(t('a.i32')).toEqual({ type: GGUF_TYPE.INT32, value: -7 });
    expect(t('a.u64')).toEqual({ type: GGUF_TYPE.UINT64, value: 2 ** 40 + 3 });
    expect(t('a.f32').type).toBe(GGUF_TYPE.FLOAT32);
    expect(t('a.f32').value).toBeCloseTo(1e-5, 12);
    expect(t('a.bool')).toEqual({ type: GGUF_TYPE.BOOL, value: true });
    expect(t('a.strings')).toEqual({ type: GGUF_TYPE.ARRAY, itemType: GGUF_TYPE.STRING, value: ['Ġthe', '', '<|eot_id|>'] });
    expect(t('a.i32s')).toEqual({ type: GGUF_TYPE.ARRAY, itemType: GGUF_TYPE.INT32, value: [1, -2, 3] });
    expect(t('a.f32s')).toEqual({ type: GGUF_TYPE.ARRAY, itemType: GGUF_TYPE.FLOAT32, value: [0.5, -0.25] });
    expect([...g.kv.keys()]).toEqual(kvs.map(([k]) => k)); // in the order given

    expect(g.dataStart % 32).toBe(0);
    expect(g.tensors).toEqual([
      { name: 'blk.0.attn_q.weight', dims: [3, 2], type: 0, offset: 0 }, // ne[0] = columns
      { name: 'blk.0.attn_norm.weight', dims: [5], type: 1, offset: 32 }, // 24 bytes → next at 32
      { name: 'output_norm.weight', dims: [1], type: 0, offset: 64 }, // 10 bytes → next at 64
    ]);
    expect([...new Float32Array(tensorData(g, g.tensors[0]).slice().buffer)]).toEqual(m);
    expect(Buffer.from(tensorData(g, g.tensors[1])).equals(Buffer.from(bytesOf(v, 'F16')))).toBe(true);
    expect([...new Float32Array(tensorData(g, g.tensors[2]).slice().buffer)]).toEqual([9]);
    // padding between tensors is zero; the file ends padded to the alignment
    expect([...raw.subarray(g.dataStart + 24, g.dataStart + 32)].every((b) => b === 0)).toBe(true);
    expect([...raw.subarray(g.dataStart + 42, g.dataStart + 64)].every((b) => b === 0)).toBe(true);
    expect(raw.length).toBe(g.dataStart + 96);
  });

  it('refuses duplicate keys and tensors, wrong data sizes, and long names, before or without leaving a file', async () => {
    const file = join(dir, 'bad.gguf');
    await expect(writeGguf(file, [kvs[0], kvs[0]], [])).rejects.toThrow(/given twice/);
    await expect(writeGguf(file, kvs, [tensors[0], tensors[0]])).rejects.toThrow(/given twice/);
    await expect(writeGguf(file, kvs, [{ ...tensors[0], data: async () => new Uint8Array(8) }])).rejects.toThrow(/got 8 bytes.*24 bytes/);
    await expect(writeGguf(file, kvs, [{ ...tensors[2], name: 'x'.repeat(64) }])).rejects.toThrow(/63 bytes/);
    await expect(writeGguf(file, [['k', gguf.u32(-1)]], [])).rejects.toThrow(/not an integer/);
    expect(await readdir(dir)).not.toContain('bad.gguf');
    expect((await readdir(dir)).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('is atomic: a failure mid-write leaves the previous file and no temporary file; replacing needs overwrite, and only a GGUF file is replaced', async () => {
    const file = join(dir, 'atomic.gguf');
    await writeFile(file, 'not a gguf: a file of the user');
    await expect(writeGguf(file, kvs, tensors, { overwrite: true })).rejects.toThrow(/not a GGUF file; Blocklab will not replace it/);
    expect(await readFile(file, 'utf8')).toBe('not a gguf: a file of the user');
    await rm(file);
    await writeGguf(file, kvs, tensors.slice(0, 1));
    const previous = await readFile(file);
    await expect(writeGguf(file, kvs, tensors)).rejects.toThrow(/already exists.*--overwrite/);
    const failing: GgufTensor[] = [
      tensors[0],
      { ...tensors[1], data: async () => { throw new Error('disk on fire'); } },
    ];
    await expect(writeGguf(file, kvs, failing, { overwrite: true })).rejects.toThrow(/disk on fire/);
    expect(Buffer.compare(await readFile(file), previous)).toBe(0);
    expect((await readdir(dir)).filter((n) => n.startsWith('.'))).toEqual([]);
    await writeGguf(file, kvs, tensors, { overwrite: true });
    expect(readGguf(new Uint8Array(await readFile(file))).tensors).toHaveLength(3);
    await expect(writeGguf(dir, kvs, tensors, { overwrite: true })).rejects.toThrow(/is a folder/);
  });
});

describe('the Q/K row permutation (HF rotate-half → llama.cpp interleaved pairs)', () => {
  it('matches W.reshape(nh, 2, hd/2, in).swapaxes(1, 2), computed by hand', () => {
    // 2 heads of hd = 4, one column (a bias): per head rows [0, 2, 1, 3]
    expect([...permuteRotaryRows(Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), 2, 1)]).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
    // 1 head of hd = 6: [[r0 r1 r2] [r3 r4 r5]] swapped → r0 r3 r1 r4 r2 r5
    expect([...permuteRotaryRows(Float32Array.from([10, 11, 12, 13, 14, 15]), 1, 1)]).toEqual([10, 13, 11, 14, 12, 15]);
    // 2 heads of hd = 2 (nothing to move) with 2 columns: rows stay whole
    const w = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    expect([...permuteRotaryRows(w, 2, 2)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    // 1 head of hd = 4 with 3 columns: rows r0 r2 r1 r3, each row's 3 values kept together
    const rows = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]];
    expect([...permuteRotaryRows(Float32Array.from(rows.flat()), 1, 3)]).toEqual([rows[0], rows[2], rows[1], rows[3]].flat());
  });

  it('turns HF RoPE on the original rows into interleaved RoPE on the permuted rows', () => {
    const heads = 3;
    const hd = 8;
    const cols = 5;
    const pos = 7;
    const theta = 10000;
    const w = Float32Array.from({ length: heads * hd * cols }, (_, i) => Math.sin(i * 1.7) + 0.1 * i);
    const x = Float32Array.from({ length: cols }, (_, i) => Math.cos(i));
    const matvec = (m: Float32Array) => Array.from({ length: heads * hd }, (_, r) => x.reduce((s, xv, c) => s + m[r * cols + c] * xv, 0));
    const angle = (i: number) => pos * Math.pow(theta, (-2 * i) / hd);
    // HF: pairs (i, i + hd/2)
    const hf = matvec(w);
    const hfRoped = [...hf];
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < hd / 2; i++) {
        const a = hf[h * hd + i], b = hf[h * hd + i + hd / 2];
        hfRoped[h * hd + i] = a * Math.cos(angle(i)) - b * Math.sin(angle(i));
        hfRoped[h * hd + i + hd / 2] = b * Math.cos(angle(i)) + a * Math.sin(angle(i));
      }
    }
    // llama.cpp (rope type NORM): pairs (2i, 2i + 1), on the permuted weight's output
    const lc = matvec(permuteRotaryRows(w, heads, cols));
    const lcRoped = [...lc];
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < hd / 2; i++) {
        const a = lc[h * hd + 2 * i], b = lc[h * hd + 2 * i + 1];
        lcRoped[h * hd + 2 * i] = a * Math.cos(angle(i)) - b * Math.sin(angle(i));
        lcRoped[h * hd + 2 * i + 1] = b * Math.cos(angle(i)) + a * Math.sin(angle(i));
      }
    }
    // the same rotated vector, in llama.cpp's row order (row h·hd + 2i + j is HF's h·hd + j·hd/2 + i),
    // bit for bit: the permutation moves whole rows, so every product and sum is the same
    const expected = lcRoped.map((_, r) => {
      const [h, k] = [Math.floor(r / hd), r % hd];
      return hfRoped[h * hd + (k % 2) * (hd / 2) + Math.floor(k / 2)];
    });
    expect(lcRoped).toEqual(expected);
  });

  it('refuses shapes that are not whole heads of even size', () => {
    expect(() => permuteRotaryRows(new Float32Array(6), 2, 1)).toThrow(/even/);
    expect(() => permuteRotaryRows(new Float32Array(7), 1, 2)).toThrow();
  });
});

describe('weights', () => {
  it('llama3 rope factors are the ratios of transformers\' unscaled to scaled inverse frequencies', () => {
    const config = parseHfConfig({
      architectures: ['LlamaForCausalLM'], hidden_size: 64, intermediate_size: 128, num_attention_heads: 4,
      num_hidden_layers: 1, vocab_size: 10, rope_theta: 10000,
      rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
    });
    const f = llama3RopeFactors(config);
    expect(f.length).toBe(8);
    // transformers' _compute_llama3_parameters, in float64
    for (let i = 0; i < 8; i++) {
      const inv = Math.pow(10000, -(2 * i) / 16);
      const wavelen = (2 * Math.PI) / inv;
      let scaled = wavelen > 64 ? inv / 8 : inv;
      if (wavelen >= 16 && wavelen <= 64) {
        const smooth = (64 / wavelen - 1) / (4 - 1);
        scaled = (1 - smooth) * (inv / 8) + smooth * inv;
      }
      expect(f[i]).toBeCloseTo(inv / scaled, 5);
    }
    // all three regimes occur: unscaled, smoothed and fully scaled frequencies
    expect(f[0]).toBe(1);
    expect(f[7]).toBe(8);
    expect([...f].some((x) => x > 1 && x < 8)).toBe(true);
  });

  it('maps every HF tensor name to llama.cpp\'s', () => {
    expect(ggufTensorName('model.embed_tokens.weight')).toBe('token_embd.weight');
    expect(ggufTensorName('model.norm.weight')).toBe('output_norm.weight');
    expect(ggufTensorName('lm_head.weight')).toBe('output.weight');
    expect(ggufTensorName('model.layers.12.input_layernorm.weight')).toBe('blk.12.attn_norm.weight');
    expect(ggufTensorName('model.layers.0.self_attn.q_proj.bias')).toBe('blk.0.attn_q.bias');
    expect(ggufTensorName('model.layers.0.self_attn.o_proj.weight')).toBe('blk.0.attn_output.weight');
    expect(ggufTensorName('model.layers.3.mlp.down_proj.weight')).toBe('blk.3.ffn_down.weight');
    expect(ggufTensorName('model.layers.3.post_attention_layernorm.weight')).toBe('blk.3.ffn_norm.weight');
    expect(() => ggufTensorName('model.layers.0.self_attn.rotary_emb.inv_freq')).toThrow(/no GGUF name/);
  });
});
