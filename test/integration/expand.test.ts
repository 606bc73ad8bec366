/**
 * Expansion on real-format checkpoints: the identity (logits unchanged), the tensor layout
 * (copies byte-exact, o_proj/down_proj and their biases zero), the metadata, and refusals
 * that write nothing.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initTestBackend, TEST_BACKEND } from '../helpers/backend.js';
import { expandModel, loadModel, makeTinyCheckpoint, openCheckpoint, scoreIds } from '../../src/main/engine/index.js';
import { readTensorBytes } from '../../src/main/engine/safetensors.js';
import { blockTensorNames } from '../../src/main/engine/config.js';
import { expandCheckpoint, isZeroedInNewBlock } from '../../src/main/engine/expand.js';
import { fromFloat32 } from '../../src/main/engine/dtype.js';
import { someIds, testDir } from '../helpers/tmp.js';
import { readRawCheckpoint, writeRawCheckpoint } from '../helpers/wrong-models.js';

let root: string;
let base: string;
let biased: string;

beforeAll(async () => {
  await initTestBackend();
  root = await testDir('expand');
  base = join(root, 'base');
  await makeTinyCheckpoint(base, { layers: 4, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, dtype: 'BF16', tie: false });
  biased = join(root, 'biased');
  await makeTinyCheckpoint(biased, { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, attentionBias: true, mlpBias: true });
});

/** Every file of a folder with its bytes, for "nothing changed" checks. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of (await readdir(dir)).sort()) out[f] = (await readFile(join(dir, f))).toString('base64');
  return out;
}

async function bytesOf(dir: string, name: string): Promise<Uint8Array> {
  const ckpt = await openCheckpoint(dir);
  return readTensorBytes(ckpt.tensors.get(name)!);
}

describe('expandCheckpoint', () => {
  it.each([
    ['interleave', { blocks: 2 }],
    ['top', { blocks: 2, placement: 'top' as const }],
    ['bottom', { blocks: 1, placement: 'bottom' as const }],
    ['positions', { positions: [{ position: 0, source: 2 }, { position: 3 }] }],
  ])('%s keeps every NLL of the base model and lays the tensors out as planned', async (label, request) => {
    const out = join(root, `exp-${label}`);
    const r = await expandModel(base, request, { out });
    // a new block adds exact zeros (x + 0·y), so the logits are bit for bit the base's: measured 0
    expect(r.identity.maxAbsLogitDiff).toBe(0);
    expect(r.identity.maxAbsLogit).toBeGreaterThan(0.1);

    const ckpt = await openCheckpoint(out);
    expect(ckpt.config.numLayers).toBe(r.totalLayers);
    expect(ckpt.dtype).toBe('BF16');
    expect(ckpt.expansion?.new_layers).toEqual(r.newLayers);
    expect(ckpt.expansion?.sources).toEqual(r.sources);
    const rawConfig = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    expect(rawConfig.num_hidden_layers).toBe(4 + r.newLayers.length);
    expect(rawConfig.blocklab_expansion.identity_max_abs_logit_diff).toBe(r.identity.maxAbsLogitDiff);

    // layout: every expanded layer is a byte-exact copy of its original, except the zeroed projections
    const record = ckpt.expansion!;
    const baseCkpt = await openCheckpoint(base);
    for (let i = 0; i < record.original_index.length; i++) {
      const orig = record.original_index[i];
      const from = orig ?? record.sources[record.new_layers.indexOf(i)];
      for (const srcName of blockTensorNames(baseCkpt.config, from)) {
        const suffix = srcName.slice(`model.layers.${from}.`.length);
        const got = await bytesOf(out, `model.layers.${i}.${suffix}`);
        if (orig === null && isZeroedInNewBlock(suffix)) expect(got.every((b) => b === 0)).toBe(true);
        else expect(Buffer.from(got).equals(Buffer.from(await bytesOf(base, srcName)))).toBe(true);
      }
    }

    // the identity, measured independently of the built-in check: every token's NLL is unchanged
    const ids = someIds(30, 261, 5);
    const a = await loadModel(base);
    const b = await loadModel(out);
    const na = (await scoreIds(a, ids)).nll;
    const nb = (await scoreIds(b, ids)).nll;
    a.dispose();
    b.dispose();
    const nllDiff = Math.max(...na.map((x, k) => Math.abs(x - nb[k])));
    console.log(`identity (${label}, ${TEST_BACKEND}): built-in check max |Δlogit| ${r.identity.maxAbsLogitDiff}, max |Δnll| ${nllDiff}`);
    // measured exactly 0 on wasm and on webgpu: a zero projection adds +0 to the residual stream
    expect(nllDiff).toBe(0);
  });

  it('zeroes the o_proj and down_proj biases too, so a biased block is still the identity', async () => {
    const out = join(root, 'exp-biased');
    const r = await expandModel(biased, { blocks: 1, placement: 'top' }, { out });
    expect(r.identity.maxAbsLogitDiff).toBe(0);
    expect((await bytesOf(out, 'model.layers.2.self_attn.o_proj.bias')).every((x) => x === 0)).toBe(true);
    expect((await bytesOf(out, 'model.layers.2.mlp.down_proj.bias')).every((x) => x === 0)).toBe(true);
    expect((await bytesOf(out, 'model.layers.2.self_attn.q_proj.bias')).some((x) => x !== 0)).toBe(true);
  });

  it('a new block is not trivially inert: a non-zero down_proj in it changes the output', async () => {
    // guards the identity test against passing because new blocks were skipped entirely
    const out = join(root, 'exp-interleave');
    const raw = await readRawCheckpoint(out);
    const down = raw.tensors.get('model.layers.2.mlp.down_proj.weight')!;
    expect(down.bytes.every((b) => b === 0)).toBe(true);
    down.bytes = fromFloat32(new Float32Array(down.bytes.length / 2).fill(0.05), down.dtype);
    const perturbed = await writeRawCheckpoint(raw, join(root, 'exp-interleave-perturbed'));
    const ids = someIds(20, 261, 2);
    const nll = async (dir: string) => {
      const loaded = await loadModel(dir);
      try {
        return (await scoreIds(loaded, ids)).nll;
      } finally {
        loaded.dispose();
      }
    };
    const before = await nll(out);
    const after = await nll(perturbed);
    expect(Math.max(...before.map((x, k) => Math.abs(x - after[k])))).toBeGreaterThan(1e-3);
  });

  it.each(['self_attn.o_proj.weight', 'mlp.down_proj.weight'])(
    'the identity check refuses an expansion whose new blocks keep a non-zero %s, and nothing is written',
    async (kept) => {
      const ckpt = await openCheckpoint(base);
      const probeIds = someIds(32, 261, 4);
      // A wrong expansion: the new blocks copy `kept` from their source instead of zeroing it.
      const wrong = (suffix: string) => isZeroedInNewBlock(suffix) && suffix !== kept;
      const parentBefore = await readdir(root);

      // into a new folder: refused, and neither the folder nor a temporary one is left behind
      const fresh = join(root, `never-${kept}`);
      await expect(expandCheckpoint(ckpt, { blocks: 2 }, { out: fresh, probeIds, zeroInNewBlock: wrong })).rejects.toThrow(
        /identity check failed: the expanded model's logits differ from the base model's by up to [0-9.e-]+ \(tolerance [0-9.e-]+\); nothing was written/,
      );
      expect(existsSync(fresh)).toBe(false);
      expect(await readdir(root)).toEqual(parentBefore);

      // over an existing checkpoint with overwrite: refused, and the old checkpoint is untouched, byte for byte
      const existing = join(root, 'exp-top');
      const filesBefore = await snapshot(existing);
      await expect(expandCheckpoint(ckpt, { blocks: 2 }, { out: existing, overwrite: true, probeIds, zeroInNewBlock: wrong })).rejects.toThrow(/identity check failed/);
      expect(await snapshot(existing)).toEqual(filesBefore);
      expect(await readdir(root)).toEqual(parentBefore);

      // the control: the same call with the right zeroing passes, so the refusal was the kept projection's
      const ok = await expandCheckpoint(ckpt, { blocks: 2 }, { out: fresh, probeIds });
      expect(ok.identity.maxAbsLogitDiff).toBe(0);
    },
  );

  it('expands an expanded model again (the record describes the latest expansion)', async () => {
    const out = join(root, 'exp-twice');
    const r = await expandModel(join(root, 'exp-interleave'), { blocks: 1, placement: 'top' }, { out });
    expect(r.originalLayers).toBe(6);
    expect(r.totalLayers).toBe(7);
    expect(r.identity.maxAbsLogitDiff).toBe(0);
  });

  it('refuses invalid requests before writing anything', async () => {
    const out = join(root, 'never');
    await expect(expandModel(base, { blocks: 3 }, { out })).rejects.toThrow(/valid --blocks for 4 blocks: 1, 2, 4/);
    await expect(expandModel(base, { blocks: 0 }, { out })).rejects.toThrow(/positive/);
    await expect(expandModel(base, { positions: [{ position: 9 }] }, { out })).rejects.toThrow(/out of range/);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses to replace an existing checkpoint unless asked, and replaces it atomically when asked', async () => {
    const out = join(root, 'exp-top');
    const before = await readFile(join(out, 'config.json'), 'utf8');
    await expect(expandModel(base, { blocks: 4 }, { out })).rejects.toThrow(/--overwrite/);
    expect(await readFile(join(out, 'config.json'), 'utf8')).toBe(before);
    const r = await expandModel(base, { blocks: 4 }, { out, overwrite: true });
    expect(r.totalLayers).toBe(8);
    expect((await openCheckpoint(out)).config.numLayers).toBe(8);
  });
});
