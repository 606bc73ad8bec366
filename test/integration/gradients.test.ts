/**
 * The training gradients (tfjs, float32, the hand-written backward passes of autodiff.ts and
 * attention.ts) against central finite differences of the float64 reference forward pass
 * (test/reference/llama-ref.ts), which shares no code with the engine. The engine's side comes
 * from `trainingGradients` (src/main/engine/gradients.ts): the trainer's own loss and
 * trainable set, read out in the checkpoint's layout.
 *
 * Loss: mean next-token cross-entropy over a batch of 2 rows × 10 tokens, the loss the trainer
 * minimises. For every trainable tensor we check its 2 largest |grad| entries and 4 seeded
 * random ones.
 *
 * Tolerance: |analytic − fd| ≤ REL·|fd| + ABS.
 *   - fd is computed in float64 with h = 1e-4: truncation error h²/6·|f'''| ≈ 2e-9·|f'''|
 *     (f''' is O(1..100) for these unit-scale tiny models) and round-off ε64·|L|/h ≈ 1e-11,
 *     so fd is the true derivative of the float64 loss to ~1e-7.
 *   - The analytic gradient runs forward and backward in float32. Measured over the 960 entries
 *     below and a run with 8 per tensor (1,240; 2026-12, wasm backend; |fd| up to 0.86):
 *     |a − fd| ≤ 7.5e-7 everywhere, |a − fd| / |fd| ≤ 7.6e-6 where |fd| ≥ 1e-2. REL and ABS are
 *     about 10× those. The webgpu pass (Mesa llvmpipe) measured ≤ 5.7e-7 on the same entries. The previous tolerance (1e-3·|fd| + 2e-5) passed a backward pass that
 *     keeps the attention probabilities in float16 (errors up to 1.4e-4, 8e-3 relative).
 *   A wrong backward pass (a missing transpose, scale or softmax term, a factor 2 or 1/N, a
 *   dropped term of the tied embedding, a wrong GQA head mapping, a mask missing from the
 *   backward) is off by ≥ 1e-2 relative and fails it by orders of magnitude.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initTestBackend, TEST_BACKEND } from '../helpers/backend.js';
import { expandModel, makeTinyCheckpoint, openCheckpoint, type TinyOptions } from '../../src/main/engine/index.js';
import { trainingGradients, type TrainingParameter } from '../../src/main/engine/gradients.js';
import type { TrainMethod } from '../../src/main/engine/trainable.js';
import { train, TRAIN_DEFAULTS } from '../../src/main/engine/trainer.js';
import { DEFAULT_ADAMW } from '../../src/main/engine/optimizer.js';
import { loadReference, meanLossFromWeights, type RefConfig, type RefWeights } from '../reference/llama-ref.js';
import { someIds, testDir } from '../helpers/tmp.js';

const H = 1e-4;
const REL = 8e-5;
const ABS = 8e-6;
/** the batch's mean loss against the float64 reference's */
const LOSS_TOLERANCE = 5e-6; // measured ≤ 5.5e-7
const T = 10;
const VOCAB = 261;
const BATCH = [someIds(T, VOCAB, 11), someIds(T, VOCAB, 12)];
const LARGEST = 2;
const RANDOM = 4;

const SHAPE = { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64 } satisfies TinyOptions;

let root: string;
const log: string[] = [];
beforeAll(async () => {
  await initTestBackend();
  root = await testDir('gradients');
});
afterAll(() => {
  if (log.length) console.log(`gradients vs finite differences on ${TEST_BACKEND} (tolerance ${REL}·|fd| + ${ABS}):\n${log.join('\n')}`);
});

/** The coordinates to check: the LARGEST largest |grad| entries and RANDOM more, distinct, seeded. */
function coordinates(g: Float32Array, seed: number): number[] {
  const order = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]) - Math.abs(g[a]));
  const picked = new Set(order.slice(0, LARGEST));
  let s = seed >>> 0;
  while (picked.size < Math.min(LARGEST + RANDOM, g.length)) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    picked.add(s % g.length);
  }
  return [...picked];
}

