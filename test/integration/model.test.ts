/**
 * The tfjs forward pass against the naive float64 reference (test/reference/llama-ref.ts) on
 * tiny checkpoints of every supported shape, written in the Hugging Face layout; and the same
 * comparison failing on the wrong models of test/helpers/wrong-models.ts.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initTestBackend, TEST_BACKEND } from '../helpers/backend.js';
import { loadModel, makeTinyCheckpoint, scoreIds, tf, type TinyOptions } from '../../src/main/engine/index.js';
import { disposeCache } from '../../src/main/engine/model.js';
import { referenceNll } from '../reference/llama-ref.js';
import { someIds, testDir } from '../helpers/tmp.js';
import { WRONG_MODELS, readRawCheckpoint, writeRawCheckpoint } from '../helpers/wrong-models.js';

const SHAPES: [string, TinyOptions][] = [
  ['llama GQA tied F32', { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64 }],
  ['llama MHA untied F16 sharded', { layers: 3, hidden: 32, heads: 4, kvHeads: 4, intermediate: 48, tie: false, dtype: 'F16', maxShardBytes: 20_000 }],
  [
    'llama BF16 biases, llama3 rope scaling, head_dim ≠ D/nh',
    { layers: 2, hidden: 48, heads: 4, kvHeads: 1, headDim: 16, intermediate: 64, tie: false, dtype: 'BF16', attentionBias: true, mlpBias: true, llama3RopeOriginalContext: 16, ropeTheta: 500000 },
  ],
  ['mistral sliding window 12', { architecture: 'MistralForCausalLM', layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, slidingWindow: 12 }],
  ['qwen2 q/k/v biases, GQA', { architecture: 'Qwen2ForCausalLM', layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, tie: false }],
];

/**
 * Per-token NLL tolerance against the float64 reference, by stored dtype: about 10× the largest
 * error measured (wasm backend, 160 tokens, 2026-12): F32 6.7e-6 (qwen2), F16 4.5e-6, BF16
 * 5.2e-6. The wrong models move the NLL by at least 3.2e-4 (rope_theta × 1.001 on the BF16
 * llama3 shape), 6× the BF16 tolerance; most by 20× to 10⁵×.
 */
const NLL_TOLERANCE = { F32: 7e-5, F16: 4e-5, BF16: 5e-5 } as const;
const T = 160; // enough positions for a 0.1 % rope_theta error to show
const IDS = someIds(T, 261, 3);

let root: string;
beforeAll(async () => {
  await initTestBackend();
  root = await testDir('model');
});

async function maxNllError(dir: string, want: number[]): Promise<number> {
  const loaded = await loadModel(dir);
  try {
    const got = await scoreIds(loaded, IDS);
    return Math.max(...want.map((w, i) => Math.abs(w - got.nll[i])));
  } finally {
    loaded.dispose();
  }
}

describe('forward pass matches the float64 reference', () => {
  it.each(SHAPES)('%s', async (name, options) => {
    const dir = join(root, name.replace(/\W+/g, '-'));
    await makeTinyCheckpoint(dir, { seed: 7, ...options });
    const want = await referenceNll(dir, IDS);
    const tol = NLL_TOLERANCE[options.dtype ?? 'F32'];
    const maxDiff = await maxNllError(dir, want);
    console.log(`float64 reference, ${name} (${TEST_BACKEND}): max |Δnll| ${maxDiff.toExponential(2)} (tolerance ${tol})`);
    expect(maxDiff).toBeLessThan(tol);
    // the model is not trivially uniform: the test would notice a wrong mask or RoPE
    expect(Math.max(...want) - Math.min(...want)).toBeGreaterThan(1);

    // and each wrong model that can change this shape's output fails the same comparison
    const caught: string[] = [];
    for (const w of WRONG_MODELS) {
      const raw = await readRawCheckpoint(dir);
      if (!w.applies(raw)) continue;
      w.apply(raw);
      const wrong = await writeRawCheckpoint(raw, `${dir}--${w.name.replace(/\W+/g, '-')}`);
      const err = await maxNllError(wrong, want);
      expect(err, `${w.mistake}: passes the float64 comparison (max |Δnll| ${err})`).toBeGreaterThan(tol);
      caught.push(`${w.name} ${(err / tol).toPrecision(2)}×`);
    }
    console.log(`  wrong models, error ÷ tolerance: ${caught.join(', ')}`);
  });
});

describe('KV cache and batching', () => {
  it('incremental decoding with the cache gives the logits of a full forward pass', async () => {
    const dir = join(root, 'cache');
    await makeTinyCheckpoint(dir, { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, architecture: 'MistralForCausalLM', slidingWindow: 5 });
    const loaded = await loadModel(dir);
    const ids = someIds(12, 261, 9);
    const full = loaded.model.forward([ids]);
    const fullRows = (await full.array()) as number[][][];
    full.dispose();
    const cache = loaded.model.newCache();
    let pos = 0;
    for (const chunk of [ids.slice(0, 5), ids.slice(5, 6), ids.slice(6, 7), ids.slice(7)]) {
      const out = loaded.model.forward([chunk], { cache });
      const rows = (await out.array()) as number[][][];
      out.dispose();
      for (let t = 0; t < chunk.length; t++) {
        const diff = Math.max(...rows[0][t].map((v, i) => Math.abs(v - fullRows[0][pos + t][i])));
        expect(diff).toBeLessThan(2e-5); // measured ≤ 1.7e-6
      }
      pos += chunk.length;
    }
    expect(cache.length).toBe(12);
    disposeCache(cache);
    loaded.dispose();
  });

  it('a batch of two rows equals each row alone', async () => {
    const dir = join(root, 'batch');
    await makeTinyCheckpoint(dir, { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64 });
    const loaded = await loadModel(dir);
    const a = someIds(10, 261, 1);
    const b = someIds(10, 261, 2);
    const both = await loaded.model.forward([a, b]).array();
    const alone = await loaded.model.forward([b]).array();
    const diff = Math.max(...both[1].flat().map((v, i) => Math.abs(v - alone[0].flat()[i])));
    expect(diff).toBeLessThan(1e-6); // measured 0: each row is computed alone
    loaded.dispose();
  });

  it('releases every tensor it creates (no leak over repeated scoring and generation)', async () => {
    const dir = join(root, 'leak');
    await makeTinyCheckpoint(dir, { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64 });
    const before = tf.memory().numTensors;
    const loaded = await loadModel(dir);
    const { generateText } = await import('../../src/main/engine/index.js');
    await scoreIds(loaded, someIds(20, 261));
    const afterFirst = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      await scoreIds(loaded, someIds(20, 261, i));
      await generateText(loaded, { prompt: 'abc', maxTokens: 5, seed: i });
    }
    expect(tf.memory().numTensors).toBe(afterFirst);
    loaded.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
