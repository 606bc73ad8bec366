/**
 * WebGPU's 'packed' residency (src/main/engine/webgpu-kernels.ts, weights.ts): frozen BF16 / F16
 * blocks kept at their stored precision in GPU memory and widened to float32 by the engine's own
 * WGSL kernel when they compute. On whatever adapter Dawn finds (llvmpipe here and in CI):
 *
 *   - the kernel's float32 is the CPU widening's (dtype.ts) bit for bit, for every one of the
 *     65536 bit patterns of each format (subnormals, ±0, inf, NaN payloads), at odd lengths;
 *   - logits with packed blocks, embedding and head are the host-streamed model's bit for bit
 *     (the same float32 weights in the same [out, in] computation), and the resident model's
 *     within 1e-5; a packed table split into blocks of rows (the binding limit) gathers and
 *     slices the same rows as a whole one;
 *   - gradients of block-only and LoRA tuning with packed frozen blocks are the streamed ones
 *     bit for bit; the trainer under a budget that packs gives the streamed run's weights;
 *   - the plan packs under a device budget between the packed and the float32 needs, and
 *     `blocklab plan` / `score` say so and score as wasm does.
 *
 * Without an adapter the tests are skipped, with the reason in their title — unless
 * BLOCKLAB_REQUIRE_WEBGPU=1 (CI), where that is a failure.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { expandModel, initBackend, makeTinyCheckpoint, openCheckpoint, tf, type TinyOptions } from '../../src/main/engine/index.js';
import { ensureGradients } from '../../src/main/engine/autodiff.js';
import { toFloat32 } from '../../src/main/engine/dtype.js';
import { LlamaModel } from '../../src/main/engine/model.js';
import { generate } from '../../src/main/engine/generate.js';
import { planCheckpoint, scoreTask, trainTask, type PlanTask } from '../../src/main/engine/plan.js';
import { makeTrainable, type TrainMethod } from '../../src/main/engine/trainable.js';
import { DEFAULT_ADAMW } from '../../src/main/engine/optimizer.js';
import { readSafetensorsHeader, readTensorFloat32 } from '../../src/main/engine/safetensors.js';
import { train, TRAIN_DEFAULTS, type TrainOptions } from '../../src/main/engine/trainer.js';
import { WeightStore, type ResidencyPlan } from '../../src/main/engine/weights.js';
import { probeWebgpu } from '../../src/main/engine/webgpu.js';
import { MATVEC_MAX_ROWS, packHalfWords, packedMatVec16, uploadPacked, widen16 } from '../../src/main/engine/webgpu-kernels.js';
import { fromFloat32 } from '../../src/main/engine/dtype.js';
import { oneJson, runCli } from '../helpers/cli-runner.js';
import { someIds, testDir } from '../helpers/tmp.js';

const probe = await probeWebgpu('all');
if (!probe.found && process.env.BLOCKLAB_REQUIRE_WEBGPU === '1') {
  throw new Error(`BLOCKLAB_REQUIRE_WEBGPU=1, but no WebGPU adapter could be created: ${probe.note}`);
}
const adapter = probe.adapter;
const title = adapter ? `packed weights on ${adapter.device || adapter.description}` : `packed weights — SKIPPED, no WebGPU adapter could be created here: ${probe.note}`;

const VOCAB = 261;

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

async function logitsOf(m: LlamaModel, ids: number[][]): Promise<Float32Array> {
  const t = m.forward(ids);
  const d = (await t.data()) as Float32Array;
  t.dispose();
  return d;
}

const every = (L: number, r: 'host' | 'packed', tables: 'device' | 'host' | 'packed' = 'device'): ResidencyPlan => ({ embed: tables, head: tables, blocks: new Array(L).fill(r) });

/** A device budget just below the resident need of `task` on webgpu: packed fits under it, float32 does not. */
async function packingBudget(dir: string, task: PlanTask): Promise<number> {
  const p = planCheckpoint(await openCheckpoint(dir), task, 'webgpu', { deviceBudget: null });
  expect(p.residency.mode).toBe('resident');
  return Math.floor(p.device.need) - 1;
}

