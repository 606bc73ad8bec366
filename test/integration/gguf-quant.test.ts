/**
 * Quantized GGUF exports (Q8_0, Q4_0, Q4_K_M with its Q4_K, Q6_K and Q5_0), verified by llama.cpp itself (node-llama-cpp 3.21.1, CPU
 * build): each file loads, and llama.cpp's per-token log-probabilities agree with the engine
 * running the weights as the file holds them (our dequantizer), much more closely than with the
 * checkpoint's unquantized weights; the NLL change the export reports is the one llama.cpp sees.
 * A wrong block layout (nibbles in the wrong order, a wrong scale) makes the comparison fail.
 *
 * llama.cpp multiplies quantized weights by activations it rounds to Q8_0 itself; the engine
 * reproduces that rounding here (roundActivations) so that what is left to compare is the
 * weights. Tolerances are ~5–10× what was measured (noted at each).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportGguf, initBackend, makeTinyCheckpoint, openCheckpoint, tf, type Checkpoint } from '../../src/main/engine/index.js';
import { dequantizeQ4_0, QUANT_BLOCK_BYTES } from '../../src/main/engine/ggml-quants.js';
import { defaultNllProbe, nllMemoryProblem, nllProbeIds } from '../../src/main/engine/gguf-nll.js';
import { parseHfConfig } from '../../src/main/engine/config.js';
import { planGgufExport, writeGguf, type GgufExportPlan, type GgufTensor } from '../../src/main/engine/gguf.js';
import { LlamaModel, type Projection } from '../../src/main/engine/model.js';
import { demoDir } from '../../src/main/engine/resources.js';
import { HfTokenizer } from '../../src/main/engine/tokenizer.js';
import { halfBits, halfValue } from '../../src/main/engine/dtype.js';
import { oneJson, runCli, stackLines, stderrLines } from '../helpers/cli-runner.js';
import { testDir } from '../helpers/tmp.js';
import { exactContext, llama, nlc, type Token } from '../helpers/llama-cpp.js';

let root: string;
let demo: Checkpoint;
let ids: number[];
const measured: string[] = [];

beforeAll(async () => {
  await initBackend('auto');
  root = await testDir('gguf-quant');
  demo = await openCheckpoint(join(demoDir(), 'base-model'));
  ids = nllProbeIds(await HfTokenizer.fromFolder(demo.dir), await defaultNllProbe(), demo.config.maxPositionEmbeddings);
});

afterAll(() => {
  if (measured.length) console.log(`quantized GGUF, measured:\n${measured.join('\n')}`);
});

// ---------------------------------------------------------------------------------------------
// log-probabilities at every position, from llama.cpp and from the engine

/** lp[w][i · V + t] = log p(t | window w up to position i), every token t. */
interface LogProbs {
  lp: Float64Array[];
  V: number;
}

/** llama.cpp's log-probabilities of each window, each evaluated from an empty context. */
async function llamaLogProbs(file: string, windows: number[][]): Promise<LogProbs> {
  const model = await llama!.loadModel({ modelPath: file });
  const context = await exactContext(model, 512);
  try {
    const sequence = context.getSequence();
    let V = 0;
    const lp: Float64Array[] = [];
    for (const tokens of windows) {
      await sequence.clearHistory();
      const out = await sequence.controlledEvaluate(tokens.map((t) => [t as Token, { generateNext: { probabilities: true } }] as const));
      V = out[0]!.next.probabilities!.size;
      const w = new Float64Array(tokens.length * V).fill(-Infinity);
      for (let i = 0; i < tokens.length; i++) {
        const probs = out[i]?.next.probabilities;
        if (!probs) throw new Error(`llama.cpp gave no probabilities at position ${i}`);
        for (const [t, p] of probs) w[i * V + t] = Math.log(p);
      }
      lp.push(w);
    }
    return { lp, V };
  } finally {
    await context.dispose();
    await model.dispose();
  }
}

/**
 * The engine's log-probabilities with the checkpoint's weights, or with `weightsOf`'s as written.
 * `activationsFor`: also round each matmul's activations the way llama.cpp's CPU backend does before
 * multiplying them by a weight of that type (ggml-cpu: a Q8_0 or Q4_0 weight's vec_dot_type is
 * Q8_0, an F16 weight's is F16), so that the remaining difference is float summation order.
 */
