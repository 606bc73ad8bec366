/**
 * The chunked LM head + cross-entropy of training (src/main/engine/head-loss.ts) against
 *   - a float64 reference of the loss and of its gradient (softmax − onehot)/N in plain loops,
 *     itself checked by central finite differences, and
 *   - the unchunked version in tfjs's stock ops (logits = x Wᵀ, log-softmax, gradients by tf.grads),
 * with one chunk, many chunks (a short last one), and two vocabulary rows per chunk; targets fall
 * in every chunk, at both ends of the vocabulary.
 *
 * Tolerances: float32 sums over V = 50 logits of O(1) give errors of ~1e-7 (measured: loss
 * ≤ 1e-7 absolute, ~3e-8 relative; gradients ≤ 5e-8 absolute); 1e-5 relative and 1e-6 absolute leave 20–300×
 * margin, while a wrong chunk offset, a missing one-hot, a 1/N or a dropped chunk are off by
 * ≥ 1e-2.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '../../src/main/engine/index.js';
import { ensureGradients } from '../../src/main/engine/autodiff.js';
import { headCrossEntropy, type HeadSource } from '../../src/main/engine/head-loss.js';
import { seededRandom } from '../../src/main/engine/random.js';

const N = 13;
const D = 8;
const V = 50;

beforeAll(async () => {
  await initBackend('auto');
  ensureGradients();
});

function randomArray(n: number, seed: number, scale: number): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: n }, () => (2 * r() - 1) * scale);
}

const X = randomArray(N * D, 1, 1.5);
const W = randomArray(V * D, 2, 1.0);
// every chunk gets targets, including ids 0 and V − 1
const TARGETS = Int32Array.from({ length: N }, (_, n) => (n === 0 ? 0 : n === 1 ? V - 1 : (n * 17 + 3) % V));

/** float64 loss mean_n (lse_n − l[n, t_n]) and its gradients (softmax − onehot)/N. */
function reference(x: Float64Array, w: Float64Array): { loss: number; dx: Float64Array; dw: Float64Array } {
  const dx = new Float64Array(N * D);
  const dw = new Float64Array(V * D);
  let loss = 0;
  for (let n = 0; n < N; n++) {
    const logits = new Float64Array(V);
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += x[n * D + d] * w[v * D + d];
      logits[v] = s;
    }
    const max = Math.max(...logits);
    let z = 0;
    for (const l of logits) z += Math.exp(l - max);
    const lse = max + Math.log(z);
    loss += lse - logits[TARGETS[n]];
    for (let v = 0; v < V; v++) {
      const g = (Math.exp(logits[v] - lse) - (v === TARGETS[n] ? 1 : 0)) / N;
      for (let d = 0; d < D; d++) {
        dx[n * D + d] += g * w[v * D + d];
        dw[v * D + d] += g * x[n * D + d];
      }
    }
  }
  return { loss: loss / N, dx, dw };
}

function source(w: tf.Tensor2D, trainable: tf.Variable | null): HeadSource {
  return { vocab: V, rows: (v0, v1) => tf.slice(w, [v0, 0], [v1 - v0, D]), release: (t) => t.dispose(), trainable };
}

/** loss, dx and (with a trainable head) dW from the chunked op. */
async function chunked(chunkRows: number, trainableHead: boolean) {
  const x = tf.tensor2d(X, [N, D]);
  const targets = tf.tensor1d(TARGETS, 'int32');
  const wVar = tf.variable(tf.tensor2d(W, [V, D]));
  const head = source(wVar as unknown as tf.Tensor2D, trainableHead ? wVar : null);
  const xs: tf.Tensor[] = trainableHead ? [x, wVar] : [x];
  const { value, grads } = tf.valueAndGrads((...args: tf.Tensor[]) => headCrossEntropy(args[0] as tf.Tensor2D, targets, head, chunkRows))(xs);
  const out = {
    loss: (await value.data())[0],
    dx: (await grads[0].data()) as Float32Array,
    dw: trainableHead ? ((await grads[1].data()) as Float32Array) : null,
  };
  tf.dispose([x, targets, wVar, value, ...grads]);
  return out;
}

