/**
 * The training loop end to end on tiny checkpoints (seq 32, batch 2, ≤ 30 steps): what each
 * method may and may not change, bit for bit; LoRA's PEFT adapter; exact resume; refusals;
 * learning; gradient accumulation; and the events a UI plots.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initTestBackend } from '../helpers/backend.js';
import { expandModel, makeTinyCheckpoint, tf } from '../../src/main/engine/index.js';
import { learningRate, DEFAULT_ADAMW } from '../../src/main/engine/optimizer.js';
import { readSafetensorsHeader, readTensorBytes, readTensorFloat32 } from '../../src/main/engine/safetensors.js';
import { train, TRAIN_DEFAULTS, type StepMetrics, type TrainOptions } from '../../src/main/engine/trainer.js';
import { parseMethod } from '../../src/main/engine/trainable.js';
import { testDir } from '../helpers/tmp.js';
import { englishText } from '../helpers/corpus.js';

let root: string;
let base: string; // 4 layers
let expanded: string; // 6 layers: originals at 0, 1, 3, 4; new blocks at 2 and 5
let corpus: string;

const SEQ = 32;
const BATCH = 2;

beforeAll(async () => {
  await initTestBackend();
  root = await testDir('train');
  base = join(root, 'base');
  expanded = join(root, 'expanded');
  corpus = join(root, 'corpus.txt');
  await makeTinyCheckpoint(base, { layers: 4, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, tie: false, seed: 21 });
  await expandModel(base, { blocks: 2 }, { out: expanded });
  await writeFile(corpus, englishText(20_000));
});

function options(over: Partial<TrainOptions> & Pick<TrainOptions, 'out' | 'method'>): TrainOptions {
  return {
    ...TRAIN_DEFAULTS,
    model: expanded,
    data: { paths: [corpus] },
    steps: 20,
    lr: 2e-3,
    batch: BATCH,
    seq: SEQ,
    warmup: 4,
    evalBatches: 2,
    adamw: DEFAULT_ADAMW,
    cacheDir: join(root, 'cache'),
    resume: false,
    ...over,
  };
}

interface Recorded {
  steps: StepMetrics[];
  evals: [number, number][];
  checkpoints: [number, string][];
}

async function run(o: TrainOptions): Promise<{ result: Awaited<ReturnType<typeof train>>; events: Recorded }> {
  const events: Recorded = { steps: [], evals: [], checkpoints: [] };
  const result = await train(o, {
    onStep: (m) => events.steps.push(m),
    onEval: (s, v) => events.evals.push([s, v]),
    onCheckpoint: (s, d) => events.checkpoints.push([s, d]),
  });
  return { result, events };
}

interface Stored {
  dtype: string;
  shape: number[];
  values: Float32Array;
}

/** Every tensor of a safetensors file (or a checkpoint folder's model), as float32. */
async function tensorsOf(fileOrDir: string): Promise<Map<string, Stored>> {
  const file = fileOrDir.endsWith('.safetensors') ? fileOrDir : join(fileOrDir, 'model.safetensors');
  const { tensors } = await readSafetensorsHeader(file);
  const out = new Map<string, Stored>();
  for (const [name, info] of tensors) out.set(name, { dtype: info.dtype, shape: info.shape, values: await readTensorFloat32(info) });
  return out;
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/**
 * Compares a trained model with its base tensor by tensor: those `trained(name)` selects must
 * differ, every other one must be bit-identical (as float32 bytes).
 */
async function expectOnlyTheseChanged(trainedModel: string, baseModel: string, trained: (name: string) => boolean): Promise<{ changed: string[]; frozen: number }> {
  const after = await tensorsOf(trainedModel);
  const before = await tensorsOf(baseModel);
  expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
  const changed: string[] = [];
  let frozen = 0;
  for (const [name, b] of before) {
    const a = after.get(name)!;
    expect(a.dtype).toBe('F32');
    expect(a.shape).toEqual(b.shape);
    if (trained(name)) {
      expect(sameBits(a.values, b.values), `${name} should have been trained`).toBe(false);
      changed.push(name);
    } else {
      expect(sameBits(a.values, b.values), `${name} is frozen and must be unchanged bit for bit`).toBe(true);
      frozen++;
    }
  }
  return { changed, frozen };
}

const inLayers = (layers: number[]) => (name: string) => layers.some((l) => name.startsWith(`model.layers.${l}.`));

describe('block-only tuning (method blocks)', () => {
  let straight: Awaited<ReturnType<typeof run>>;
  let paused: Awaited<ReturnType<typeof run>>;
  let resumed: Awaited<ReturnType<typeof run>>;
  const straightOut = () => join(root, 'blocks-straight');
  const resumeOut = () => join(root, 'blocks-resume');

  beforeAll(async () => {
    straight = await run(options({ out: straightOut(), method: parseMethod('blocks'), saveEvery: 5, evalEvery: 10 }));
    paused = await run(options({ out: resumeOut(), method: parseMethod('blocks'), stopAfter: 10 }));
    resumed = await run(options({ out: resumeOut(), method: parseMethod('blocks'), resume: true }));
  });

  it('changes every tensor of the new blocks and leaves every other tensor unchanged bit for bit', async () => {
    expect(straight.result.stopped).toBe('completed');
    const { changed, frozen } = await expectOnlyTheseChanged(join(straightOut(), 'model'), expanded, inLayers([2, 5]));
    expect(changed.length).toBe(2 * 9); // norms ×2, q, k, v, o, gate, up, down
    expect(frozen).toBe(4 * 9 + 3); // original blocks + embed, final norm, lm_head
    const config = JSON.parse(await readFile(join(straightOut(), 'model', 'config.json'), 'utf8'));
    expect(config.num_hidden_layers).toBe(6);
    expect(config.blocklab_expansion.new_layers).toEqual([2, 5]);
  });

  it('reports each step, the warmup + cosine learning rate, checkpoints and validation losses', () => {
    const { steps, evals, checkpoints } = straight.events;
    expect(steps.map((s) => s.step)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    for (const s of steps) {
      expect(Number.isFinite(s.loss) && s.loss > 0).toBe(true);
      expect(Number.isFinite(s.gradNorm) && s.gradNorm > 0).toBe(true);
      expect(s.totalSteps).toBe(20);
      expect(s.lr).toBe(learningRate(s.step - 1, { lr: 2e-3, warmup: 4, totalSteps: 20, minLrRatio: 0.1 }));
      // the backend's memory holds at least the AdamW moments it updates (the wasm heap, WebGPU's buffers)
      expect(s.backendBytes).toBeGreaterThanOrEqual(straight.result.optimizerStateBytes);
    }
    // by hand: warmup lr·(k/4) for steps 1..4; then cosine over 16 steps from 2e-3 to 2e-4
    expect(steps[0].lr).toBeCloseTo(5e-4, 12); // step 1: 2e-3 · 1/4
    expect(steps[3].lr).toBeCloseTo(2e-3, 12); // step 4: end of warmup
    expect(steps[4].lr).toBeCloseTo(2e-3, 12); // step 5: progress 0
    expect(steps[12].lr).toBeCloseTo(1.1e-3, 12); // step 13: progress 8/16, 2e-4 + 0.5·1.8e-3
    expect(steps[19].lr).toBeCloseTo(2e-4 + 0.9e-3 * (1 + Math.cos((15 * Math.PI) / 16)), 12); // step 20: progress 15/16
    // every 5 steps, the last one included; only the newest 2 kept on disk
    expect(checkpoints.map(([s]) => s)).toEqual([5, 10, 15, 20]);
    expect(checkpoints[3][1]).toBe(join(straightOut(), 'checkpoint-000020'));
    // validation at step 10 (evalEvery) and at the end
    expect(evals.map(([s]) => s)).toEqual([10, 20]);
    for (const [, v] of evals) expect(Number.isFinite(v) && v > 0).toBe(true);
    expect(straight.result.valLoss).toBe(evals[1][1]);
  });

  it('keeps only the newest checkpoints (keepCheckpoints = 2)', async () => {
    const names = (await readdir(straightOut())).filter((n) => n.startsWith('checkpoint-')).sort();
    expect(names).toEqual(['checkpoint-000015', 'checkpoint-000020']);
  });

  it('resumes exactly: 10 steps + resume to 20 gives the weights and losses of 20 steps straight', async () => {
    expect(paused.result.stopped).toBe('paused');
    expect(paused.result.model).toBeNull();
    expect(paused.events.steps.length).toBe(10);
    expect(resumed.result.startStep).toBe(10);
    expect(resumed.events.steps.map((s) => s.step)).toEqual(Array.from({ length: 10 }, (_, i) => i + 11));
    // steps 1..10 are the same run, steps 11..20 continue it exactly
    expect(paused.events.steps.map((s) => s.loss)).toEqual(straight.events.steps.slice(0, 10).map((s) => s.loss));
    expect(resumed.events.steps.map((s) => s.loss)).toEqual(straight.events.steps.slice(10).map((s) => s.loss));
    expect(resumed.events.steps.map((s) => s.gradNorm)).toEqual(straight.events.steps.slice(10).map((s) => s.gradNorm));
    // elapsed time continues across the resume: the resumed session starts where the paused one's checkpoint ended
    const pausedElapsed = paused.events.steps.at(-1)!.elapsedSeconds;
    expect(resumed.events.steps[0]!.elapsedSeconds).toBeGreaterThan(pausedElapsed);
    const a = await readFile(join(straightOut(), 'model', 'model.safetensors'));
    const b = await readFile(join(resumeOut(), 'model', 'model.safetensors'));
    expect(a.equals(b)).toBe(true);
  });

  it('refuses --resume with changed options, naming the option', async () => {
    await expect(train(options({ out: resumeOut(), method: parseMethod('blocks'), resume: true, lr: 3e-3 }))).rejects.toThrow(/lr: 0\.002 then, 0\.003 now/);
    await expect(train(options({ out: resumeOut(), method: parseMethod('blocks'), resume: true, batch: 3 }))).rejects.toThrow(/batch: 2 then, 3 now/);
    await expect(train(options({ out: resumeOut(), method: parseMethod('lora', { loraRank: 4 }), resume: true }))).rejects.toThrow(/method: "blocks" then, "lora" now/);
  });

  it('refuses a second run into the same --out without --resume', async () => {
    await expect(train(options({ out: straightOut(), method: parseMethod('blocks') }))).rejects.toThrow(/already holds checkpoints.*--resume/);
  });
});

describe('freeze tuning (method last:2)', () => {
  it('changes only the last two original blocks', async () => {
    const out = join(root, 'last2');
    const { result } = await run(options({ out, method: parseMethod('last:2'), steps: 8 }));
    expect(result.stopped).toBe('completed');
    // original blocks sit at 0, 1, 3, 4 of the expanded model: the last two are 3 and 4
    const { changed } = await expectOnlyTheseChanged(join(out, 'model'), expanded, inLayers([3, 4]));
    expect(changed.length).toBe(2 * 9);
  });
});

describe('LoRA (method lora)', () => {
  const rank = 4;
  const alpha = 8;
  const method = () => parseMethod('lora', { loraRank: rank, loraAlpha: alpha, loraTargets: 'q,v' });
  let straight: Awaited<ReturnType<typeof run>>;
  let resumed: Awaited<ReturnType<typeof run>>;
  const straightOut = () => join(root, 'lora-straight');
  const resumeOut = () => join(root, 'lora-resume');

  beforeAll(async () => {
    straight = await run(options({ out: straightOut(), method: method(), lr: 5e-3 }));
    const paused = await run(options({ out: resumeOut(), method: method(), lr: 5e-3, stopAfter: 10 }));
    expect(paused.result.stopped).toBe('paused');
    resumed = await run(options({ out: resumeOut(), method: method(), lr: 5e-3, resume: true }));
  });

  it('merges into the targeted projections only; everything else is unchanged bit for bit', async () => {
    // q/v of the original blocks (0, 1, 3, 4). The new blocks' (2, 5) q/v adapters cannot move:
    // their output goes through the block's frozen o_proj, which is zero, so their gradient is
    // exactly zero and B stays at its zero init (checked below).
    const targeted = (n: string) => /^model\.layers\.[0134]\.self_attn\.(q|v)_proj\.weight$/.test(n);
    const { changed } = await expectOnlyTheseChanged(join(straightOut(), 'model'), expanded, targeted);
    expect(changed.length).toBe(4 * 2);
    const adapter = await tensorsOf(join(straightOut(), 'adapter', 'adapter_model.safetensors'));
    for (const l of [2, 5]) {
      for (const p of ['q_proj', 'v_proj']) {
        const B = adapter.get(`base_model.model.model.layers.${l}.self_attn.${p}.lora_B.weight`)!.values;
        expect(B.every((x) => x === 0)).toBe(true);
      }
    }
  });

  it("writes the adapter in PEFT's format, and merged W' = W + (alpha/r)·B·A", async () => {
    const dir = join(straightOut(), 'adapter');
    const config = JSON.parse(await readFile(join(dir, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: rank, lora_alpha: alpha, bias: 'none', fan_in_fan_out: false });
    expect([...config.target_modules].sort()).toEqual(['q_proj', 'v_proj']);

    const adapter = await tensorsOf(join(dir, 'adapter_model.safetensors'));
    const expectedKeys: string[] = [];
    for (let i = 0; i < 6; i++) {
      for (const p of ['q_proj', 'v_proj']) {
        for (const ab of ['lora_A', 'lora_B']) expectedKeys.push(`base_model.model.model.layers.${i}.self_attn.${p}.${ab}.weight`);
      }
    }
    expect([...adapter.keys()].sort()).toEqual(expectedKeys.sort());

    const baseW = await tensorsOf(expanded);
    const merged = await tensorsOf(join(straightOut(), 'model'));
    let maxErr = 0;
    let maxDelta = 0;
    for (let i = 0; i < 6; i++) {
      for (const p of ['q_proj', 'v_proj']) {
        const name = `model.layers.${i}.self_attn.${p}.weight`;
        const [outDim, inDim] = baseW.get(name)!.shape;
        const A = adapter.get(`base_model.model.${name.replace(/\.weight$/, '')}.lora_A.weight`)!;
        const B = adapter.get(`base_model.model.${name.replace(/\.weight$/, '')}.lora_B.weight`)!;
        expect(A.shape).toEqual([rank, inDim]);
        expect(B.shape).toEqual([outDim, rank]);
        const W = baseW.get(name)!.values;
        const Wm = merged.get(name)!.values;
        for (let o = 0; o < outDim; o++) {
          for (let c = 0; c < inDim; c++) {
            let ba = 0;
            for (let j = 0; j < rank; j++) ba += B.values[o * rank + j] * A.values[j * inDim + c];
            const want = W[o * inDim + c] + (alpha / rank) * ba;
            maxErr = Math.max(maxErr, Math.abs(Wm[o * inDim + c] - want));
            maxDelta = Math.max(maxDelta, Math.abs((alpha / rank) * ba));
          }
        }
      }
    }
    // the adapter really moved (B left zero), and the merge is that identity to float32 rounding
    console.log(`lora merge: max |s·B·A| ${maxDelta.toExponential(2)}, max |W' − (W + s·B·A)| ${maxErr.toExponential(2)}`);
    expect(maxDelta).toBeGreaterThan(1e-3);
    expect(maxErr).toBeLessThan(1e-6);
  });

  it('resumes exactly (adapter, optimizer and sampler restored)', async () => {
    expect(resumed.result.startStep).toBe(10);
    expect(resumed.events.steps.map((s) => s.loss)).toEqual(straight.events.steps.slice(10).map((s) => s.loss));
    for (const f of ['model/model.safetensors', 'adapter/adapter_model.safetensors']) {
      const a = await readFile(join(straightOut(), f));
      const b = await readFile(join(resumeOut(), f));
      expect(a.equals(b), f).toBe(true);
    }
  });
});

describe('learning', () => {
  it('full fine-tuning drives the loss on a repetitive corpus below half its first value within 30 steps', async () => {
    const toy = join(root, 'toy.txt');
    await writeFile(toy, 'the cat sat on the mat. '.repeat(400));
    const { result, events } = await run(options({ model: base, data: { paths: [toy] }, out: join(root, 'toy-full'), method: parseMethod('full'), steps: 30, lr: 3e-3, warmup: 3 }));
    const first = events.steps[0].loss;
    const last = events.steps[29].loss;
    expect(result.firstLoss).toBe(first);
    expect(result.lastLoss).toBe(last);
    console.log(`toy corpus, full: loss ${first.toFixed(3)} → ${last.toFixed(3)} in 30 steps`);
    expect(last).toBeLessThan(0.5 * first);
  });
});

describe('gradient accumulation', () => {
  it('batch 2 × accumulation 2 equals batch 4 × accumulation 1 on the same sequences', async () => {
    // The sampler hands out one seeded permutation of the training sequences per epoch, in
    // order: batch 4 takes perm[0..3], then perm[4..7]; batch 2 × 2 micro-batches takes
    // perm[0,1] + perm[2,3], then perm[4,5] + perm[6,7]. The loss is a mean over rows of equal
    // length, so the mean of the two micro-batch means is the batch-4 mean: same gradients.
    const common = { model: base, method: parseMethod('full'), steps: 2, warmup: 0 } as const;
    const big = await run(options({ ...common, out: join(root, 'accum-b4'), batch: 4, gradAccum: 1 }));
    const acc = await run(options({ ...common, out: join(root, 'accum-b2x2'), batch: 2, gradAccum: 2 }));
    const one = await run(options({ ...common, out: join(root, 'accum-b2x1'), batch: 2, gradAccum: 1 }));
    for (let s = 0; s < 2; s++) {
      const a = big.events.steps[s];
      const b = acc.events.steps[s];
      expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-5 * a.loss);
      expect(Math.abs(a.gradNorm - b.gradNorm)).toBeLessThan(1e-5 * a.gradNorm);
    }
    // and the check can tell: half the data gives another gradient
    expect(Math.abs(one.events.steps[0].gradNorm - big.events.steps[0].gradNorm)).toBeGreaterThan(1e-3 * big.events.steps[0].gradNorm);

    const wa = await tensorsOf(join(root, 'accum-b4', 'model'));
    const wb = await tensorsOf(join(root, 'accum-b2x2', 'model'));
    const w0 = await tensorsOf(base);
    let maxDiff = 0;
    let maxMove = 0;
    for (const [name, t] of wa) {
      const u = wb.get(name)!.values;
      const orig = w0.get(name)!.values;
      for (let i = 0; i < t.values.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(t.values[i] - u[i]));
        maxMove = Math.max(maxMove, Math.abs(t.values[i] - orig[i]));
      }
    }
    const rel = (x: number, y: number) => Math.abs(x - y) / Math.abs(y);
    console.log(
      `accumulation: gradNorm rel diff ${rel(acc.events.steps[0].gradNorm, big.events.steps[0].gradNorm).toExponential(2)} / ${rel(acc.events.steps[1].gradNorm, big.events.steps[1].gradNorm).toExponential(2)}, max weight diff ${maxDiff.toExponential(2)} (moved ${maxMove.toExponential(2)})`,
    );
    expect(maxMove).toBeGreaterThan(1e-4); // the weights did move
    expect(maxDiff).toBeLessThan(1e-5);
    expect(existsSync(join(root, 'accum-b2x2', 'checkpoint-000002'))).toBe(true);
  });
});

describe('memory', () => {
  it('a run frees every tensor it made (variables, optimizer state, LoRA adapters)', async () => {
    // the engine process runs many jobs; a run that leaves tensors behind grows it by the
    // optimizer state (2 moments per trainable value) every time
    for (const m of ['blocks', 'lora']) {
      const before = tf.memory().numTensors;
      await run(options({ out: join(root, `memory-${m}`), method: parseMethod(m, { loraRank: 2 }), steps: 2 }));
      expect(tf.memory().numTensors, m).toBe(before);
    }
  });
});
