import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromFloat32, toFloat32, type DType } from '../../src/main/engine/dtype.js';
import { BlocklabError } from '../../src/main/engine/errors.js';
import {
  planShards,
  readSafetensorsHeader,
  readShardedIndex,
  readTensorBytes,
  readTensorFloat32,
  writeSafetensors,
  writeSafetensorsFolder,
  type TensorToWrite,
} from '../../src/main/engine/safetensors.js';

let tmp: string;
let counter = 0;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'blocklab-st-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

/** A fresh path (or folder) under the temp dir. */
function fresh(name: string): string {
  return path.join(tmp, `${counter++}-${name}`);
}
async function freshDir(name: string): Promise<string> {
  const d = fresh(name);
  await fsp.mkdir(d);
  return d;
}

/** Builds a safetensors file by hand: u64 length (or an explicit one), header text, data bytes. */
async function handFile(
  name: string,
  header: unknown,
  data: Uint8Array = new Uint8Array(0),
  opts: { headerLength?: bigint; rawHeader?: Uint8Array } = {},
): Promise<string> {
  const file = fresh(name);
  const headerBytes = opts.rawHeader ?? new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, opts.headerLength ?? BigInt(headerBytes.byteLength), true);
  await fsp.writeFile(file, Buffer.concat([len, headerBytes, data]));
  return file;
}

/** Asserts a BlocklabError whose one-line message names `file` and matches `phrase`. */
async function expectBad(promise: Promise<unknown>, file: string, phrase: RegExp): Promise<BlocklabError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BlocklabError);
  const e = err as BlocklabError;
  expect(e.message).toContain(path.basename(file));
  expect(e.message).toMatch(phrase);
  expect(e.message).not.toContain('\n');
  return e;
}

const f32bytes = (...v: number[]): Uint8Array => fromFloat32(new Float32Array(v), 'F32');

describe('reading a hand-built file', () => {
  it('reads header, metadata, offsets and values', async () => {
    // F16 [2] = [1, -2]; BF16 [1,2] = [1, -2]; F32 [] = 0.5; no alignment padding on purpose
    const data = new Uint8Array([0x00, 0x3c, 0x00, 0xc0, 0x80, 0x3f, 0x00, 0xc0, 0, 0, 0, 0x3f]);
    const header = {
      half: { dtype: 'F16', shape: [2], data_offsets: [0, 4] },
      __metadata__: { format: 'pt', note: 'hand made' },
      brain: { dtype: 'BF16', shape: [1, 2], data_offsets: [4, 8] },
      scalar: { dtype: 'F32', shape: [], data_offsets: [8, 12] },
      empty: { dtype: 'F32', shape: [0, 3], data_offsets: [12, 12] },
    };
    const file = await handFile('hand.safetensors', header, data);
    const headerLen = new TextEncoder().encode(JSON.stringify(header)).byteLength;
    const st = await readSafetensorsHeader(file);
    expect(st.path).toBe(file);
    expect(st.metadata).toEqual({ format: 'pt', note: 'hand made' });
    expect([...st.tensors.keys()].sort()).toEqual(['brain', 'empty', 'half', 'scalar']);
    const half = st.tensors.get('half')!;
    expect(half).toEqual({ name: 'half', dtype: 'F16', shape: [2], byteOffset: 8 + headerLen, byteLength: 4, file });
    expect(st.tensors.get('scalar')!.byteOffset).toBe(8 + headerLen + 8);
    expect([...(await readTensorFloat32(half))]).toEqual([1, -2]);
    expect([...(await readTensorFloat32(st.tensors.get('brain')!))]).toEqual([1, -2]);
    expect([...(await readTensorFloat32(st.tensors.get('scalar')!))]).toEqual([0.5]);
    expect((await readTensorFloat32(st.tensors.get('empty')!)).length).toBe(0);
    const bytes = await readTensorBytes(st.tensors.get('brain')!);
    expect([...bytes]).toEqual([0x80, 0x3f, 0x00, 0xc0]);
    expect(bytes.byteOffset).toBe(0);
    expect(bytes.buffer.byteLength).toBe(4);
  });

  it('keeps "__proto__" and numeric names as plain data', async () => {
    const header =
      '{"__metadata__":{"__proto__":"x"},"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
      '"7":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}';
    const file = await handFile('proto.safetensors', header, f32bytes(1, 2));
    const st = await readSafetensorsHeader(file);
    expect(Object.getPrototypeOf(st.metadata)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(st.metadata, '__proto__')?.value).toBe('x');
    expect([...(await readTensorFloat32(st.tensors.get('__proto__')!))]).toEqual([1]);
    expect([...(await readTensorFloat32(st.tensors.get('7')!))]).toEqual([2]);
  });
});