async function engineLogProbs(ckpt: Checkpoint, windows: number[][], opts: { weightsOf?: GgufExportPlan; activationsFor?: GgufExportPlan } = {}): Promise<LogProbs> {
  const { weightsOf, activationsFor } = opts;
  const model = await LlamaModel.fromTensors(ckpt.config, ckpt.tensors, weightsOf ? { read: (info) => weightsOf.asWritten.get(info.name)!() } : {});
  if (activationsFor) {
    const typeOf = new Map(activationsFor.tensors.map((t) => [t.name, t.type]));
    const ggufProj: Record<Projection, string> = { q: 'attn_q', k: 'attn_k', v: 'attn_v', o: 'attn_output', gate: 'ffn_gate', up: 'ffn_up', down: 'ffn_down' };
    model.hooks = {
      linear: (x, w, layer, proj, layout) => tf.matMul(roundActivations(x, typeOf.get(`blk.${layer}.${ggufProj[proj]}.weight`)!) as tf.Tensor2D, w as tf.Tensor2D, false, layout === 'oi'),
      head: (x: tf.Tensor) => tf.matMul(roundActivations(x, typeOf.get('output.weight') ?? typeOf.get('token_embd.weight')!) as tf.Tensor2D, model.weights.lmHead),
    };
  }
  try {
    const V = ckpt.config.vocabSize;
    const t = tf.tidy(() => tf.logSoftmax(model.forward(windows))); // [windows, T, V]
    const all = (await t.data()) as Float32Array;
    t.dispose();
    const T = windows[0].length;
    return { lp: windows.map((_, w) => Float64Array.from(all.subarray(w * T * V, (w + 1) * T * V))), V };
  } finally {
    model.dispose();
  }
}

/**
 * x [N, K] as llama.cpp's CPU matmul sees it against a weight of `type`: F16 → rounded to half;
 * Q8_0/Q4_0/Q5_0 → quantized to Q8_0 by ggml-cpu's quantize_row_q8_0 (arch/x86/quants.c: per 32
 * values d = max|x|/127 stored as half, q = round-half-even(x · 127/max)) and multiplied back;
 * Q4_K/Q6_K → quantized to Q8_K (quantize_row_q8_K_ref: per 256 values iscale = −127/max with
 * max the signed value of largest magnitude, q = min(127, round-half-even(x · iscale)), d = 1/iscale
 * kept as float32).
 */
function roundActivations(x: tf.Tensor, type: string): tf.Tensor {
  if (type === 'F32') return x;
  const v = x.dataSync() as Float32Array;
  const out = new Float32Array(v.length);
  const f32 = Math.fround;
  if (type === 'F16') {
    for (let i = 0; i < v.length; i++) out[i] = halfValue(halfBits(v[i]));
  } else if (type === 'Q4_K' || type === 'Q6_K') {
    for (let o = 0; o < v.length; o += 256) {
      let amax = 0;
      let max = 0;
      for (let j = 0; j < 256; j++) {
        if (Math.abs(v[o + j]) > amax) {
          amax = Math.abs(v[o + j]);
          max = v[o + j];
        }
      }
      if (amax === 0) continue;
      const iscale = f32(-127 / max);
      const d = f32(1 / iscale);
      for (let j = 0; j < 256; j++) out[o + j] = Math.min(127, f32(f32(iscale * v[o + j]) + 12582912) - 12582912) * d;
    }
  } else {
    for (let o = 0; o < v.length; o += 32) {
      let max = 0;
      for (let j = 0; j < 32; j++) max = Math.max(max, Math.abs(v[o + j]));
      const d = halfValue(halfBits(Math.fround(max / 127)));
      const id = max !== 0 ? Math.fround(127 / max) : 0;
      for (let j = 0; j < 32; j++) {
        const y = Math.fround(v[o + j] * id);
        let q = Math.round(y);
        if (Math.abs(y % 1) === 0.5) q = 2 * Math.round(y / 2); // ties to even
        out[o + j] = q * d;
      }
    }
  }
  return tf.tensor(out, x.shape);
}

interface Agreement {
  /** |Δ log p(next token)| over the positions: median, 90th percentile, largest */
  median: number;
  p90: number;
  max: number;
  /** the largest |Δ log p| over every token the second gives p > 1e-4, anywhere */
  maxAll: number;
}

