/**
 * The training gradients (tfjs, float32, the hand-written backward passes of autodiff.ts and
 * trainable.ts) against central finite differences of the float64 reference forward pass
 * (test/reference/llama-ref.ts), which shares no code with the engine.
 *
 * Loss: mean next-token cross-entropy over a batch of 2 rows × 10 tokens, the loss the trainer
 * minimises. For every trainable tensor we check the 2 largest |grad| entries and 2 seeded
 * random ones.
 *
 * Tolerance: |analytic − fd| ≤ 3e-5·max(1e-2, |fd|) + 5e-7.
 *   - fd is computed in float64 with h = 1e-4: truncation error h²/6·|f'''| ≈ 2e-9·|f'''|
 *     (f''' is O(1..100) for these unit-scale tiny models) and round-off ε64·|L|/h ≈ 1e-11,
 *     so fd is the true derivative of the float64 loss to ~1e-7.
 *   - The analytic gradient runs the forward and backward in float32 (ε32 ≈ 6e-8) through
 *     ~20 ops deep with sums of up to V = 261 terms: a relative error of ~1e-5 of the gradient's
 *     scale, i.e. a few 1e-7 absolute here; and the engine's RoPE tables are float32 while the
 *     reference's are float64, which moves the function (not the gradient's formula) by ~1e-7.
 *   Measured (every check logs its max abs and relative error and the share of the tolerance
 *   used): max abs error 4.3e-7 on wasm, 5.7e-7 on webgpu (llvmpipe); at most 12% (wasm) and
 *   27% (webgpu) of the tolerance used. A wrong backward pass (a missing transpose, a factor 2
 *   or 1/N, a dropped term of the tied embedding, a wrong GQA head mapping) is off by >= 10% of
 *   the gradient and fails it by orders of magnitude.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initTestBackend, TEST_BACKEND } from '../helpers/backend.js';
import { expandModel, makeTinyCheckpoint, openCheckpoint, tf, type TinyOptions } from '../../src/main/engine/index.js';
import { ensureGradients } from '../../src/main/engine/autodiff.js';
import { LlamaModel } from '../../src/main/engine/model.js';
import { makeTrainable, type TrainableSet, type TrainMethod } from '../../src/main/engine/trainable.js';
import { loadReference, meanLossFromWeights, type RefConfig, type RefWeights } from '../reference/llama-ref.js';
import { someIds, testDir } from '../helpers/tmp.js';

const H = 1e-4;
const REL = 3e-5;
const ABS = 5e-7;
const T = 10;
const VOCAB = 261;
const BATCH = [someIds(T, VOCAB, 11), someIds(T, VOCAB, 12)];

const SHAPE = { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64 } satisfies TinyOptions;

let root: string;
beforeAll(async () => {
  await initTestBackend();
  ensureGradients();
  root = await testDir('gradients');
});

interface Grad {
  data: Float32Array; // HF layout ([out, in] for linears)
  shape: number[];
}

/** tf.variableGrads of the trainer's loss, each gradient in the HF layout. */
async function analyticGrads(set: TrainableSet, batch: number[][]): Promise<{ loss: number; grads: Map<string, Grad> }> {
  const vars = set.params.map((p) => p.variable);
  const ids = tf.tensor2d(batch.flat(), [batch.length, batch[0].length], 'int32');
  const { value, grads } = tf.variableGrads(() => set.loss(ids), vars);
  const out = new Map<string, Grad>();
  for (const p of set.params) {
    const g = grads[p.variable.name];
    expect(g, `no gradient for ${p.name}`).toBeDefined();
    const hf = p.transposed ? tf.transpose(g) : g;
    out.set(p.name, { data: (await hf.data()) as Float32Array, shape: [...hf.shape] });
    if (hf !== g) hf.dispose();
  }
  const loss = (await value.data())[0];
  for (const g of Object.values(grads)) g.dispose();
  value.dispose();
  ids.dispose();
  return { loss, grads: out };
}

/** The coordinates to check: the 2 largest |grad| entries and 2 seeded random ones. */
function coordinates(g: Float32Array, seed: number): number[] {
  const order = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]) - Math.abs(g[a]));
  let s = seed >>> 0;
  const rand = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % g.length;
  };
  return [...new Set([order[0], order[1], rand(), rand()])];
}