describe('writer', () => {
  it('round-trips F32, F16 and BF16 with rounding cases, in order, 8-byte aligned', async () => {
    const values = new Float32Array([1, 1 + 2 ** -11, 2 ** -24, 2 ** -20, -0, Infinity, -Infinity, NaN, 65504, 70000, 0.1]);
    const file = fresh('rt.safetensors');
    const tensors: TensorToWrite[] = (['F32', 'F16', 'BF16'] as DType[]).map((dtype) => ({
      name: `w.${dtype}`,
      dtype,
      shape: [values.length],
      data: fromFloat32(values, dtype),
    }));
    tensors.push({ name: '10', dtype: 'F32', shape: [1, 1], data: f32bytes(3) }, { name: '2', dtype: 'F16', shape: [0], data: new Uint8Array(0) });
    const written = await writeSafetensors(file, tensors, { source: 'test' });
    const raw = await fsp.readFile(file);
    expect(written).toBe(raw.byteLength);
    const n = Number(raw.readBigUInt64LE(0));
    expect((8 + n) % 8).toBe(0);
    const headerText = raw.subarray(8, 8 + n).toString('utf8');
    const header = JSON.parse(headerText);
    expect(Object.keys(header)).toEqual(['2', '10', '__metadata__', 'w.F32', 'w.F16', 'w.BF16']); // JS orders numeric keys first
    expect(headerText.indexOf('"w.F32"')).toBeLessThan(headerText.indexOf('"10"')); // but the file keeps the given order
    expect(header.__metadata__).toEqual({ format: 'pt', source: 'test' });
    expect(header['w.F16'].data_offsets).toEqual([44, 66]);

    const st = await readSafetensorsHeader(file);
    const f32 = await readTensorFloat32(st.tensors.get('w.F32')!);
    expect([...new Uint32Array(f32.buffer)]).toEqual([...new Uint32Array(values.buffer)]);
    const f16 = await readTensorFloat32(st.tensors.get('w.F16')!);
    expect([...f16]).toEqual([1, 1, 2 ** -24, 2 ** -20, -0, Infinity, -Infinity, NaN, 65504, Infinity, f16[10]]);
    expect(Object.is(f16[4], -0)).toBe(true);
    expect(Math.abs(f16[10] - 0.1)).toBeLessThan(1e-4);
    const bf16 = await readTensorFloat32(st.tensors.get('w.BF16')!);
    expect(bf16[0]).toBe(1);
    expect(bf16[1]).toBe(1); // 1 + 2^-11 rounds to 1 in BF16 too
    expect(Number.isNaN(bf16[7])).toBe(true);
    expect(bf16[9]).toBe(70144); // nearest BF16 to 70000
    expect([...toFloat32(await readTensorBytes(st.tensors.get('10')!), 'F32')]).toEqual([3]);
    expect(st.tensors.get('2')!.byteLength).toBe(0);
  });

  it('produces lazy data one tensor at a time', async () => {
    let live = 0;
    let maxLive = 0;
    const lazy = (v: number) => async () => {
      live++;
      maxLive = Math.max(maxLive, live);
      await new Promise((r) => setTimeout(r, 1));
      live--;
      return f32bytes(v, v);
    };
    const file = fresh('lazy.safetensors');
    await writeSafetensors(file, [1, 2, 3].map((v) => ({ name: `t${v}`, dtype: 'F32' as DType, shape: [2], data: lazy(v) })));
    expect(maxLive).toBe(1);
    const st = await readSafetensorsHeader(file);
    expect([...(await readTensorFloat32(st.tensors.get('t3')!))]).toEqual([3, 3]);
  });

  it('refuses data whose length does not match the shape, leaving no file', async () => {
    const file = fresh('badlen.safetensors');
    await expectBad(writeSafetensors(file, [{ name: 'x', dtype: 'F16', shape: [3], data: new Uint8Array(4) }]), file, /needs 6 bytes/);
    await expect(fsp.access(file)).rejects.toThrow();
  });
});