/** Central difference of the float64 reference loss in one coordinate of one tensor. */
function finiteDifference(cfg: RefConfig, weights: RefWeights, name: string, index: number, batch: number[][] = BATCH): number {
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

class ErrorStats {
  checked = 0;
  maxAbs = 0;
  maxRel = 0; // |a − fd| / |fd| over entries with |fd| ≥ 1e-2

  compare(analytic: number, fd: number, what: string): void {
    const err = Math.abs(analytic - fd);
    this.checked++;
    this.maxAbs = Math.max(this.maxAbs, err);
    if (Math.abs(fd) >= 1e-2) this.maxRel = Math.max(this.maxRel, err / Math.abs(fd));

    expect(err, `${what}: analytic ${analytic}, finite difference ${fd}`).toBeLessThanOrEqual(REL * Math.abs(fd) + ABS);
  }

  report(label: string, tensors: number): void {
    log.push(`${label.padEnd(52)} ${String(this.checked).padStart(3)} entries of ${String(tensors).padStart(2)} tensors  max abs err ${this.maxAbs.toExponential(2)}  max rel err ${this.maxRel.toExponential(2)}`);
  }
}

/** Checks LARGEST + RANDOM entries of every parameter's gradient against finite differences. */
function checkEntries(ref: { config: RefConfig; weights: RefWeights }, params: Iterable<TrainingParameter>, stats: ErrorStats, seed: number): void {
  for (const p of params) {
    expect(p.grad.length).toBe(ref.weights.get(p.name)!.length);
    // a tensor whose gradient is identically zero would make the check vacuous
    expect(Math.max(...Array.from(p.grad, Math.abs)), `${p.name} has an all-zero gradient`).toBeGreaterThan(1e-6);
    const entries = coordinates(p.grad, seed++);
    expect(entries.length).toBeGreaterThan(4);
    for (const i of entries) stats.compare(p.grad[i], finiteDifference(ref.config, ref.weights, p.name, i), `${p.name}[${i}]`);
  }
}

const FULL_VARIANTS: [string, TinyOptions][] = [
  ['llama, untied, attention and MLP biases', { ...SHAPE, tie: false, attentionBias: true, mlpBias: true }],
  ['llama, tied embeddings, no biases', { ...SHAPE, tie: true }],
  ['qwen2, tied, q/k/v biases', { ...SHAPE, architecture: 'Qwen2ForCausalLM', tie: true }],
  // window 4 < 10 tokens: keys further back are masked, and the backward pass must mask them too
  ['mistral, sliding window 4', { ...SHAPE, architecture: 'MistralForCausalLM', tie: false, slidingWindow: 4 }],
];

describe('method full: every parameter tensor against finite differences', () => {
  it.each(FULL_VARIANTS)('%s', async (label, options) => {
    const dir = join(root, label.replace(/\W+/g, '-'));
    await makeTinyCheckpoint(dir, { seed: 5, ...options });
    const ref = await loadReference(dir);
    const { loss, params } = await trainingGradients(dir, { kind: 'full' }, BATCH);
    // every tensor of the checkpoint is a parameter, and nothing else is
    expect([...params.keys()].sort()).toEqual([...ref.weights.keys()].sort());
    if (options.tie) expect(ref.weights.has('lm_head.weight')).toBe(false);
    const lossErr = Math.abs(loss - meanLossFromWeights(ref.config, ref.weights, BATCH));
    log.push(`full, ${label}: |loss − reference| ${lossErr.toExponential(2)}`);
    expect(lossErr).toBeLessThan(LOSS_TOLERANCE);
    const stats = new ErrorStats();
    checkEntries(ref, params.values(), stats, 1);
    stats.report(`full, ${label}`, params.size);
  });
});

describe('method blocks on an expanded model', () => {
  let expanded: string;
  beforeAll(async () => {
    const base = join(root, 'blocks-base');
    expanded = join(root, 'blocks-expanded');
    await makeTinyCheckpoint(base, { ...SHAPE, seed: 9, tie: false, attentionBias: true, mlpBias: true });
    await expandModel(base, { blocks: 2 }, { out: expanded }); // layers 0, new, 1, new
  });

  it('at initialisation: only the new blocks train; o_proj/down_proj match finite differences; everything upstream of them gets exactly 0', async () => {
    const ref = await loadReference(expanded);
    const newLayers = (await openCheckpoint(expanded)).expansion!.new_layers;
    expect(newLayers).toEqual([1, 3]);
    const { params } = await trainingGradients(expanded, { kind: 'blocks' }, BATCH);
    const expected = [...ref.weights.keys()].filter((n) => newLayers.some((l) => n.startsWith(`model.layers.${l}.`)));
    expect([...params.keys()].sort()).toEqual(expected.sort());

    const stats = new ErrorStats();
    const outputs = [...params.values()].filter((p) => /\.(o_proj|down_proj)\.(weight|bias)$/.test(p.name));
    checkEntries(ref, outputs, stats, 100);
    for (const p of params.values()) {
      if (outputs.includes(p)) continue;
      // Everything upstream of a zero o_proj/down_proj: the block's output does not depend on
      // q/k/v/gate/up, their biases or the two norms while o_proj = down_proj = 0 (dx = dy·Wᵀ = 0
      // exactly), so their gradients are exactly zero, not just small — and the reference agrees.
      expect(Math.max(...Array.from(p.grad, Math.abs)), `${p.name} should have an exactly zero gradient at init`).toBe(0);
      expect(finiteDifference(ref.config, ref.weights, p.name, coordinates(p.grad, 7)[LARGEST])).toBe(0);
    }
    stats.report('blocks at initialisation (o_proj, down_proj)', outputs.length);
  });

  it('after 3 training steps (o_proj, down_proj ≠ 0): every new-block tensor gets a non-zero gradient that matches finite differences', async () => {
    const corpus = join(root, 'blocks-corpus.txt');
    await writeFile(corpus, generatedText(6_000));
    const out = join(root, 'blocks-trained');
    const r = await train({
      ...TRAIN_DEFAULTS,
      model: expanded,
      data: { paths: [corpus] },
      out,
      method: { kind: 'blocks' },
      steps: 3,
      lr: 1e-2,
      warmup: 0,
      batch: 2,
      seq: 16,
      adamw: DEFAULT_ADAMW,
      cacheDir: join(root, 'cache'),
      resume: false,
    });
    expect(r.stopped).toBe('completed');
    const trained = r.model!;
    const ref = await loadReference(trained);
    // the branch outputs moved off zero, so gradient now flows into the whole block
    for (const l of [1, 3]) {
      for (const proj of ['self_attn.o_proj.weight', 'mlp.down_proj.weight']) {
        expect(Math.max(...Array.from(ref.weights.get(`model.layers.${l}.${proj}`)!, Math.abs)), `layer ${l} ${proj}`).toBeGreaterThan(1e-3);
      }
    }
    const method: TrainMethod = { kind: 'blocks' };
    const { loss, params } = await trainingGradients(trained, method, BATCH);
    const lossErr = Math.abs(loss - meanLossFromWeights(ref.config, ref.weights, BATCH));
    log.push(`blocks after 3 steps: |loss − reference| ${lossErr.toExponential(2)}`);
    expect(lossErr).toBeLessThan(LOSS_TOLERANCE);
    expect(params.size).toBe(2 * 16); // 16 tensors per biased block: all of them train
    const stats = new ErrorStats();
    checkEntries(ref, params.values(), stats, 300); // includes: no tensor's gradient is all zero
    stats.report('blocks after 3 steps (every new-block tensor)', params.size);
  });
});

describe('method lora', () => {
  it("B's gradient matches finite differences of the merged weight W + s·B·A; A's is 0 at init (B = 0); both match once B ≠ 0", async () => {
    const dir = join(root, 'lora');
    await makeTinyCheckpoint(dir, { ...SHAPE, seed: 13, tie: false });
    const ref = await loadReference(dir);
    const rank = 4;
    const alpha = 8;
    const scale = alpha / rank;
    const method: TrainMethod = { kind: 'lora', rank, alpha, targets: ['q', 'v', 'down'] };
    const hfName = (prefix: string) => prefix.replace(/^base_model\.model\./, '') + '.weight';

    /** W' = W + s·B·A in PEFT's layout: A [r, in], B [out, r], W [out, in]. */
    const merged = (w: Float64Array, a: ArrayLike<number>, b: ArrayLike<number>): Float64Array => {
      const inDim = a.length / rank;
      const outDim = b.length / rank;
      const out = Float64Array.from(w);
      for (let o = 0; o < outDim; o++) {
        for (let i = 0; i < inDim; i++) {
          let s = 0;
          for (let j = 0; j < rank; j++) s += b[o * rank + j] * a[j * inDim + i];
          out[o * inDim + i] += scale * s;
        }
      }
      return out;
    };

    const check = async (phase: string, values?: Map<string, ArrayLike<number>>) => {
      const { params } = await trainingGradients(dir, method, BATCH, { seed: 3, values });
      // only the adapters train, 2 per (layer, target)
      expect(params.size).toBe(2 * 2 * 3);
      expect([...params.keys()].every((n) => /^base_model\.model\.model\.layers\.\d+\..*\.lora_[AB]\.weight$/.test(n))).toBe(true);
      const adapters = [...params.keys()].filter((n) => n.endsWith('.lora_A.weight')).map((n) => n.slice(0, -'.lora_A.weight'.length));
      const a = (p: string) => params.get(`${p}.lora_A.weight`)!;
      const b = (p: string) => params.get(`${p}.lora_B.weight`)!;
      /** the reference's weights with every adapter merged in */
      const all: RefWeights = new Map(ref.weights);
      for (const p of adapters) all.set(hfName(p), merged(ref.weights.get(hfName(p))!, a(p).value, b(p).value));
      /** fd of the reference loss w.r.t. one entry of A or B of one adapter, the others merged as they are */
      const fd = (p: string, which: 'a' | 'b', index: number): number => {
        const av = Float64Array.from(a(p).value);
        const bv = Float64Array.from(b(p).value);
        const target = which === 'a' ? av : bv;
        const orig = target[index];
        const at = (v: number) => {
          target[index] = v;
          const weights = new Map(all);
          weights.set(hfName(p), merged(ref.weights.get(hfName(p))!, av, bv));
          return meanLossFromWeights(ref.config, weights, BATCH);
        };
        const d = (at(orig + H) - at(orig - H)) / (2 * H);
        target[index] = orig;
        return d;
      };
      const stats = new ErrorStats();
      let seed = 200;
      for (const p of adapters) {
        expect(Math.max(...Array.from(b(p).grad, Math.abs)), `${p} B gradient`).toBeGreaterThan(1e-6);
        for (const i of coordinates(b(p).grad, seed++)) stats.compare(b(p).grad[i], fd(p, 'b', i), `${p}.lora_B[${i}] (${phase})`);
        if (!values) {
          // dL/dA = s·Bᵀ·dy·xᵀ = 0 exactly while B = 0
          expect(Math.max(...Array.from(a(p).grad, Math.abs)), `${p} A gradient at init`).toBe(0);
        } else {
          for (const i of coordinates(a(p).grad, seed++)) stats.compare(a(p).grad[i], fd(p, 'a', i), `${p}.lora_A[${i}] (${phase})`);
        }
      }
      stats.report(`lora, ${phase}`, params.size);
      return params;
    };

    // at init: B = 0 (PEFT's init), so the adapters add nothing and A gets no gradient
    const init = await check('B = 0');
    for (const [name, p] of init) if (name.endsWith('lora_B.weight')) expect(Math.max(...Array.from(p.value, Math.abs))).toBe(0);

    // with B moved off zero, both A and B gradients match finite differences
    let k = 1;
    const values = new Map<string, Float32Array>();
    for (const [name, p] of init) {
      if (!name.endsWith('lora_B.weight')) continue;
      values.set(name, Float32Array.from({ length: p.value.length }, (_, i) => 0.05 * Math.sin(1.7 * (i + 1) + k)));
      k++;
    }
    await check('B ≠ 0', values);
  });
});

/** Deterministic English-like text (a word list and an LCG), so the test reads no machine file. */
function generatedText(chars: number): string {
  const words = 'the model block layer new old train frozen weight gradient loss step data token text of and to in is'.split(' ');
  let s = 11;
  let text = '';
  while (text.length < chars) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    text += words[(s >>> 4) % words.length] + ((s >>> 9) % 13 === 0 ? '.\n' : ' ');
  }
  return text;
}