function agreement(a: LogProbs, b: LogProbs, windows: number[][]): Agreement {
  const V = a.V;
  const next: number[] = [];
  let maxAll = 0;
  for (const [w, tokens] of windows.entries()) {
    for (let i = 0; i + 1 < tokens.length; i++) {
      next.push(Math.abs(a.lp[w][i * V + tokens[i + 1]] - b.lp[w][i * V + tokens[i + 1]]));
      for (let t = 0; t < V; t++) if (b.lp[w][i * V + t] > Math.log(1e-4)) maxAll = Math.max(maxAll, Math.abs(a.lp[w][i * V + t] - b.lp[w][i * V + t]));
    }
  }
  next.sort((x, y) => x - y);
  const at = (q: number) => next[Math.min(next.length - 1, Math.floor(q * next.length))];
  return { median: at(0.5), p90: at(0.9), max: next[next.length - 1], maxAll };
}

/** mean −log p(next) over one window */
function meanNll(x: LogProbs, tokens: number[], w = 0): number {
  let s = 0;
  for (let i = 0; i + 1 < tokens.length; i++) s -= x.lp[w][i * x.V + tokens[i + 1]];
  return s / (tokens.length - 1);
}

const fmt = (a: Agreement) => `|Δ log p(next)| median ${a.median.toExponential(1)}, p90 ${a.p90.toExponential(1)}, max ${a.max.toExponential(1)}; max |Δ log p| (p>1e-4) ${a.maxAll.toExponential(1)}`;

// ---------------------------------------------------------------------------------------------

/**
 * How closely llama.cpp must agree with the engine doing its arithmetic: the file's weights as
 * our dequantizer reads them, activations rounded as ggml-cpu rounds them. The two forward
 * passes still differ by float32 rounding (~1e-7 relative, as F32 files show), and now and then
 * such a difference moves an activation across a rounding boundary of its Q8_0 block — a whole
 * quant step, ~1e-2 in log p — which attention then carries to later positions. So the
 * comparison runs on 8 windows of 32 tokens, each from an empty context, and bounds the median
 * over positions, not the maximum. Measured |Δ log p(next)| on the bundled model, median / 90th
 * percentile / max: Q8_0 9.5e-7 / 2.2e-3 / 2.4e-2, Q4_0 1.3e-6 / 8.9e-3 / 4.8e-2. With the
 * checkpoint's unquantized weights instead the median is 2.6e-2 (Q8_0) and 1.5e-1 (Q4_0); with
 * float32 activations (no rounding, as the export scores) 1.5e-2 and 1.4e-2.
 */
const TOL_MEDIAN = 1e-5;

