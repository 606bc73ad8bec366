/** HF export: byte-exact in the source dtype, converted with --dtype, sharded, atomic. */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { exportModel, initBackend, loadModel, makeTinyCheckpoint, openCheckpoint, scoreIds } from '../../src/main/engine/index.js';
import { fromFloat32, toFloat32 } from '../../src/main/engine/dtype.js';
import { readTensorBytes } from '../../src/main/engine/safetensors.js';
import { writeCheckpoint } from '../../src/main/engine/write-checkpoint.js';
import { someIds, testDir } from '../helpers/tmp.js';

let root: string;
let base: string;

beforeAll(async () => {
  await initBackend('auto');
  root = await testDir('export');
  base = join(root, 'base');
  await makeTinyCheckpoint(base, { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, architecture: 'Qwen2ForCausalLM', tie: false });
});

async function nll(dir: string, ids: number[]): Promise<number[]> {
  const m = await loadModel(dir);
  try {
    return (await scoreIds(m, ids)).nll;
  } finally {
    m.dispose();
  }
}

describe('export --format hf', () => {
  it('copies every tensor bit for bit in the source dtype, with config and tokenizer files', async () => {
    const out = join(root, 'same');
    const r = await exportModel(base, { out });
    expect(r.dtype).toBe('F32');
    const a = await openCheckpoint(base);
    const b = await openCheckpoint(out);
    expect([...b.tensors.keys()].sort()).toEqual([...a.tensors.keys()].sort());
    for (const [name, info] of a.tensors) {
      const x = await readTensorBytes(info);
      const y = await readTensorBytes(b.tensors.get(name)!);
      expect(Buffer.from(x).equals(Buffer.from(y))).toBe(true);
    }
    const files = await readdir(out);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) expect(files).toContain(f);
    const cfgA = JSON.parse(await readFile(join(base, 'config.json'), 'utf8'));
    const cfgB = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    expect(cfgB).toEqual(cfgA);
  });

  it('converts to BF16 with round-to-nearest-even and the model still scores the same to BF16 precision', async () => {
    const out = join(root, 'bf16');
    await exportModel(base, { out, dtype: 'BF16' });
    const a = await openCheckpoint(base);
    const b = await openCheckpoint(out);
    expect(b.dtype).toBe('BF16');
    expect(JSON.parse(await readFile(join(out, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
    const name = 'model.layers.1.mlp.up_proj.weight';
    const src = toFloat32(await readTensorBytes(a.tensors.get(name)!), 'F32');
    const got = await readTensorBytes(b.tensors.get(name)!);
    expect(Buffer.from(got).equals(Buffer.from(fromFloat32(src, 'BF16')))).toBe(true);
    const ids = someIds(24, 261, 4);
    const [n1, n2] = [await nll(base, ids), await nll(out, ids)];
    const diff = Math.max(...n1.map((x, i) => Math.abs(x - n2[i])));
    expect(diff).toBeGreaterThan(0); // it really was rounded
    expect(diff).toBeLessThan(0.1);
  });

  it('writes shards with a model.safetensors.index.json that loads to the same model', async () => {
    const out = join(root, 'sharded');
    const r = await exportModel(base, { out, maxShardBytes: 30_000 });
    const index = JSON.parse(await readFile(join(out, 'model.safetensors.index.json'), 'utf8'));
    const shards = new Set(Object.values(index.weight_map));
    expect(shards.size).toBeGreaterThan(1);
    expect(index.metadata.total_size).toBe(r.bytes);
    const ids = someIds(16, 261, 8);
    expect(await nll(out, ids)).toEqual(await nll(base, ids));
  });
});

describe('atomic checkpoint writes', () => {
  it('a failure while writing leaves the previous checkpoint in place and no temporary folders', async () => {
    const out = join(root, 'good');
    await exportModel(base, { out });
    const before = await readFile(join(out, 'model.safetensors'));
    const ckpt = await openCheckpoint(base);
    await expect(
      writeCheckpoint({
        out,
        overwrite: true,
        config: { broken: true },
        tensors: [{ name: 'x', dtype: 'F32', shape: [2], data: async () => new Uint8Array(8) }],
        verify: async () => {
          throw new Error('simulated crash during the write');
        },
      }),
    ).rejects.toThrow(/simulated crash/);
    expect((await readFile(join(out, 'model.safetensors'))).equals(before)).toBe(true);
    expect((await openCheckpoint(out)).config).toEqual(ckpt.config);
    expect((await readdir(root)).filter((f) => f.includes('.tmp-') || f.includes('.old-'))).toEqual([]);
  });
});