/** A device budget under which `task` fits with its frozen blocks streamed from RAM, none packed. */
async function streamedBudget(dir: string, task: PlanTask): Promise<number> {
  const ckpt = await openCheckpoint(dir);
  for (let b = await packingBudget(dir, task); b > 0; b = Math.floor(b * 0.99)) {
    const p = planCheckpoint(ckpt, task, 'webgpu', { deviceBudget: b });
    if (p.residency.mode === 'streamed') {
      expect(p.fits).toBe(true);
      return b;
    }
  }
  throw new Error('no budget streams');
}

describe.skipIf(!adapter)(title, () => {
  let root: string;
  beforeAll(async () => {
    await initBackend('webgpu');
    ensureGradients();
    root = await testDir('packed');
  });
  afterEach(() => {
    delete process.env.BLOCKLAB_DEVICE_BUDGET;
  });

  it.each(['BF16', 'F16'] as const)('Widen16 (%s) gives the CPU widening bit for bit for all 65536 patterns, NaN payloads included', async (dtype) => {
    // every pattern, then once more at an odd offset so each value is seen in both halves of a word
    const n = 2 * 65536 + 1;
    const u16 = Uint16Array.from({ length: n }, (_, i) => (i < 65536 ? i : i - 65535) & 0xffff);
    const bytes = new Uint8Array(u16.buffer);
    expect(packHalfWords(bytes).length).toBe(65537);
    const want = toFloat32(bytes, dtype);
    const packed = uploadPacked(bytes);
    const wide = widen16(packed, [1, n], dtype);
    expect(wide.shape).toEqual([1, n]);
    const got = (await wide.data()) as Float32Array;
    tf.dispose([packed, wide]);
    const g = new Uint32Array(got.buffer, got.byteOffset, n);
    const w = new Uint32Array(want.buffer, want.byteOffset, n);
    const bad = [];
    for (let i = 0; i < n && bad.length < 5; i++) if (g[i] !== w[i]) bad.push(`${u16[i].toString(16)} → ${g[i].toString(16)}, want ${w[i].toString(16)}`);
    expect(bad).toEqual([]);
    expect(() => widen16(tf.tensor1d([1, 2], 'int32'), [5], dtype)).toThrow(/2 packed int32 words for 5 values/);
  });

  it.each([
    ['BF16', 1, 64, 96],
    ['F16', 3, 47, 130],
    ['BF16', MATVEC_MAX_ROWS, 200, 70_000],
  ] as const)('PackedMatVec16 (%s, %i rows, in %i, out %i) gives x · Wᵀ as a float64 sum of the widened weights does, within float32 rounding', async (dtype, n, k, out) => {
    // random weights and inputs; the reference sums the same float32 products in float64
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
    const wValues = Float32Array.from({ length: out * k }, rand);
    const bytes = fromFloat32(wValues, dtype);
    const wide = toFloat32(bytes, dtype);
    const xValues = Float32Array.from({ length: n * k }, rand);
    const w = uploadPacked(bytes);
    const x = tf.tensor2d(xValues, [n, k]);
    const y = packedMatVec16(x, w, dtype);
    expect(y.shape).toEqual([n, out]);
    const got = (await y.data()) as Float32Array;
    tf.dispose([w, x, y]);
    let worst = 0;
    for (let r = 0; r < n; r++) {
      for (let o = 0; o < out; o++) {
        let sum = 0;
        for (let j = 0; j < k; j++) sum += xValues[r * k + j] * wide[o * k + j];
        worst = Math.max(worst, Math.abs(got[r * out + o] - sum) / Math.sqrt(k));
      }
    }
    // measured ≤ 3.5e-7 (relative to √in, the sum's scale) on llvmpipe; the two halves of a word swapped: 1.3
    expect(worst).toBeLessThan(1e-6);
  });

  const SHAPES: [string, TinyOptions][] = [
    ['llama BF16 untied, biases', { layers: 3, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, tie: false, dtype: 'BF16', attentionBias: true, mlpBias: true }],
    ['llama F16 tied, sharded, odd-sized tensors', { layers: 3, hidden: 30, heads: 3, kvHeads: 1, intermediate: 47, dtype: 'F16', maxShardBytes: 20_000 }],
    ['qwen2 F32 (kept float32 on the GPU)', { architecture: 'Qwen2ForCausalLM', layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, tie: false }],
  ];

  it.each(SHAPES)('%s: packed blocks give the streamed logits bit for bit and the resident ones within 1e-5, and free every tensor', async (name, options) => {
    const dir = join(root, name.replace(/\W+/g, '-'));
    await makeTinyCheckpoint(dir, { seed: 5, ...options });
    const ckpt = await openCheckpoint(dir);
    const L = ckpt.config.numLayers;
    const batch = [someIds(14, VOCAB, 1), someIds(14, VOCAB, 2)];
    const resident = await LlamaModel.fromTensors(ckpt.config, ckpt.tensors);
    const want = await logitsOf(resident, batch);
    resident.dispose();
    const streamed = await LlamaModel.fromTensors(ckpt.config, ckpt.tensors, { residency: every(L, 'host') });
    const wantStreamed = await logitsOf(streamed, batch);
    streamed.dispose();

    const before = tf.memory().numTensors;
    const m = await LlamaModel.fromTensors(ckpt.config, ckpt.tensors, { residency: every(L, 'packed') });
    expect(m.store.residency.blocks).toEqual(new Array(L).fill('packed'));
    const got = await logitsOf(m, batch);
    expect(sameBits(got, wantStreamed), 'packed logits differ from the host-streamed ones').toBe(true);
    // measured ≤ 4e-7 between the [in, out] and [out, in] routes on llvmpipe
    expect(Math.max(...got.map((v, i) => Math.abs(v - want[i])))).toBeLessThan(1e-5);
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);

    // the embedding and head packed too: the host-streamed tables' logits bit for bit
    const streamedTables = await LlamaModel.fromTensors(ckpt.config, ckpt.tensors, { residency: every(L, 'host', 'host') });
    const wantTables = await logitsOf(streamedTables, batch);
    streamedTables.dispose();
    const all = await LlamaModel.fromTensors(ckpt.config, ckpt.tensors, { residency: every(L, 'packed', 'packed') });
    expect(all.store.residency).toEqual(every(L, 'packed', 'packed'));
    const gotAll = await logitsOf(all, batch);
    expect(sameBits(gotAll, wantTables), 'logits with a packed embedding and head differ from the host-streamed ones').toBe(true);
    expect(Math.max(...gotAll.map((v, i) => Math.abs(v - want[i])))).toBeLessThan(1e-5);
    all.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it.each(SHAPES.slice(0, 2))('%s: decoding multiplies packed blocks and head from their words: logits within 1e-5 of resident, the same greedy tokens', async (name, options) => {
    const dir = join(root, `decode-${name.replace(/\W+/g, '-')}`);
    await makeTinyCheckpoint(dir, { seed: 6, ...options });
    const ckpt = await openCheckpoint(dir);
    const L = ckpt.config.numLayers;
    const resident = await LlamaModel.fromTensors(ckpt.config, ckpt.tensors);
    const packed = await LlamaModel.fromTensors(ckpt.config, ckpt.tensors, { residency: every(L, 'packed', 'packed') });
    // a step of at most 8 tokens takes the matvec route (no block widened); compare 1, 3 and 8 tokens
    for (const ids of [[someIds(1, VOCAB, 11)], [someIds(3, VOCAB, 12)], [someIds(4, VOCAB, 13), someIds(4, VOCAB, 14)]]) {
      const want = await logitsOf(resident, ids);
      // the step runs the matvec kernel and widens no weight matrix (only norms and biases)
      let got: Float32Array = new Float32Array(0);
      const profile = await tf.profile(async () => {
        got = await logitsOf(packed, ids);
      });
      expect(profile.kernels.filter((k) => k.name === 'BlocklabPackedMatVec16').length).toBe(7 * L + 1);
      expect(profile.kernels.filter((k) => k.name === 'BlocklabWiden16' && k.outputShapes[0].length > 1)).toEqual([]);
      // measured ≤ 4.3e-6 on llvmpipe (a different order of float32 sums than tfjs's matmul)
      expect(Math.max(...got.map((v, i) => Math.abs(v - want[i]))), `${ids.length} × ${ids[0].length} tokens`).toBeLessThan(1e-5);
    }
    const prompt = someIds(6, VOCAB, 15);
    const greedy = { temperature: 0, maxTokens: 12 };
    const a = await generate(resident, prompt, () => '', greedy);
    const b = await generate(packed, prompt, () => '', greedy);
    expect(b.ids).toEqual(a.ids);
    resident.dispose();
    packed.dispose();
  });

  it.each(['BF16', 'F32'] as const)('a %s embedding and head split into blocks of rows (a small binding limit) give the whole tables\' rows and logits', async (dtype) => {
    const dir = join(root, `split-${dtype}`);
    await makeTinyCheckpoint(dir, { seed: 8, layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, tie: false, dtype });
    const ckpt = await openCheckpoint(dir);
    const plan = every(2, 'packed', 'packed');
    const ids = tf.tensor1d([0, 1, 40, 41, 99, 100, 101, 180, 259, 260, 5, 260, 0], 'int32');
    const rowsOf = async (maxTensorBytes: number | null) => {
      const store = await WeightStore.load(ckpt.config, ckpt.tensors, { plan, maxTensorBytes });
      const m = new LlamaModel(ckpt.config, store);
      const e = store.embedRows(ids);
      const h = store.headRows(37, 213);
      const out = { embed: (await e.data()) as Float32Array, head: (await h.data()) as Float32Array, parts: store.maxHeadRows(), logits: await logitsOf(m, [someIds(9, VOCAB, 3)]) };
      tf.dispose(e);
      store.releaseHeadRows(h);
      m.dispose();
      return out;
    };
    const whole = await rowsOf(null);
    // 261 rows of 32 values: 40 rows fit 2600 bytes packed (7 even blocks of 38), 20 as float32 (14 of 19)
    const split = await rowsOf(2600);
    expect(whole.parts).toBe(VOCAB);
    expect(split.parts).toBe(dtype === 'BF16' ? 38 : 19);
    expect(sameBits(split.embed, whole.embed), 'embedding rows').toBe(true);
    expect(sameBits(split.head, whole.head), 'head rows').toBe(true);
    // the head is multiplied a block of rows at a time: measured bit-identical on llvmpipe; allow rounding
    expect(Math.max(...split.logits.map((v, i) => Math.abs(v - whole.logits[i])))).toBeLessThan(1e-6);
    // and they are the checkpoint's rows
    const table = await readTensorFloat32(ckpt.tensors.get('model.embed_tokens.weight')!);
    const want = new Float32Array([...((await ids.data()) as Int32Array)].flatMap((id) => [...table.subarray(id * 32, id * 32 + 32)]));
    expect(sameBits(whole.embed, want)).toBe(true);
    ids.dispose();
  });

  describe('training with packed frozen blocks', () => {
    let expanded: string;
    beforeAll(async () => {
      const base = join(root, 'train-base');
      expanded = join(root, 'train-expanded');
      await makeTinyCheckpoint(base, { layers: 4, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, tie: false, dtype: 'BF16', seed: 9 });
      await expandModel(base, { blocks: 2 }, { out: expanded });
      await writeFile(join(root, 'corpus.txt'), 'the quick brown fox jumps over the lazy dog; '.repeat(200));
    });

    async function gradients(where: 'host' | 'packed', method: TrainMethod): Promise<Map<string, Float32Array>> {
      const ckpt = await openCheckpoint(expanded);
      const trainable = new Set(method.kind === 'blocks' ? ckpt.expansion!.new_layers : []);
      const plan: ResidencyPlan = { embed: where, head: where, blocks: Array.from({ length: 6 }, (_, i) => (trainable.has(i) ? 'device' : where)) };
      const m = await LlamaModel.fromTensors(ckpt.config, ckpt.tensors, { residency: plan, purpose: 'train' });
      expect(m.store.residency.blocks.filter((r) => r === where)).toHaveLength(6 - trainable.size);
      const set = makeTrainable(m, ckpt, method, 0);
      if (method.kind === 'lora') for (const l of set.lora) l.b.assign(tf.tidy(() => tf.mul(tf.ones(l.b.shape), 0.05)));
      const ids = tf.tensor2d([...someIds(12, VOCAB, 7), ...someIds(12, VOCAB, 8)], [2, 12], 'int32');
      const { value, grads } = tf.variableGrads(() => set.loss(ids), set.params.map((p) => p.variable));
      const out = new Map<string, Float32Array>();
      for (const p of set.params) out.set(p.name, (await grads[p.variable.name].data()) as Float32Array);
      tf.dispose([value, ids, ...Object.values(grads)]);
      set.dispose();
      m.dispose();
      return out;
    }

    it.each([
      ['blocks', { kind: 'blocks' }],
      ['lora on q, v, down', { kind: 'lora', rank: 2, alpha: 4, targets: ['q', 'v', 'down'] }],
    ] as [string, TrainMethod][])('%s: the gradients equal the host-streamed ones bit for bit', async (_name, method) => {
      const want = await gradients('host', method);
      const got = await gradients('packed', method);
      expect([...got.keys()]).toEqual([...want.keys()]);
      for (const [name, g] of got) expect(sameBits(g, want.get(name)!), name).toBe(true);
    });

    function options(out: string): TrainOptions {
      return {
        ...TRAIN_DEFAULTS,
        model: expanded,
        data: { paths: [join(root, 'corpus.txt')] },
        out,
        method: { kind: 'blocks' },
        steps: 4,
        lr: 2e-3,
        batch: 2,
        seq: 24,
        warmup: 1,
        evalBatches: 1,
        adamw: DEFAULT_ADAMW,
        cacheDir: join(root, 'cache-dir'),
        resume: false,
      };
    }

    async function weights(dir: string): Promise<Map<string, Float32Array>> {
      const { tensors } = await readSafetensorsHeader(join(dir, 'model.safetensors'));
      const out = new Map<string, Float32Array>();
      for (const [name, info] of tensors) out.set(name, await readTensorFloat32(info));
      return out;
    }

    it('the trainer under a budget that packs: frozen weights bit-identical, the new blocks trained as when streamed', async () => {
      const task = trainTask(await openCheckpoint(expanded), { kind: 'blocks' }, 2, 24);
      process.env.BLOCKLAB_DEVICE_BUDGET = String(await packingBudget(expanded, task));
      const packed = await train(options(join(root, 'run-packed')));
      expect(packed.residency).toBe('packed');
      // the same run with the frozen blocks streamed from RAM (no room for them on the device)
      process.env.BLOCKLAB_DEVICE_BUDGET = String(await streamedBudget(expanded, task));
      const streamed = await train(options(join(root, 'run-streamed')));
      expect(streamed.residency).toBe('streamed');
      expect(packed.lastLoss).toBe(streamed.lastLoss);
      const got = await weights(packed.model!);
      const want = await weights(streamed.model!);
      const source = await weights(expanded);
      for (const [name, w] of want) {
        expect(sameBits(got.get(name)!, w), `${name}: the packed run differs from the streamed one`).toBe(true);
        const trained = [2, 5].some((l) => name.startsWith(`model.layers.${l}.`));
        expect(sameBits(w, source.get(name)!), name).toBe(!trained);
      }
    });

    it('blocklab plan and score on webgpu: packed under the budget, the NLLs wasm gives', async () => {
      const ids = someIds(20, VOCAB, 4);
      const idsFile = join(root, 'ids.json');
      await writeFile(idsFile, JSON.stringify(ids));
      type Plan = { residency: { mode: string; packed_blocks: number }; device: { need: number } };
      const planOf = async (env: Record<string, string> = {}) => oneJson(await runCli(['plan', expanded, '--backend', 'webgpu', '--json'], { env })) as { inference: Plan; training: Plan };
      const free = await planOf();
      expect(free.training.residency.mode).toBe('resident');
      const trainEnv = { BLOCKLAB_DEVICE_BUDGET: String(Math.floor(free.training.device.need) - 1) };
      const packed = await planOf(trainEnv);
      expect(packed.training.residency.mode).toBe('packed');
      expect(packed.training.residency.packed_blocks).toBe(4);
      const text = (await runCli(['plan', expanded, '--backend', 'webgpu'], { env: trainEnv })).stdout;
      expect(text).toMatch(/residency: packed — 2 blocks float32 on the backend \(trained\), the embedding, the LM head and 4 blocks at stored precision on the GPU, widened when they compute/);
      const env = { BLOCKLAB_DEVICE_BUDGET: String(await packingBudget(expanded, scoreTask(ids.length))) };
      const onGpu = oneJson(await runCli(['score', expanded, '--ids-file', idsFile, '--backend', 'webgpu', '--json'], { env })) as { nll: number[] };
      const onWasm = oneJson(await runCli(['score', expanded, '--ids-file', idsFile, '--backend', 'wasm', '--json'])) as { nll: number[] };
      expect(Math.max(...onGpu.nll.map((v, i) => Math.abs(v - onWasm.nll[i])))).toBeLessThan(1e-4);
    });
  });
});