/** The unchunked loss in tfjs's stock ops, and its gradients. */
async function unchunked() {
  const x = tf.tensor2d(X, [N, D]);
  const w = tf.tensor2d(W, [V, D]);
  const onehot = tf.oneHot(tf.tensor1d(TARGETS, 'int32'), V);
  const f = (xi: tf.Tensor, wi: tf.Tensor) => tf.neg(tf.mean(tf.sum(tf.mul(tf.logSoftmax(tf.matMul(xi as tf.Tensor2D, wi as tf.Tensor2D, false, true)), onehot), 1)));
  const { value, grads } = tf.valueAndGrads(f)([x, w]);
  const out = { loss: (await value.data())[0], dx: (await grads[0].data()) as Float32Array, dw: (await grads[1].data()) as Float32Array };
  tf.dispose([x, w, onehot, value, ...grads]);
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('chunked LM head + cross-entropy', () => {
  const ref = reference(Float64Array.from(X), Float64Array.from(W));

  it('the float64 reference gradient is the derivative of the float64 loss (central differences)', () => {
    const h = 1e-6;
    for (const [which, i] of [['x', 0], ['x', 37], ['w', 3], ['w', (V - 1) * D + 5]] as const) {
      const x = Float64Array.from(X);
      const w = Float64Array.from(W);
      const arr = which === 'x' ? x : w;
      arr[i] += h;
      const plus = reference(x, w).loss;
      arr[i] -= 2 * h;
      const minus = reference(x, w).loss;
      const fd = (plus - minus) / (2 * h);
      const analytic = which === 'x' ? ref.dx[i] : ref.dw[i];
      expect(Math.abs(fd - analytic), `${which}[${i}]: ${analytic} vs ${fd}`).toBeLessThan(1e-8);
    }
  });

  it.each([
    ['one chunk', V],
    ['8 chunks, the last one of 1 row joining the one before', 7],
    ['two vocabulary rows per chunk', 2],
  ])('%s: loss and gradients (x and the trained head) match the float64 reference', async (_name, rows) => {
    const got = await chunked(rows, true);
    expect(Math.abs(got.loss - ref.loss) / ref.loss).toBeLessThan(1e-5);
    expect(maxAbsDiff(got.dx, ref.dx)).toBeLessThan(1e-6);
    expect(maxAbsDiff(got.dw!, ref.dw)).toBeLessThan(1e-6);
    console.log(`head loss (${rows} rows/chunk): |Δloss| ${Math.abs(got.loss - ref.loss).toExponential(1)}, max |Δdx| ${maxAbsDiff(got.dx, ref.dx).toExponential(1)}, max |ΔdW| ${maxAbsDiff(got.dw!, ref.dw).toExponential(1)}`);
  });

  it('equals the unchunked tfjs version (stock ops and gradients)', async () => {
    const want = await unchunked();
    for (const rows of [V, 7]) {
      const got = await chunked(rows, true);
      expect(Math.abs(got.loss - want.loss)).toBeLessThan(1e-5 * want.loss);
      expect(maxAbsDiff(got.dx, want.dx)).toBeLessThan(1e-6);
      expect(maxAbsDiff(got.dw!, want.dw)).toBeLessThan(1e-6);
    }
  });

  it('a frozen head gives the same dx and no head gradient', async () => {
    const frozen = await chunked(7, false);
    expect(frozen.dw).toBeNull();
    expect(maxAbsDiff(frozen.dx, ref.dx)).toBeLessThan(1e-6);
  });

  it('keeps no [N, V] tensor: every chunk is freed, nothing leaks', async () => {
    const before = tf.memory().numTensors;
    const x = tf.tensor2d(X, [N, D]);
    const targets = tf.tensor1d(TARGETS, 'int32');
    const w = tf.tensor2d(W, [V, D]);
    const loss = tf.tidy(() => headCrossEntropy(x, targets, source(w, null), 7));
    expect(loss.shape).toEqual([]);
    tf.dispose([x, targets, w, loss]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