/** Central difference of the float64 reference loss in one coordinate of one tensor. */
function finiteDifference(cfg: RefConfig, weights: RefWeights, name: string, index: number, batch: number[][]): number {
  const w = weights.get(name);
  if (!w) throw new Error(`reference has no ${name}`);
  const orig = w[index];
  w[index] = orig + H;
  const plus = meanLossFromWeights(cfg, weights, batch);
  w[index] = orig - H;
  const minus = meanLossFromWeights(cfg, weights, batch);
  w[index] = orig;
  return (plus - minus) / (2 * H);
}

interface ErrorStats {
  checked: number;
  maxAbs: number;
  maxRel: number; // |a − fd| / |fd| over entries with |fd| ≥ 1e-3
  maxUsed: number; // the largest error as a fraction of its tolerance
}

const newStats = (): ErrorStats => ({ checked: 0, maxAbs: 0, maxRel: 0, maxUsed: 0 });
const describeStats = (s: ErrorStats) =>
  `max abs err ${s.maxAbs.toExponential(2)}, max rel err ${s.maxRel.toExponential(2)}, ${(100 * s.maxUsed).toFixed(0)}% of the tolerance used (${TEST_BACKEND})`;

function compare(analytic: number, fd: number, stats: ErrorStats, what: string): void {
  const err = Math.abs(analytic - fd);
  const tolerance = REL * Math.max(1e-2, Math.abs(fd)) + ABS;
  stats.checked++;
  stats.maxAbs = Math.max(stats.maxAbs, err);
  stats.maxUsed = Math.max(stats.maxUsed, err / tolerance);
  if (Math.abs(fd) >= 1e-3) stats.maxRel = Math.max(stats.maxRel, err / Math.abs(fd));
  expect(err, `${what}: analytic ${analytic}, finite difference ${fd}`).toBeLessThanOrEqual(tolerance);
}

async function loadTrainable(dir: string, method: TrainMethod, seed = 0) {
  const ckpt = await openCheckpoint(dir);
  const model = await LlamaModel.fromTensors(ckpt.config, ckpt.tensors);
  const set = makeTrainable(model, ckpt, method, seed);
  return {
    ckpt,
    set,
    dispose: () => {
      set.dispose();
      model.dispose();
    },
  };
}

const FULL_VARIANTS: [string, TinyOptions][] = [
  ['llama, untied, attention and MLP biases', { ...SHAPE, tie: false, attentionBias: true, mlpBias: true }],
  ['llama, tied embeddings, no biases', { ...SHAPE, tie: true }],
  ['qwen2, tied, q/k/v biases', { ...SHAPE, architecture: 'Qwen2ForCausalLM', tie: true }],
];

describe('method full: every parameter tensor against finite differences', () => {
  it.each(FULL_VARIANTS)('%s', async (label, options) => {
    const dir = join(root, label.replace(/\W+/g, '-'));
    await makeTinyCheckpoint(dir, { seed: 5, ...options });
    const ref = await loadReference(dir);
    const { set, dispose } = await loadTrainable(dir, { kind: 'full' });
    try {
      // every tensor of the checkpoint is a variable, and nothing else is
      expect(set.params.map((p) => p.name).sort()).toEqual([...ref.weights.keys()].sort());
      if (options.tie) expect(ref.weights.has('lm_head.weight')).toBe(false);

      const { loss, grads } = await analyticGrads(set, BATCH);
      const refLoss = meanLossFromWeights(ref.config, ref.weights, BATCH);
      expect(Math.abs(loss - refLoss)).toBeLessThan(1e-4);

      const stats = newStats();
      let seed = 1;
      for (const [name, g] of grads) {
        expect(g.data.length).toBe(ref.weights.get(name)!.length);
        // a tensor whose gradient is identically zero would make the check vacuous
        expect(Math.max(...Array.from(g.data, Math.abs)), `${name} has an all-zero gradient`).toBeGreaterThan(1e-6);
        for (const i of coordinates(g.data, seed++)) {
          compare(g.data[i], finiteDifference(ref.config, ref.weights, name, i, BATCH), stats, `${name}[${i}]`);
        }
      }
      console.log(`gradients full (${label}): ${stats.checked} entries of ${grads.size} tensors, ${describeStats(stats)}`);
    } finally {
      dispose();
    }
  });
});

