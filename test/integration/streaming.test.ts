/**
 * Weights at their stored precision, streamed a block at a time (src/main/engine/weights.ts), on
 * tiny checkpoints with a device budget small enough to force streaming — against the same
 * references as the resident model:
 *
 *   - logits of every residency (stored bytes in RAM, read from the file, mixed) are the resident
 *     model's bit for bit on wasm (x @ Wᵀ is computed as (W @ xᵀ)ᵀ, the same products in the same
 *     order), and per-token NLLs match the float64 reference as model.test.ts requires (< 1e-3);
 *   - KV-cache decoding of a streamed model equals its full forward pass;
 *   - the gradients of block-only and LoRA tuning with streamed frozen blocks (checkpointed: the
 *     block is recomputed in the backward pass) equal the resident model's bit for bit;
 *   - the trainer end to end with streaming forced: frozen weights bit-identical, the same
 *     weights as the resident run, exact resume;
 *   - the expansion identity holds with both models streamed;
 *   - the plan refuses what does not fit before loading, with advice, and a backend running out
 *     of memory is reported as that; a loaded model is planned again for a longer conversation
 *     (kept, reloaded streamed, or refused before it runs).
 */
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { expandModel, generateTask, initBackend, loadModel, makeTinyCheckpoint, openCheckpoint, reloadUnder, replanLoaded, scoreIds, tf, type TinyOptions } from '../../src/main/engine/index.js';
import { generate } from '../../src/main/engine/generate.js';
import { ensureGradients, fastLinear, trainableLinearOI } from '../../src/main/engine/autodiff.js';
import { setScoreChunkElements } from '../../src/main/engine/attention.js';
import { disposeCache, LlamaModel } from '../../src/main/engine/model.js';
import { explainOutOfMemory, planCheckpoint, scoreTask, trainTask, type PlanTask } from '../../src/main/engine/plan.js';
import { makeTrainable, WIDE_HIDDEN, type TrainMethod } from '../../src/main/engine/trainable.js';
import { guardWasmHeap, BackendOutOfMemoryError, type ResidencyPlan } from '../../src/main/engine/weights.js';
import { DEFAULT_ADAMW } from '../../src/main/engine/optimizer.js';
import { readSafetensorsHeader, readTensorFloat32 } from '../../src/main/engine/safetensors.js';
import { train, TRAIN_DEFAULTS, type TrainOptions } from '../../src/main/engine/trainer.js';
import { referenceNll } from '../reference/llama-ref.js';
import { oneJson, runCli, stderrLines } from '../helpers/cli-runner.js';
import { someIds, testDir } from '../helpers/tmp.js';

const VOCAB = 261;

let root: string;

beforeAll(async () => {
  await initBackend('auto');
  ensureGradients();
  root = await testDir('streaming');
});

afterEach(() => {
  delete process.env.BLOCKLAB_DEVICE_BUDGET;
});

const SHAPES: [string, TinyOptions][] = [
  ['llama BF16 untied, biases', { layers: 3, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, tie: false, dtype: 'BF16', attentionBias: true, mlpBias: true }],
  ['llama F16 tied, sharded', { layers: 3, hidden: 32, heads: 4, kvHeads: 1, intermediate: 48, dtype: 'F16', maxShardBytes: 20_000 }],
  ['qwen2 F32 q/k/v biases (read straight into the heap)', { architecture: 'Qwen2ForCausalLM', layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, tie: false }],
];

/**
 * A device budget just below what `task` needs with every weight resident on the device: the
 * plan has to stream the frozen weights (it fits streamed, since streaming needs less).
 */
async function streamingBudget(dir: string, task: PlanTask): Promise<number> {
  const p = planCheckpoint(await openCheckpoint(dir), task, 'wasm', { deviceBudget: null });
  expect(p.residency.mode).toBe('resident');
  return Math.floor(p.device.need) - 1;
}