describe('bad files', () => {
  it('file shorter than 8 bytes', async () => {
    const file = fresh('tiny.safetensors');
    await fsp.writeFile(file, new Uint8Array(5));
    await expectBad(readSafetensorsHeader(file), file, /truncated/);
  });

  it('header length larger than the file', async () => {
    const file = await handFile('hlen.safetensors', '{}', new Uint8Array(0), { headerLength: 1000n });
    await expectBad(readSafetensorsHeader(file), file, /larger than the file/);
  });

  it('header length beyond any sane size or beyond 2^53', async () => {
    const big = await handFile('hbig.safetensors', '{}', new Uint8Array(0), { headerLength: 200_000_000n });
    await expectBad(readSafetensorsHeader(big), big, /limit/);
    const huge = await handFile('hhuge.safetensors', '{}', new Uint8Array(0), { headerLength: 0xffffffffffffffffn });
    await expectBad(readSafetensorsHeader(huge), huge, /limit/);
  });

  it('header that is not JSON, not UTF-8, or not an object', async () => {
    const notJson = await handFile('nojson.safetensors', '{"a": [1, 2');
    await expectBad(readSafetensorsHeader(notJson), notJson, /not valid JSON/);
    const notUtf8 = await handFile('noutf8.safetensors', '', new Uint8Array(0), { rawHeader: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]) });
    await expectBad(readSafetensorsHeader(notUtf8), notUtf8, /UTF-8/);
    const arr = await handFile('arr.safetensors', '[1,2]');
    await expectBad(readSafetensorsHeader(arr), arr, /not a JSON object/);
  });

  it('bad __metadata__ and missing fields', async () => {
    const meta = await handFile('meta.safetensors', { __metadata__: { format: 1 } });
    await expectBad(readSafetensorsHeader(meta), meta, /__metadata__.*strings to strings/);
    const missing = await handFile('missing.safetensors', { w: { dtype: 'F32', shape: [1] } });
    await expectBad(readSafetensorsHeader(missing), missing, /"w".*lacks/);
  });

  it('unknown dtype', async () => {
    const file = await handFile('i8.safetensors', { w: { dtype: 'I8', shape: [4], data_offsets: [0, 4] } }, new Uint8Array(4));
    const e = await expectBad(readSafetensorsHeader(file), file, /dtype I8, which is not supported/);
    expect(e.message).toContain('F32, F16, BF16');
    expect(e.message).toContain('model.to(torch.float16)');
  });

  it('bad shapes and offsets', async () => {
    const neg = await handFile('neg.safetensors', { w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4));
    await expectBad(readSafetensorsHeader(neg), neg, /non-negative integers/);
    const frac = await handFile('frac.safetensors', { w: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, new Uint8Array(4));
    await expectBad(readSafetensorsHeader(frac), frac, /non-negative integers/);
    const back = await handFile('back.safetensors', { w: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, new Uint8Array(4));
    await expectBad(readSafetensorsHeader(back), back, /begin <= end/);
    const overflow = await handFile(
      'ovf.safetensors',
      { w: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 4] } },
      new Uint8Array(4),
    );
    await expectBad(readSafetensorsHeader(overflow), overflow, /needs too many bytes/);
  });

  it('shape not matching the bytes', async () => {
    const file = await handFile('shape.safetensors', { w: { dtype: 'F16', shape: [2, 2], data_offsets: [0, 6] } }, new Uint8Array(6));
    await expectBad(readSafetensorsHeader(file), file, /shape \[2,2\] of F16 needs 8 bytes but data_offsets give 6/);
  });

  it('offsets beyond the data region', async () => {
    const file = await handFile('oob.safetensors', { w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, new Uint8Array(8));
    await expectBad(readSafetensorsHeader(file), file, /looks truncated/);
  });

  it('a truncated file', async () => {
    const file = fresh('cut.safetensors');
    await writeSafetensors(file, [{ name: 'w', dtype: 'F32', shape: [64], data: new Uint8Array(256) }]);
    const st = await readSafetensorsHeader(file);
    await fsp.truncate(file, (await fsp.stat(file)).size - 10);
    await expectBad(readSafetensorsHeader(file), file, /looks truncated/);
    // truncated after the header was read: the read itself says so
    await expectBad(readTensorBytes(st.tensors.get('w')!), file, /truncated/);
  });

  it('overlapping tensors, naming both', async () => {
    const file = await handFile(
      'overlap.safetensors',
      { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } },
      new Uint8Array(12),
    );
    const e = await expectBad(readSafetensorsHeader(file), file, /overlap/);
    expect(e.message).toContain('"a"');
    expect(e.message).toContain('"b"');
  });

  it('a missing file', async () => {
    const file = fresh('nothere.safetensors');
    await expectBad(readSafetensorsHeader(file), file, /not found/);
  });

  it('tensor names with newlines do not break the one-line message', async () => {
    const file = await handFile('nl.safetensors', { 'a\nb': { dtype: 'Q4', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1));
    await expectBad(readSafetensorsHeader(file), file, /"a\\nb"/);
  });
});