describe('method blocks on an expanded model', () => {
  it('only the new blocks are variables; o_proj/down_proj match finite differences; q/k/v/gate/up and norms get exactly 0', async () => {
    const base = join(root, 'blocks-base');
    const expanded = join(root, 'blocks-expanded');
    await makeTinyCheckpoint(base, { ...SHAPE, seed: 9, tie: false, attentionBias: true, mlpBias: true });
    await expandModel(base, { blocks: 2 }, { out: expanded }); // layers 0, new, 1, new
    const ref = await loadReference(expanded);
    const { ckpt, set, dispose } = await loadTrainable(expanded, { kind: 'blocks' });
    try {
      const newLayers = ckpt.expansion!.new_layers;
      expect(newLayers).toEqual([1, 3]);
      const expected = [...ref.weights.keys()].filter((n) => newLayers.some((l) => n.startsWith(`model.layers.${l}.`)));
      expect(set.params.map((p) => p.name).sort()).toEqual(expected.sort());

      const { grads } = await analyticGrads(set, BATCH);
      const stats = newStats();
      let seed = 100;
      for (const [name, g] of grads) {
        const maxAbs = Math.max(...Array.from(g.data, Math.abs));
        if (/\.(o_proj|down_proj)\.(weight|bias)$/.test(name)) {
          // the branch outputs: zero at init, but the loss depends on them
          expect(maxAbs, name).toBeGreaterThan(1e-6);
          for (const i of coordinates(g.data, seed++)) {
            compare(g.data[i], finiteDifference(ref.config, ref.weights, name, i, BATCH), stats, `${name}[${i}]`);
          }
        } else {
          // Everything upstream of a zero o_proj/down_proj: the block's output does not depend
          // on q/k/v/gate/up, their biases or the two norms while o_proj = down_proj = 0
          // (dx = dy·Wᵀ = 0 exactly), so their gradients are exactly zero, not just small.
          expect(maxAbs, `${name} should have an exactly zero gradient at init`).toBe(0);
          // and the reference agrees: perturbing them leaves the float64 loss unchanged
          const i = coordinates(g.data, seed++)[2];
          expect(finiteDifference(ref.config, ref.weights, name, i, BATCH)).toBe(0);
        }
      }
      console.log(`gradients blocks: ${stats.checked} o/down entries, ${describeStats(stats)}`);
    } finally {
      dispose();
    }
  });
});