describe.skipIf(!llama && !process.env.CI)('quantized GGUF, loaded by llama.cpp (node-llama-cpp)', () => {
  let f32: LogProbs;
  let windows: number[][];
  const plans: Record<string, GgufExportPlan> = {};

  beforeAll(async () => {
    const out = join(root, 'demo-f32.gguf');
    await exportGguf(demo.dir, { out });
    f32 = await llamaLogProbs(out, [ids]);
    windows = Array.from({ length: 8 }, (_, w) => ids.slice(32 * w, 32 * w + 32));
  }, 120_000);

  for (const dtype of ['Q8_0', 'Q4_0'] as const) {
    it(`${dtype}: the bundled model's file loads; llama.cpp computes with exactly the weights our dequantizer reads; the reported NLL change is llama.cpp's`, async () => {
      const out = join(root, `demo-${dtype}.gguf`);
      const r = await exportGguf(demo.dir, { out, dtype });
      const plan = (plans[dtype] = await planGgufExport(demo, { dtype }));
      expect(r.dtype).toBe(dtype);
      expect(r.nll).not.toBeNull();
      const nll = r.nll!;
      expect(nll.tokens).toBe(ids.length - 1);

      // what llama.cpp reads: file type, tensor types (tied embeddings: token_embd is the output)
      const info = await nlc!.readGgufFileInfo(out, { logWarnings: false });
      expect((info.metadata as unknown as { general: { file_type: number } }).general.file_type).toBe(dtype === 'Q8_0' ? 7 : 2);
      const types = new Map(info.fullTensorInfo!.map((t) => [t.name, t.ggmlType]));
      expect(types.get('blk.0.attn_q.weight')).toBe(nlc!.GgmlType[dtype]);
      expect(types.get('blk.3.ffn_down.weight')).toBe(nlc!.GgmlType[dtype]);
      expect(types.get('token_embd.weight')).toBe(nlc!.GgmlType.Q8_0); // Q4_0: the tied output stays Q8_0
      expect(types.get('blk.0.attn_norm.weight')).toBe(nlc!.GgmlType.F32);
      expect(r.tensorTypes).toEqual(dtype === 'Q8_0' ? { Q8_0: 29, F32: 9 } : { Q8_0: 1, Q4_0: 28, F32: 9 });
      expect(r.bytes).toBe((await readFile(out)).length);

      const theirs = await llamaLogProbs(out, windows);
      const exact = agreement(theirs, await engineLogProbs(demo, windows, { weightsOf: plan, activationsFor: plan }), windows);
      const unquantized = agreement(theirs, await engineLogProbs(demo, windows, { activationsFor: plan }), windows);
      measured.push(
        `${dtype} llama.cpp vs engine, file's weights, llama.cpp's activation rounding: ${fmt(exact)}`,
        `${dtype} llama.cpp vs engine, checkpoint's weights, llama.cpp's activation rounding: ${fmt(unquantized)}`,
      );
      expect(exact.median).toBeLessThan(TOL_MEDIAN);
      // the checkpoint's own weights are far outside that: the agreement is the quantization's, not a coincidence
      expect(unquantized.median).toBeGreaterThan(100 * TOL_MEDIAN);

      // The export scores float32 activations (the model, not llama.cpp's arithmetic): its NLLs are
      // llama.cpp's up to llama.cpp's activation rounding, which mostly averages out over 511 tokens
      // (measured |reported − llama.cpp|: checkpoint 2e-7; file and delta 6e-4 (Q8_0), 2.5e-4 (Q4_0))
      const whole = await llamaLogProbs(out, [ids]);
      const llamaDelta = meanNll(whole, ids) - meanNll(f32, ids);
      measured.push(
        `${dtype} mean NLL over ${nll.tokens} tokens: reported ${nll.checkpoint.toFixed(5)} → ${nll.gguf.toFixed(5)} (Δ ${nll.delta.toFixed(5)}); ` +
          `llama.cpp F32 ${meanNll(f32, ids).toFixed(5)} → ${dtype} ${meanNll(whole, ids).toFixed(5)} (Δ ${llamaDelta.toFixed(5)})`,
      );
      expect(Math.abs(nll.checkpoint - meanNll(f32, ids))).toBeLessThan(1e-5);
      expect(Math.abs(nll.gguf - meanNll(whole, ids))).toBeLessThan(3e-3);
      expect(Math.abs(nll.delta - llamaDelta)).toBeLessThan(3e-3);
      if (dtype === 'Q4_0') expect(llamaDelta).toBeGreaterThan(10 * Math.abs(nll.delta - llamaDelta)); // Q4_0 costs far more than that
    }, 180_000);
  }

  it('the comparison has teeth: Q4_0 nibbles packed as consecutive pairs, or a Q8_0 scale of amax/128, make llama.cpp disagree', async () => {
    // Q4_0 with the common 4-bit packing (x[2j] low, x[2j+1] high) instead of ggml's (x[j] low, x[j+16] high)
    const q4 = plans.Q4_0 ?? (await planGgufExport(demo, { dtype: 'Q4_0' }));
    const pairs = withBlocks(q4.tensors, 'Q4_0', (block) => {
      const q = Array.from({ length: 32 }, (_, j) => (j < 16 ? block[2 + j] & 0xf : block[2 + j - 16] >> 4));
      for (let j = 0; j < 16; j++) block[2 + j] = q[2 * j] | (q[2 * j + 1] << 4);
    });
    // Q8_0 with d = amax/128 stored (the quants as ggml computes them): every weight 0.8 % small
    const q8 = plans.Q8_0 ?? (await planGgufExport(demo, { dtype: 'Q8_0' }));
    const scale = withBlocks(q8.tensors, 'Q8_0', (block) => {
      const h = halfBits((halfValue(block[0] | (block[1] << 8)) * 127) / 128);
      block[0] = h & 0xff;
      block[1] = h >> 8;
    });
    for (const [label, plan, tensors] of [['Q4_0 nibbles in pairs', q4, pairs], ['Q8_0 scale amax/128', q8, scale]] as const) {
      const file = join(root, `wrong-${label.replace(/\W+/g, '-')}.gguf`);
      await writeGguf(file, plan.kvs, tensors);
      const a = agreement(await llamaLogProbs(file, windows), await engineLogProbs(demo, windows, { weightsOf: plan, activationsFor: plan }), windows);
      measured.push(`control, ${label}: ${fmt(a)}`);
      expect(a.median, label).toBeGreaterThan(100 * TOL_MEDIAN);
    }
    // the pair packing really is another layout of the same quants
    const t = q4.tensors.find((x) => x.name === 'blk.0.ffn_up.weight')!;
    const right = dequantizeQ4_0(await t.data());
    const wrong = dequantizeQ4_0(await pairs.find((x) => x.name === t.name)!.data());
    expect([...wrong].sort()).toEqual([...right].sort());
    expect([...wrong]).not.toEqual([...right]);
  }, 180_000);

  it("Q4_K_M of a model whose rows are whole 256-value super-blocks: Q4_K, and Q6_K for the output and use_more_bits layers' attn_v and ffn_down; llama.cpp computes with exactly the weights our dequantizer reads", async () => {
    const dir = join(root, 'tiny-kquants');
    await makeTinyCheckpoint(dir, { layers: 8, hidden: 256, heads: 4, kvHeads: 2, intermediate: 512, maxPositions: 512, tie: false, seed: 11, tokenizerFrom: join(demoDir(), 'base-model') });
    const ckpt = await openCheckpoint(dir);
    const out = join(root, 'tiny-q4_k_m.gguf');
    const r = await exportGguf(dir, { out, dtype: 'Q4_K_M' });
    expect(r.dtype).toBe('Q4_K_M');
    expect(r.warnings).toEqual([]);
    const info = await nlc!.readGgufFileInfo(out, { logWarnings: false });
    expect((info.metadata as unknown as { general: { file_type: number } }).general.file_type).toBe(15); // LLAMA_FTYPE_MOSTLY_Q4_K_M
    const types = new Map(info.fullTensorInfo!.map((t) => [t.name, t.ggmlType]));
    expect(types.get('output.weight')).toBe(nlc!.GgmlType.Q6_K);
    expect(types.get('token_embd.weight')).toBe(nlc!.GgmlType.Q4_K);
    // use_more_bits over 8 layers: 0 (the first eighth), 7 (the last), and 3, 6 (every third from 1)
    for (let l = 0; l < 8; l++) {
      const more = [0, 3, 6, 7].includes(l) ? nlc!.GgmlType.Q6_K : nlc!.GgmlType.Q4_K;
      expect([types.get(`blk.${l}.attn_v.weight`), types.get(`blk.${l}.ffn_down.weight`)], `layer ${l}`).toEqual([more, more]);
      expect(types.get(`blk.${l}.attn_q.weight`)).toBe(nlc!.GgmlType.Q4_K);
    }
    expect(r.tensorTypes).toEqual({ Q4_K: 49, Q6_K: 9, F32: 17 });

    const plan = await planGgufExport(ckpt, { dtype: 'Q4_K_M' });
    const few = windows.slice(0, 4); // 4 windows of 32 tokens: enough to tell the three apart, half the time
    // This random model is far more sensitive to llama.cpp's activation rounding than the trained
    // demo model: even its Q8_0 file (a layout the tests above pin down at 1e-5 on the demo model)
    // agrees only to a median of 1.6e-2 over 8 windows (F16: 8e-4). So the bar is relative: llama.cpp must agree
    // with the Q4_K_M file's weights as our dequantizer reads them as closely as with the Q8_0
    // file's, and far more closely than with the checkpoint's unquantized weights.
    // Measured on 4 windows: Q4_K_M 1.3e-2, Q8_0 1.4e-2, unquantized 4.2e-1; the nibbles swapped below 2.1.
    const q8out = join(root, 'tiny-q8_0.gguf');
    await exportGguf(dir, { out: q8out, dtype: 'Q8_0', nll: false });
    const q8plan = await planGgufExport(ckpt, { dtype: 'Q8_0' });
    const q8 = agreement(await llamaLogProbs(q8out, few), await engineLogProbs(ckpt, few, { weightsOf: q8plan, activationsFor: q8plan }), few);
    const theirs = await llamaLogProbs(out, few);
    const a = agreement(theirs, await engineLogProbs(ckpt, few, { weightsOf: plan, activationsFor: plan }), few);
    const u = agreement(theirs, await engineLogProbs(ckpt, few, { activationsFor: plan }), few);
    measured.push(`tiny Q4_K_M (hidden 256), file's weights: ${fmt(a)}`, `tiny Q4_K_M, checkpoint's weights: ${fmt(u)}`, `tiny Q8_0, file's weights: ${fmt(q8)}`);
    expect(a.median).toBeLessThan(2 * q8.median);
    expect(u.median).toBeGreaterThan(10 * a.median);

    // and it has teeth: Q4_K with the two nibbles of each byte swapped (values l and l+32 of each
    // 64 exchanged) makes llama.cpp disagree with what our dequantizer reads
    const swapped = withBlocks(plan.tensors, 'Q4_K', (block) => {
      for (let k = 16; k < 144; k++) block[k] = ((block[k] & 0xf) << 4) | (block[k] >> 4);
    });
    const wrong = join(root, 'wrong-q4_k-nibbles.gguf');
    await writeGguf(wrong, plan.kvs, swapped);
    const w = agreement(await llamaLogProbs(wrong, few), await engineLogProbs(ckpt, few, { weightsOf: plan, activationsFor: plan }), few);
    measured.push(`control, Q4_K nibbles swapped: ${fmt(w)}`);
    expect(w.median).toBeGreaterThan(5 * q8.median);
  }, 240_000);

  it('Q4_K_M of the bundled model, whose rows (128) are not whole super-blocks: Q5_0 and a Q8_0 output, as llama-quantize falls back, and llama.cpp agrees', async () => {
    const out = join(root, 'demo-q4_k_m.gguf');
    const r = await exportGguf(demo.dir, { out, dtype: 'Q4_K_M', nll: false });
    // 4 layers: use_more_bits picks 2 and 3, whose attn_v and ffn_down (Q6_K) fall back to Q8_0, as the tied output does
    expect(r.tensorTypes).toEqual({ Q5_0: 24, Q8_0: 5, F32: 9 });
    expect(r.warnings.join('\n')).toMatch(/29 matrices are Q5_0 \/ Q8_0, not Q4_K_M's type: Q4_K_M needs rows of whole 256-value super-blocks/);
    const plan = await planGgufExport(demo, { dtype: 'Q4_K_M' });
    const theirs = await llamaLogProbs(out, windows);
    const a = agreement(theirs, await engineLogProbs(demo, windows, { weightsOf: plan, activationsFor: plan }), windows);
    const u = agreement(theirs, await engineLogProbs(demo, windows, { activationsFor: plan }), windows);
    measured.push(`demo Q4_K_M (all Q5_0), file's weights: ${fmt(a)}`, `demo Q4_K_M, checkpoint's weights: ${fmt(u)}`);
    expect(a.median).toBeLessThan(TOL_MEDIAN);
    expect(u.median).toBeGreaterThan(100 * TOL_MEDIAN);
  }, 180_000);

  it('Q4_0 of an untied Llama with GQA (Q/K rows permuted before quantizing) and an MLP whose rows are not whole blocks (F16 fallback)', async () => {
    const dir = join(root, 'tiny-untied');
    await makeTinyCheckpoint(dir, { layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 80, maxPositions: 512, tie: false, tokenizerFrom: join(demoDir(), 'base-model') });
    const ckpt = await openCheckpoint(dir);
    const out = join(root, 'tiny-untied-q4_0.gguf');
    const r = await exportGguf(dir, { out, dtype: 'Q4_0' });
    expect(r.warnings.join('\n')).toMatch(/2 matrices are F16, not Q4_0.*multiple of 32.*down_proj/);
    const info = await nlc!.readGgufFileInfo(out, { logWarnings: false });
    const types = new Map(info.fullTensorInfo!.map((t) => [t.name, t.ggmlType]));
    expect(types.get('token_embd.weight')).toBe(nlc!.GgmlType.Q4_0); // untied: the embeddings are not the output
    expect(types.get('output.weight')).toBe(nlc!.GgmlType.Q8_0);
    expect(types.get('blk.1.attn_k.weight')).toBe(nlc!.GgmlType.Q4_0);
    expect(types.get('blk.1.ffn_down.weight')).toBe(nlc!.GgmlType.F16); // rows of 80
    expect(types.get('blk.1.ffn_up.weight')).toBe(nlc!.GgmlType.Q4_0);

    const plan = await planGgufExport(ckpt, { dtype: 'Q4_0' });
    const theirs = await llamaLogProbs(out, windows);
    const a = agreement(theirs, await engineLogProbs(ckpt, windows, { weightsOf: plan, activationsFor: plan }), windows);
    const u = agreement(theirs, await engineLogProbs(ckpt, windows, { activationsFor: plan }), windows);
    measured.push(`tiny untied Q4_0, file's weights: ${fmt(a)}`, `tiny untied Q4_0, checkpoint's weights: ${fmt(u)}`);
    expect(a.median).toBeLessThan(TOL_MEDIAN);
    expect(u.median).toBeGreaterThan(100 * TOL_MEDIAN);
  }, 120_000);
});

describe('quantized GGUF export: the CLI and refusals', () => {
  it('blocklab export --format gguf --dtype q4_0 --json reports tensor types and the NLL change; bad dtypes and probe files are refused', async () => {
    const out = join(root, 'cli-q4.gguf');
    const r = await runCli(['export', demo.dir, '--format', 'gguf', '--dtype', 'q4_0', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const doc = oneJson<{ dtype: string; bytes: number; tensorTypes: Record<string, number>; nll: { text: string; tokens: number; checkpoint: number; gguf: number; delta: number } }>(r);
    expect(doc.dtype).toBe('Q4_0');
    expect(doc.tensorTypes).toEqual({ Q8_0: 1, Q4_0: 28, F32: 9 });
    expect(doc.nll.tokens).toBe(ids.length - 1);
    expect(doc.nll.delta).toBeCloseTo(doc.nll.gguf - doc.nll.checkpoint, 12);
    expect(doc.nll.text).toMatch(/held-out/);
    expect(doc.bytes).toBe((await readFile(out)).length);

    const [noNll, bad, missing] = await Promise.all([
      runCli(['export', demo.dir, '--format', 'gguf', '--dtype', 'Q8_0', '--no-nll', '--out', join(root, 'cli-q8.gguf'), '--json']),
      runCli(['export', demo.dir, '--format', 'gguf', '--dtype', 'q5_1', '--out', join(root, 'cli-bad.gguf')]),
      runCli(['export', demo.dir, '--format', 'gguf', '--dtype', 'q8_0', '--nll-text', join(root, 'nope.txt'), '--out', join(root, 'cli-missing.gguf')]),
    ]);
    expect(noNll.code, noNll.stderr).toBe(0);
    expect(oneJson(noNll)).toMatchObject({ dtype: 'Q8_0', nll: null });
    for (const [res, match] of [[bad, /q5_1 is not supported for GGUF; use f32, f16, q8_0, q4_0 or q4_k_m/], [missing, /nope\.txt.*cannot read the NLL probe text/]] as const) {
      expect(res.code).toBe(1);
      expect(stderrLines(res)).toHaveLength(1);
      expect(stderrLines(res)[0]).toMatch(match);
      expect(stackLines(res.stderr)).toEqual([]);
    }
    await expect(readFile(join(root, 'cli-missing.gguf'))).rejects.toThrow(/ENOENT/); // refused before writing
  }, 180_000);
});

describe('the NLL measurement refuses models it cannot hold', () => {
  it('a TinyLlama-sized model does not fit the wasm heap in float32; the demo model does', () => {
    const tinyLlama = parseHfConfig({
      architectures: ['LlamaForCausalLM'], hidden_size: 2048, intermediate_size: 5632, num_attention_heads: 32, num_key_value_heads: 4,
      num_hidden_layers: 22, vocab_size: 32000, max_position_embeddings: 2048, tie_word_embeddings: false,
    });
    expect(nllMemoryProblem(tinyLlama, 'wasm')).toMatch(/float32, 4\.3 GiB, more than the wasm backend can hold here \(3\.5 GiB\); pass --no-nll/);
    expect(nllMemoryProblem(demo.config, 'wasm')).toBeNull();
  });
});

/** Copies of `tensors` whose blocks of `type` pass through `edit` (in place, one block at a time). */
function withBlocks(tensors: GgufTensor[], type: 'Q8_0' | 'Q4_0' | 'Q4_K', edit: (block: Uint8Array) => void): GgufTensor[] {
  const size = QUANT_BLOCK_BYTES[type];
  return tensors.map((t) =>
    t.type !== type
      ? t
      : {
          ...t,
          data: async () => {
            const bytes = (await t.data()).slice();
            for (let p = 0; p < bytes.length; p += size) edit(bytes.subarray(p, p + size));
            return bytes;
          },
        },
  );
}