describe('planShards', () => {
  it('groups greedily in order; an oversized tensor gets its own shard', () => {
    const t = (name: string, byteLength: number) => ({ name, byteLength });
    expect(planShards([t('a', 4), t('b', 4), t('c', 4)], 8)).toEqual([['a', 'b'], ['c']]);
    expect(planShards([t('a', 4), t('big', 20), t('c', 4), t('d', 4)], 8)).toEqual([['a'], ['big'], ['c', 'd']]);
    expect(planShards([t('big', 20)], 8)).toEqual([['big']]);
    expect(planShards([], 8)).toEqual([]);
    expect(planShards([t('a', 3), t('b', 5)], 8)).toEqual([['a', 'b']]);
  });
});

describe('folders', () => {
  const tensorsFor = (): TensorToWrite[] =>
    Array.from({ length: 5 }, (_, i) => ({
      name: `model.layers.${i}.weight`,
      dtype: (['F32', 'F16', 'BF16'] as DType[])[i % 3],
      shape: [4, 4],
      data: async () => fromFloat32(new Float32Array(16).fill(i + 0.5), (['F32', 'F16', 'BF16'] as DType[])[i % 3]),
    }));

  it('writes a single model.safetensors when one shard suffices', async () => {
    const dir = await freshDir('single');
    const { files, totalBytes } = await writeSafetensorsFolder(dir, tensorsFor(), {});
    expect(files).toEqual([path.join(dir, 'model.safetensors')]);
    expect(totalBytes).toBe(64 + 32 + 32 + 64 + 32);
    const all = await readShardedIndex(dir);
    expect(all.size).toBe(5);
    expect([...(await readTensorFloat32(all.get('model.layers.4.weight')!))][0]).toBe(4.5);
  });

  it('round-trips a sharded folder with a transformers-style index', async () => {
    const dir = await freshDir('sharded');
    const { files, totalBytes } = await writeSafetensorsFolder(dir, tensorsFor(), { maxShardBytes: 100, metadata: { by: 'test' } });
    const names = files.map((f) => path.basename(f));
    expect(names).toEqual([
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
      'model.safetensors.index.json',
    ]);
    const index = JSON.parse(await fsp.readFile(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    expect(index).toEqual({
      metadata: { total_size: totalBytes },
      weight_map: {
        'model.layers.0.weight': 'model-00001-of-00003.safetensors',
        'model.layers.1.weight': 'model-00001-of-00003.safetensors',
        'model.layers.2.weight': 'model-00002-of-00003.safetensors',
        'model.layers.3.weight': 'model-00002-of-00003.safetensors',
        'model.layers.4.weight': 'model-00003-of-00003.safetensors',
      },
    });
    const shard = await readSafetensorsHeader(files[1]);
    expect(shard.metadata).toEqual({ format: 'pt', by: 'test' });
    const all = await readShardedIndex(dir);
    expect([...all.keys()].sort()).toEqual(Object.keys(index.weight_map));
    for (let i = 0; i < 5; i++) {
      const info = all.get(`model.layers.${i}.weight`)!;
      expect(path.basename(info.file)).toBe(index.weight_map[info.name]);
      expect([...(await readTensorFloat32(info))]).toEqual(new Array(16).fill(i + 0.5));
    }
  });

  async function shardedWithIndex(name: string, mutate: (index: { weight_map: Record<string, string> }) => void): Promise<string> {
    const dir = await freshDir(name);
    await writeSafetensorsFolder(dir, tensorsFor(), { maxShardBytes: 100 });
    const indexPath = path.join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(await fsp.readFile(indexPath, 'utf8'));
    mutate(index);
    await fsp.writeFile(indexPath, JSON.stringify(index));
    return dir;
  }

  it('a missing shard', async () => {
    const dir = await freshDir('noshard');
    await writeSafetensorsFolder(dir, tensorsFor(), { maxShardBytes: 100 });
    await fsp.rm(path.join(dir, 'model-00002-of-00003.safetensors'));
    const e = await expectBad(readShardedIndex(dir), 'model.safetensors.index.json', /missing/);
    expect(e.message).toContain('model-00002-of-00003.safetensors');
  });

  it('a shard path that escapes the folder', async () => {
    const dir = await shardedWithIndex('escape', (i) => {
      i.weight_map['model.layers.0.weight'] = '../model-00001-of-00003.safetensors';
    });
    await expectBad(readShardedIndex(dir), 'model.safetensors.index.json', /outside the checkpoint folder/);
    const abs = await shardedWithIndex('absolute', (i) => {
      i.weight_map['model.layers.0.weight'] = '/etc/passwd';
    });
    await expectBad(readShardedIndex(abs), 'model.safetensors.index.json', /outside the checkpoint folder/);
  });

  it('a tensor the index places in a shard that lacks it', async () => {
    const dir = await shardedWithIndex('wrongshard', (i) => {
      i.weight_map['model.layers.0.weight'] = 'model-00002-of-00003.safetensors';
    });
    await expectBad(readShardedIndex(dir), 'model.safetensors.index.json', /"model.layers.0.weight".*no such tensor/);
    const ghost = await shardedWithIndex('ghost', (i) => {
      i.weight_map['lm_head.weight'] = 'model-00001-of-00003.safetensors';
    });
    await expectBad(readShardedIndex(ghost), 'model.safetensors.index.json', /"lm_head.weight".*no such tensor/);
  });

  it('a tensor in two shards', async () => {
    const dir = await freshDir('dup');
    await writeSafetensorsFolder(dir, tensorsFor(), { maxShardBytes: 100 });
    await writeSafetensors(path.join(dir, 'model-00003-of-00003.safetensors'), [
      { name: 'model.layers.0.weight', dtype: 'F32', shape: [1], data: f32bytes(1) },
      { name: 'model.layers.4.weight', dtype: 'F32', shape: [1], data: f32bytes(1) },
    ]);
    await expectBad(readShardedIndex(dir), 'model.safetensors.index.json', /two shards/);
  });

  it('an index that is not JSON or lacks weight_map', async () => {
    const dir = await freshDir('badindex');
    await fsp.writeFile(path.join(dir, 'model.safetensors.index.json'), '{"weight_map": ');
    await expectBad(readShardedIndex(dir), 'model.safetensors.index.json', /not valid JSON/);
    await fsp.writeFile(path.join(dir, 'model.safetensors.index.json'), '{"metadata": {}}');
    await expectBad(readShardedIndex(dir), 'model.safetensors.index.json', /weight_map/);
  });

  it('a pickle-only folder is refused with the reason and the conversion', async () => {
    const dir = await freshDir('pickle');
    await fsp.writeFile(path.join(dir, 'pytorch_model.bin'), 'not really a pickle');
    await fsp.writeFile(path.join(dir, 'config.json'), '{}');
    const e = await expectBad(readShardedIndex(dir), dir, /arbitrary code/);
    expect(e.message).toContain('pytorch_model.bin');
    expect(e.message).toContain('safe_serialization=True');
  });

  it('a folder with no checkpoint, and no folder at all', async () => {
    const dir = await freshDir('empty');
    await expectBad(readShardedIndex(dir), dir, /no model\.safetensors/);
    const gone = fresh('gone');
    await expectBad(readShardedIndex(gone), gone, /not found/);
  });
});