describe('method lora', () => {
  it("B's gradient matches finite differences of the merged weight W + s·(A·B)ᵀ; A's is 0 at init (B = 0)", async () => {
    const dir = join(root, 'lora');
    await makeTinyCheckpoint(dir, { ...SHAPE, seed: 13, tie: false });
    const ref = await loadReference(dir);
    const rank = 4;
    const alpha = 8;
    const method: TrainMethod = { kind: 'lora', rank, alpha, targets: ['q', 'v', 'down'] };
    const { set, dispose } = await loadTrainable(dir, method, 3);
    try {
      const scale = alpha / rank;
      expect(set.loraScale).toBe(scale);
      expect(set.lora.length).toBe(2 * 3);
      // only the adapters are variables
      expect(set.params.every((p) => /^base_model\.model\.model\.layers\.\d+\..*\.lora_[AB]\.weight$/.test(p.name))).toBe(true);

      // The engine keeps A: [in, r] and B: [r, out] with y = x·W + s·(x·A)·B, i.e. in the HF
      // layout merged W' [out, in] = W + s·(A·B)ᵀ. The reference sees only W'.
      const merged = (w: Float64Array, a: ArrayLike<number>, b: ArrayLike<number>, inDim: number, outDim: number): Float64Array => {
        const out = Float64Array.from(w);
        for (let o = 0; o < outDim; o++) {
          for (let i = 0; i < inDim; i++) {
            let s = 0;
            for (let j = 0; j < rank; j++) s += a[i * rank + j] * b[j * outDim + o];
            out[o * inDim + i] += scale * s;
          }
        }
        return out;
      };
      const hfName = (layer: number, proj: string) =>
        `model.layers.${layer}.${{ q: 'self_attn.q_proj', v: 'self_attn.v_proj', down: 'mlp.down_proj' }[proj]}.weight`;

      /** The reference's weights with every adapter merged in: W' = W + s·(A·B)ᵀ. */
      const mergedAll = async (): Promise<RefWeights> => {
        const weights = new Map(ref.weights);
        for (const l of set.lora) {
          const name = hfName(l.layer, l.proj);
          weights.set(name, merged(ref.weights.get(name)!, (await l.a.data()) as Float32Array, (await l.b.data()) as Float32Array, l.a.shape[0]!, l.b.shape[1]!));
        }
        return weights;
      };

      /** fd of the reference loss w.r.t. B[index] or A[index] (engine layout) of one adapter, the others merged as they are */
      const fdAdapter = (all: RefWeights, l: (typeof set.lora)[number], aVals: Float32Array, bVals: Float32Array, which: 'a' | 'b', index: number): number => {
        const name = hfName(l.layer, l.proj);
        const w = ref.weights.get(name)!;
        const [inDim, outDim] = [l.a.shape[0]!, l.b.shape[1]!];
        const a = Float64Array.from(aVals);
        const b = Float64Array.from(bVals);
        const target = which === 'a' ? a : b;
        const orig = target[index];
        const at = (v: number) => {
          target[index] = v;
          const weights = new Map(all);
          weights.set(name, merged(w, a, b, inDim, outDim));
          return meanLossFromWeights(ref.config, weights, BATCH);
        };
        const d = (at(orig + H) - at(orig - H)) / (2 * H);
        target[index] = orig;
        return d;
      };

      const check = async (phase: string, expectAZero: boolean) => {
        const { grads } = await analyticGrads(set, BATCH);
        const all = await mergedAll();
        const stats = newStats();
        let seed = 200;
        for (const l of set.lora) {
          const prefix = `base_model.model.${hfName(l.layer, l.proj).replace(/\.weight$/, '')}`;
          const aVals = (await l.a.data()) as Float32Array;
          const bVals = (await l.b.data()) as Float32Array;
          // the engine-layout gradients (analyticGrads returns them transposed to PEFT's layout)
          const gA = tf.tidy(() => tf.transpose(tf.tensor(grads.get(`${prefix}.lora_A.weight`)!.data, grads.get(`${prefix}.lora_A.weight`)!.shape)));
          const gB = tf.tidy(() => tf.transpose(tf.tensor(grads.get(`${prefix}.lora_B.weight`)!.data, grads.get(`${prefix}.lora_B.weight`)!.shape)));
          const ga = (await gA.data()) as Float32Array;
          const gb = (await gB.data()) as Float32Array;
          gA.dispose();
          gB.dispose();
          expect(Math.max(...Array.from(gb, Math.abs)), `${prefix} B gradient`).toBeGreaterThan(1e-6);
          for (const i of coordinates(gb, seed++)) compare(gb[i], fdAdapter(all, l, aVals, bVals, 'b', i), stats, `${prefix}.lora_B[${i}] (${phase})`);
          if (expectAZero) {
            // dL/dA = xᵀ·(dy·Bᵀ)·s = 0 exactly while B = 0
            expect(Math.max(...Array.from(ga, Math.abs)), `${prefix} A gradient at init`).toBe(0);
          } else {
            for (const i of coordinates(ga, seed++)) compare(ga[i], fdAdapter(all, l, aVals, bVals, 'a', i), stats, `${prefix}.lora_A[${i}] (${phase})`);
          }
        }
        console.log(`gradients lora (${phase}): ${stats.checked} entries, ${describeStats(stats)}`);
      };

      // at init: B = 0 (PEFT's init), so the adapters add nothing and A gets no gradient
      for (const l of set.lora) expect(Math.max(...Array.from((await l.b.data()) as Float32Array, Math.abs))).toBe(0);
      await check('B = 0', true);

      // after moving B off zero, both A and B gradients match finite differences
      let k = 1;
      for (const l of set.lora) {
        const values = Float32Array.from({ length: l.b.size }, (_, i) => 0.05 * Math.sin(1.7 * (i + 1) + k));
        const t = tf.tensor(values, l.b.shape);
        l.b.assign(t);
        t.dispose();
        k++;
      }
      await check('B ≠ 0', false);
    } finally {
      dispose();
    }
  });
});