const every = (L: number, r: 'host' | 'file'): ResidencyPlan => ({ embed: r, head: r, blocks: new Array(L).fill(r) });
const mixed = (L: number): ResidencyPlan => ({ embed: 'device', head: 'file', blocks: Array.from({ length: L }, (_, i) => (['host', 'file', 'device'] as const)[i % 3]) });

async function logitsOf(m: LlamaModel, ids: number[][]): Promise<Float32Array> {
  const t = m.forward(ids);
  const d = (await t.data()) as Float32Array;
  t.dispose();
  return d;
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

describe('inference with streamed weights', () => {
  it.each(SHAPES)('%s: every residency gives the resident logits bit for bit, and the reference NLLs', async (name, options) => {
    const dir = join(root, name.replace(/\W+/g, '-'));
    await makeTinyCheckpoint(dir, { seed: 5, ...options });
    const ckpt = await openCheckpoint(dir);
    const L = ckpt.config.numLayers;
    const batch = [someIds(14, VOCAB, 1), someIds(14, VOCAB, 2)];
    const resident = await LlamaModel.fromTensors(ckpt.config, ckpt.tensors);
    const want = await logitsOf(resident, batch);
    resident.dispose();
    for (const plan of [every(L, 'host'), every(L, 'file'), mixed(L)]) {
      const before = tf.memory().numTensors;
      const m = await LlamaModel.fromTensors(ckpt.config, ckpt.tensors, { residency: plan });
      expect(m.store.residency.blocks).toEqual(plan.blocks);
      expect(m.store.residency.embed).toEqual(plan.embed);
      const got = await logitsOf(m, batch);
      if (tf.getBackend() === 'wasm') expect(sameBits(got, want), `${JSON.stringify(plan)}: logits differ from the resident model's`).toBe(true);
      else expect(Math.max(...got.map((v, i) => Math.abs(v - want[i])))).toBeLessThan(1e-5);
      m.dispose();
      expect(tf.memory().numTensors).toBe(before);
    }
    // through loadModel: the budget makes the plan stream, and the NLLs are the reference's
    const ids = someIds(30, VOCAB, 3);
    const task = scoreTask(ids.length);
    const loaded = await loadModel(dir, undefined, { task, deviceBudget: await streamingBudget(dir, task) });
    try {
      expect(loaded.plan.residency.mode).toBe('streamed');
      expect(loaded.model.store.residency.blocks.every((r) => r === 'host')).toBe(true);
      const got = (await scoreIds(loaded, ids)).nll;
      const ref = await referenceNll(dir, ids);
      expect(Math.max(...ref.map((w, i) => Math.abs(w - got[i])))).toBeLessThan(1e-3);
    } finally {
      loaded.dispose();
    }
  });

  it('KV-cache decoding of a streamed model equals its full forward pass, and frees every tensor', async () => {
    const dir = join(root, 'cache');
    await makeTinyCheckpoint(dir, { layers: 3, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, dtype: 'BF16', tie: false });
    const ckpt = await openCheckpoint(dir);
    const before = tf.memory().numTensors;
    const m = await LlamaModel.fromTensors(ckpt.config, ckpt.tensors, { residency: every(3, 'file') });
    const ids = someIds(11, VOCAB, 4);
    const fullT = m.forward([ids]);
    const full = (await fullT.array()) as number[][][];
    fullT.dispose();
    const cache = m.newCache();
    let pos = 0;
    for (const chunk of [ids.slice(0, 6), ids.slice(6, 7), ids.slice(7)]) {
      const out = m.forward([chunk], { cache });
      const rows = (await out.array()) as number[][][];
      out.dispose();
      for (let t = 0; t < chunk.length; t++) expect(Math.max(...rows[0][t].map((v, i) => Math.abs(v - full[0][pos + t][i])))).toBeLessThan(1e-4);
      pos += chunk.length;
    }
    disposeCache(cache);
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('long inputs are computed a chunk at a time', () => {
  it('attention rows and the scored positions in chunks give the same numbers as all at once', async () => {
    const dir = join(root, 'chunks');
    await makeTinyCheckpoint(dir, { layers: 2, hidden: 32, heads: 4, kvHeads: 1, intermediate: 64, dtype: 'BF16', tie: false });
    const loaded = await loadModel(dir);
    const ids = someIds(40, VOCAB, 6);
    try {
      const whole = await logitsOf(loaded.model, [ids]);
      const wholeNll = (await scoreIds(loaded, ids)).nll;
      const before = setScoreChunkElements(64); // S = 40 keys: one query row at a time
      try {
        const chunked = await logitsOf(loaded.model, [ids]);
        if (tf.getBackend() === 'wasm') expect(sameBits(chunked, whole)).toBe(true);
        else expect(Math.max(...chunked.map((v, i) => Math.abs(v - whole[i])))).toBeLessThan(1e-5);
      } finally {
        setScoreChunkElements(before);
      }
      // tokenNll reads the head a chunk of positions at a time: the same as the full logits' log-softmax
      const lsm = tf.tidy(() => tf.logSoftmax(tf.tensor2d(whole, [40, VOCAB])));
      const full = (await lsm.data()) as Float32Array;
      lsm.dispose();
      for (let t = 0; t < 39; t++) expect(wholeNll[t]).toBe(-full[t * VOCAB + ids[t + 1]]);
    } finally {
      loaded.dispose();
    }
  });
});

describe('training with streamed frozen blocks', () => {
  let expanded: string;
  beforeAll(async () => {
    const base = join(root, 'train-base');
    expanded = join(root, 'train-expanded');
    await makeTinyCheckpoint(base, { layers: 4, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, tie: false, dtype: 'BF16', seed: 9 });
    await expandModel(base, { blocks: 2 }, { out: expanded });
    await writeFile(join(root, 'corpus.txt'), 'the quick brown fox jumps over the lazy dog; '.repeat(200));
  });

  async function gradients(plan: ResidencyPlan | undefined, method: TrainMethod): Promise<Map<string, Float32Array>> {
    const ckpt = await openCheckpoint(expanded);
    const m = await LlamaModel.fromTensors(ckpt.config, ckpt.tensors, { residency: plan, purpose: 'train' });
    const set = makeTrainable(m, ckpt, method, 0);
    if (method.kind === 'lora') {
      // B ≠ 0, so that every adapter (and the base weights through it) shapes the gradient
      for (const l of set.lora) l.b.assign(tf.tidy(() => tf.mul(tf.ones(l.b.shape), 0.05)));
    }
    const ids = tf.tensor2d([...someIds(12, VOCAB, 7), ...someIds(12, VOCAB, 8)], [2, 12], 'int32');
    const { value, grads } = tf.variableGrads(() => set.loss(ids), set.params.map((p) => p.variable));
    const out = new Map<string, Float32Array>();
    for (const p of set.params) {
      // in the checkpoint's layout, whatever the variable's
      const g = p.transposed ? tf.transpose(grads[p.variable.name]) : grads[p.variable.name];
      out.set(p.name, (await g.data()) as Float32Array);
      if (g !== grads[p.variable.name]) g.dispose();
    }
    tf.dispose([value, ids, ...Object.values(grads)]);
    set.dispose();
    m.dispose();
    return out;
  }

  it.each([
    ['blocks', { kind: 'blocks' }],
    ['lora on q, v, down', { kind: 'lora', rank: 2, alpha: 4, targets: ['q', 'v', 'down'] }],
  ] as [string, TrainMethod][])('%s: the gradients equal the resident model\'s bit for bit', async (_name, method) => {
    const want = await gradients(undefined, method);
    for (const plan of [every(6, 'host'), mixed(6)]) {
      const got = await gradients(plan, method);
      expect([...got.keys()]).toEqual([...want.keys()]);
      for (const [name, g] of got) {
        const w = want.get(name)!;
        if (tf.getBackend() === 'wasm') expect(sameBits(g, w), `${name}`).toBe(true);
        else expect(Math.max(...g.map((v, i) => Math.abs(v - w[i])))).toBeLessThan(1e-6);
      }
    }
  });

  function options(out: string, over: Partial<TrainOptions> = {}): TrainOptions {
    return {
      ...TRAIN_DEFAULTS,
      model: expanded,
      data: { paths: [join(root, 'corpus.txt')] },
      out,
      method: { kind: 'blocks' },
      steps: 6,
      lr: 2e-3,
      batch: 2,
      seq: 24,
      warmup: 2,
      evalBatches: 1,
      adamw: DEFAULT_ADAMW,
      cacheDir: join(root, 'cache-dir'),
      resume: false,
      ...over,
    };
  }

  async function weights(dir: string): Promise<Map<string, Float32Array>> {
    const { tensors } = await readSafetensorsHeader(join(dir, 'model.safetensors'));
    const out = new Map<string, Float32Array>();
    for (const [name, info] of tensors) out.set(name, await readTensorFloat32(info));
    return out;
  }

  it('the trainer streams under a small budget: frozen weights bit-identical, the resident run\'s weights, exact resume', async () => {
    const resident = await train(options(join(root, 'run-resident')));
    expect(resident.residency).toBe('resident');
    process.env.BLOCKLAB_DEVICE_BUDGET = String(await streamingBudget(expanded, trainTask(await openCheckpoint(expanded), { kind: 'blocks' }, 2, 24)));
    const streamed = await train(options(join(root, 'run-streamed')));
    expect(streamed.residency).toBe('streamed');
    const half = join(root, 'run-resumed');
    await train(options(half, { stopAfter: 3 }));
    const resumed = await train(options(half, { resume: true }));
    delete process.env.BLOCKLAB_DEVICE_BUDGET;
    expect(streamed.lastLoss).toBe(resident.lastLoss);
    expect(resumed.lastLoss).toBe(streamed.lastLoss);

    const want = await weights(resident.model!);
    const got = await weights(streamed.model!);
    const again = await weights(resumed.model!);
    const source = await weights(expanded);
    const newLayers = [2, 5];
    for (const [name, w] of want) {
      expect(sameBits(got.get(name)!, w), `${name}: streamed run differs from the resident one`).toBe(true);
      expect(sameBits(again.get(name)!, w), `${name}: 3 + resume + 3 steps differ from 6 straight`).toBe(true);
      const trained = newLayers.some((l) => name.startsWith(`model.layers.${l}.`));
      expect(sameBits(w, source.get(name)!), `${name}`).toBe(!trained);
    }
  });

  it('trained weights in the checkpoint\'s [out, in] layout (wide models) get the [in, out] layout\'s gradients, bit for bit', async () => {
    const x = tf.randomNormal([24, 48], 0, 1, 'float32', 1) as tf.Tensor2D;
    const wIo = tf.randomNormal([48, 80], 0, 0.2, 'float32', 2) as tf.Tensor2D;
    const wOi = tf.transpose(wIo) as tf.Tensor2D;
    const dy = tf.randomNormal([24, 80], 0, 1, 'float32', 3);
    const io = tf.grads((a: tf.Tensor, b: tf.Tensor) => fastLinear(a, b, true))([x, wIo], dy);
    const oi = tf.grads((a: tf.Tensor, b: tf.Tensor) => trainableLinearOI(a, b))([x, wOi], dy);
    const same = async (a: tf.Tensor, b: tf.Tensor) => {
      const [da, db] = [(await a.data()) as Float32Array, (await b.data()) as Float32Array];
      return tf.getBackend() === 'wasm' ? sameBits(da, db) : Math.max(...da.map((v, i) => Math.abs(v - db[i]))) < 1e-5;
    };
    expect(await same(fastLinear(x, wIo, true), trainableLinearOI(x, wOi))).toBe(true);
    expect(await same(io[0], oi[0])).toBe(true);
    const dwIo = tf.transpose(io[1]);
    expect(await same(dwIo, oi[1])).toBe(true);
    tf.dispose([x, wIo, wOi, dy, ...io, ...oi, dwIo]);
  });

  it('a wide model trains its new blocks in the [out, in] layout and resumes exactly', async () => {
    const wideBase = join(root, 'wide-base');
    const wide = join(root, 'wide');
    await makeTinyCheckpoint(wideBase, { layers: 2, hidden: WIDE_HIDDEN, heads: 8, kvHeads: 2, intermediate: 64, tie: true, dtype: 'BF16', seed: 4 });
    await expandModel(wideBase, { blocks: 1, placement: 'top' }, { out: wide });
    const o = (out: string, over: Partial<TrainOptions> = {}) => options(out, { model: wide, steps: 4, seq: 16, ...over });
    const straight = await train(o(join(root, 'wide-straight')));
    const half = join(root, 'wide-resumed');
    await train(o(half, { stopAfter: 2 }));
    const resumed = await train(o(half, { resume: true }));
    expect(resumed.lastLoss).toBe(straight.lastLoss);
    const want = await weights(straight.model!);
    const got = await weights(resumed.model!);
    const source = await weights(wide);
    for (const [name, w] of want) {
      expect(sameBits(got.get(name)!, w), `${name}: 2 + resume + 2 steps differ from 4 straight`).toBe(true);
      expect(sameBits(w, source.get(name)!), name).toBe(!name.startsWith('model.layers.2.'));
    }
  });

  it('expansion keeps the identity with both models streamed', async () => {
    // the identity check probes with 64 tokens of the tokenizer's probe text
    const task: PlanTask = { kind: 'infer', what: 'expand', batch: 1, tokens: 64, context: 0 };
    process.env.BLOCKLAB_DEVICE_BUDGET = String(await streamingBudget(expanded, task));
    const r = await expandModel(expanded, { blocks: 2, placement: 'top' }, { out: join(root, 'expanded-again') });
    expect(r.identity.maxAbsLogitDiff).toBe(0);
  });
});

describe('refusals and out-of-memory', () => {
  it('a task that does not fit is refused before loading, with what would fit', async () => {
    const dir = join(root, 'refuse');
    await makeTinyCheckpoint(dir, { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64 });
    await writeFile(join(root, 'ids.json'), JSON.stringify(someIds(40, VOCAB, 1)));
    const [refused, plan] = await Promise.all([
      runCli(['score', dir, '--ids-file', join(root, 'ids.json')], { env: { BLOCKLAB_DEVICE_BUDGET: '4KB' } }),
      runCli(['plan', dir, '--method', 'full', '--json']),
    ]);
    expect(refused.code).toBe(1);
    const lines = stderrLines(refused);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/score does not fit in memory on the wasm backend: needs .* of wasm heap, more than the 4 KiB it can use/);
    expect(lines[0]).toMatch(/What would: .*--backend cpu/);
    expect(refused.stdout).toBe('');

    const p = oneJson<{
      inference: { fits: boolean; kv_cache: { context: number } };
      scoring: { fits: boolean; task: { what: string; tokens: number }; kv_cache: { bytes: number }; residency: { mode: string } };
      training: { fits: boolean; task: { method: string }; trainable: { params: number } };
    }>(plan);
    expect(p.inference.fits).toBe(true);
    expect(p.inference.kv_cache.context).toBe(512);
    // scoring and eval, as `score` plans it: one sequence of up to 1024 tokens (the context: 512), no cache
    expect(p.scoring).toMatchObject({ fits: true, task: { what: 'score', tokens: 512 }, kv_cache: { bytes: 0 }, residency: { mode: 'resident' } });
    const text = (await runCli(['plan', dir], { env: { BLOCKLAB_DEVICE_BUDGET: '300KB' } })).stdout;
    expect(text).toMatch(/score \(512 tokens at a time, no KV cache; eval batches as many sequences as this leaves room for\) — (fits|does not fit)\n  weights: /);
    expect(p.training.task.method).toBe('full');
    expect(p.training.trainable.params).toBeGreaterThan(0);
  });

  it('a loaded model is planned again for a longer conversation: kept, reloaded streamed, or refused before it runs', async () => {
    const dir = join(root, 'replan');
    await makeTinyCheckpoint(dir, { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, maxPositions: 2048, seed: 4 });
    const ckpt = await openCheckpoint(dir);
    const short = generateTask(20, 20, 2048, 'chat');
    const long = generateTask(40, 1500, 2048, 'chat');
    // a budget just below the long conversation's resident need: the short one is resident under it, the long one streams
    const budget = Math.floor(planCheckpoint(ckpt, long, 'wasm', { deviceBudget: null }).device.need) - 1;
    process.env.BLOCKLAB_DEVICE_BUDGET = String(budget);
    const loaded = await loadModel(dir, undefined, { task: short });
    expect(loaded.plan.residency.mode).toBe('resident');
    // the same or a shorter conversation: nothing to plan
    expect(replanLoaded(loaded, short)).toBeNull();
    expect(replanLoaded(loaded, generateTask(5, 5, 2048, 'chat'))).toBeNull();
    // a longer one whose KV cache leaves no room for the weights: reloaded streamed
    const again = replanLoaded(loaded, long)!;
    expect(again.reload).toBe(true);
    expect(again.plan.residency.mode).toBe('streamed');
    expect(again.plan.task).toMatchObject({ tokens: 40, context: 1540 });
    const reloaded = await reloadUnder(loaded, again.plan);
    expect(reloaded.model.store.residency).toEqual(again.plan.residency.plan);
    // a little longer still, under the same plan's residency: kept, the plan grown
    const more = replanLoaded(reloaded, generateTask(40, 1600, 2048, 'chat'))!;
    expect(more.reload).toBe(false);
    expect(more.plan.task).toMatchObject({ context: 1640 });
    // it answers as the resident model does
    delete process.env.BLOCKLAB_DEVICE_BUDGET;
    const resident = await loadModel(dir, undefined, { task: short });
    const prompt = someIds(12, VOCAB, 3);
    const want = await generate(resident.model, prompt, () => '', { temperature: 0, maxTokens: 10 });
    const got = await generate(reloaded.model, prompt, () => '', { temperature: 0, maxTokens: 10 });
    expect(got.ids).toEqual(want.ids);
    resident.dispose();
    // one that cannot fit is refused, with the plan's reasons, and the model is left as it was
    expect(() => replanLoaded(reloaded, generateTask(40, 2000, 2048, 'chat'), { deviceBudget: 4096 })).toThrow(/chat does not fit in memory on the \w+ backend: needs .*What would:/);
    const still = await generate(reloaded.model, prompt, () => '', { temperature: 0, maxTokens: 10 });
    expect(still.ids).toEqual(want.ids);
    reloaded.dispose();
  });

  it('the wasm heap refuses an impossible allocation with an error that says so, not a corrupt heap', () => {
    if (tf.getBackend() !== 'wasm') return;
    guardWasmHeap();
    const wasm = (tf.backend() as unknown as { wasm: { _malloc(n: number): number } }).wasm;
    expect(() => wasm._malloc(0xfffffff0)).toThrow(BackendOutOfMemoryError);
    // and tfjs itself, asked for such a tensor, fails the same way instead of writing at address 0
    expect(() => tf.zeros([0x3ffffff0])).toThrow(/ran out of memory/);
  });

  it("tfjs-wasm's Aborted() is reported as running out of memory, with advice", () => {
    const e = explainOutOfMemory(new Error('Aborted(). Build with -sASSERTIONS for more info.'));
    expect((e as Error).name).toBe('BlocklabError');
    expect((e as Error).message).toMatch(/ran out of memory/);
    expect((e as Error).message).not.toMatch(/ASSERTIONS/);
    const other = new Error('something else');
    expect(explainOutOfMemory(other)).toBe(other);
  });
});
