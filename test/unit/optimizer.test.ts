/**
 * AdamW, the learning-rate schedule and gradient clipping against values computed by hand in
 * float64 from torch.optim.AdamW's update (single-tensor, no amsgrad):
 *
 *   p ← p·(1 − lr·wd)                          decoupled decay (only for decay: true)
 *   m ← β1·m + (1 − β1)·g,  v ← β2·v + (1 − β2)·g²
 *   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)     ε outside the square root
 *
 * The engine computes in float32, so values of order 1 agree to a few ulps (≈ 1e-7).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '../../src/main/engine/index.js';
import { AdamW, clipByGlobalNorm, learningRate, type AdamWOptions } from '../../src/main/engine/optimizer.js';
import type { Param } from '../../src/main/engine/trainable.js';

beforeAll(async () => {
  await initBackend('auto');
});

function param(name: string, values: number[], decay = true): Param {
  return { name, variable: tf.variable(tf.tensor1d(values), true, `${name}-${Math.random()}`), transposed: false, decay };
}

async function values(t: tf.Tensor): Promise<number[]> {
  return Array.from(await t.data());
}

function expectClose(got: number[], want: number[], tol = 3e-7): void {
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => expect(Math.abs(g - want[i]), `[${i}]: got ${g}, want ${want[i]}`).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(want[i]))));
}

function step(opt: AdamW, grads: number[][], lr: number): void {
  const ts = grads.map((g) => tf.tensor1d(g));
  opt.apply(ts, lr);
  for (const t of ts) t.dispose();
}

describe('AdamW', () => {
  const adam: AdamWOptions = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };

  it('two steps on a 2-element parameter match the hand computation', async () => {
    const p = param('w', [1.0, -2.0]);
    const opt = new AdamW([p], adam);

    // step 1, lr 0.01, g = [0.5, −0.25]
    //   decay: p·(1 − 0.01·0.1) = [0.999, −1.998]
    //   m = 0.1·g = [0.05, −0.025], v = 0.05·g² = [0.0125, 0.003125]
    //   m̂ = m/0.1 = g, √v̂ = √(v/0.05) = |g|, so the step is 0.01·g/(|g| + 1e-8) = ±0.0099999998
    //   p = [0.9890000002, −1.9880000004]
    step(opt, [[0.5, -0.25]], 0.01);
    expect(opt.step).toBe(1);
    expectClose(await values(p.variable), [0.9890000002, -1.9880000004]);
    expectClose(await values(opt.m.get('w')!), [0.05, -0.025]);
    expectClose(await values(opt.v.get('w')!), [0.0125, 0.003125]);

    // step 2, lr 0.005, g = [−0.1, 0.4]
    //   decay: p·(1 − 0.0005)
    //   m = 0.9·m + 0.1·g = [0.035, 0.0175]; v = 0.95·v + 0.05·g² = [0.012375, 0.01096875]
    //   bc1 = 1 − 0.81 = 0.19, bc2 = 1 − 0.9025 = 0.0975
    //   p[0] = 0.9890000002·0.9995 − (0.005/0.19)·0.035/(√(0.012375/0.0975) + 1e-8)
    //        = 0.98850550020 − 0.00258531901 = 0.98592018119
    //   p[1] = −1.9880000004·0.9995 − (0.005/0.19)·0.0175/(√(0.01096875/0.0975) + 1e-8)
    //        = −1.98700600040 − 0.00137302416 = −1.98837902456
    step(opt, [[-0.1, 0.4]], 0.005);
    expect(opt.step).toBe(2);
    expectClose(await values(p.variable), [0.9859201811899043, -1.988379024555575]);
    expectClose(await values(opt.m.get('w')!), [0.035, 0.0175]);
    expectClose(await values(opt.v.get('w')!), [0.012375, 0.01096875]);
    opt.dispose();
    p.variable.dispose();
  });

  it('puts ε outside the square root', async () => {
    // eps = 0.1 (large, so that where it goes shows): g = 0.04, lr 1, one step
    //   m̂ = 0.04, √v̂ = 0.04 → step = 0.04/(0.04 + 0.1) = 0.285714…
    //   (ε inside, √(v̂ + ε) = 0.3219, would give 0.1243)
    const p = param('w', [0]);
    const opt = new AdamW([p], { beta1: 0.9, beta2: 0.95, eps: 0.1, weightDecay: 0 });
    step(opt, [[0.04]], 1);
    expectClose(await values(p.variable), [-0.2857142857142857]);
    opt.dispose();
    p.variable.dispose();
  });

  it('decays only the parameters marked decay, by lr·wd, decoupled from the gradient', async () => {
    const a = param('a', [1.5, -0.5], true);
    const b = param('b', [2.0, 3.0], false);
    const opt = new AdamW([a, b], { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.2 });
    // zero gradient: m = v = 0 and the Adam step is 0/(0 + ε) = 0, so only the decay acts
    step(opt, [[0, 0], [0, 0]], 0.1);
    expectClose(await values(a.variable), [1.47, -0.49]); // ·(1 − 0.1·0.2)
    expect(await values(b.variable)).toEqual([2, 3]); // exactly unchanged
    // step 2, g = [0.3, −0.3] for both: m = 0.1·g, v = 0.05·g², bc1 = 0.19, bc2 = 0.0975
    //   Adam step = (0.1/0.19)·0.03/(√(0.0045/0.0975) + 1e-8) = 0.0734959968
    //   a = [1.47·0.98 − 0.0734959968, −0.49·0.98 + 0.0734959968]; b = [2 − 0.0734959968, 3 + 0.0734959968]
    step(opt, [[0.3, -0.3], [0.3, -0.3]], 0.1);
    expectClose(await values(a.variable), [1.3671040031906896, -0.4067040031906896]);
    expectClose(await values(b.variable), [1.9265040031906897, 3.0734959968093105]);
    opt.dispose();
    a.variable.dispose();
    b.variable.dispose();
  });

  it('continues exactly from a saved state (load)', async () => {
    const grads = [[[0.5, -0.25]], [[-0.1, 0.4]], [[0.2, 0.2]]];
    const p1 = param('w', [1.0, -2.0]);
    const straight = new AdamW([p1], adam);
    for (const g of grads) step(straight, g, 0.01);

    const p2 = param('w', [1.0, -2.0]);
    const first = new AdamW([p2], adam);
    for (const g of grads.slice(0, 2)) step(first, g, 0.01);
    const saved = { step: first.step, m: new Map([['w', tf.clone(first.m.get('w')!)]]), v: new Map([['w', tf.clone(first.v.get('w')!)]]) };
    const p3 = param('w', await values(p2.variable));
    const second = new AdamW([p3], adam);
    second.load(saved);
    step(second, grads[2], 0.01);
    expect(second.step).toBe(3);
    expect(await values(p3.variable)).toEqual(await values(p1.variable));
    for (const o of [straight, first, second]) o.dispose();
    for (const p of [p1, p2, p3]) p.variable.dispose();
  });

  it('keeps state only for the parameters it is given (two float32 moments each)', () => {
    const p = param('w', [1, 2, 3]);
    const opt = new AdamW([p], adam);
    expect(opt.stateBytes()).toBe(2 * 4 * 3);
    expect([...opt.m.keys()]).toEqual(['w']);
    opt.dispose();
    p.variable.dispose();
  });
});

describe('learningRate: linear warmup, then cosine to minLrRatio·lr', () => {
  const s = { lr: 1e-3, warmup: 4, totalSteps: 12, minLrRatio: 0.1 };
  it.each([
    [0, 2.5e-4], // warmup: lr·(step+1)/warmup — the first step already learns
    [1, 5e-4],
    [3, 1e-3], // last warmup step: the full lr
    [4, 1e-3], // cosine progress 0
    [6, 1e-4 + 4.5e-4 * (1 + Math.SQRT1_2)], // progress 2/8: cos(π/4) = √½ → 8.68198e-4
    [8, 5.5e-4], // progress 1/2: halfway between 1e-3 and 1e-4
    [11, 1e-4 + 4.5e-4 * (1 - 0.9238795325112867)], // last step, progress 7/8: cos(7π/8)
    [12, 1e-4], // progress 1: the floor
    [50, 1e-4], // beyond the end: stays at the floor
  ])('step %i → %f', (step, want) => {
    expect(Math.abs(learningRate(step, s) - want)).toBeLessThan(1e-15);
  });

  it('without warmup starts at lr and decays to the floor (0 here)', () => {
    const t = { lr: 1e-3, warmup: 0, totalSteps: 10, minLrRatio: 0 };
    expect(learningRate(0, t)).toBe(1e-3);
    expect(Math.abs(learningRate(5, t) - 5e-4)).toBeLessThan(1e-15);
    expect(Math.abs(learningRate(10, t))).toBeLessThan(1e-15);
  });
});

describe('clipByGlobalNorm', () => {
  it('scales to the max norm when the global norm is larger (torch: max/(norm + 1e-6))', async () => {
    const grads = [tf.tensor1d([3, 4]), tf.tensor1d([12])]; // global norm √(9 + 16 + 144) = 13
    const { grads: clipped, norm } = clipByGlobalNorm(grads, 6.5);
    expect((await norm.data())[0]).toBeCloseTo(13, 5);
    const coef = 6.5 / (13 + 1e-6);
    expectClose(await values(clipped[0]), [3 * coef, 4 * coef]);
    expectClose(await values(clipped[1]), [12 * coef]);
    const after = Math.hypot(...(await values(clipped[0])), ...(await values(clipped[1])));
    expect(Math.abs(after - 6.5)).toBeLessThan(1e-5);
    for (const t of [...grads, ...clipped, norm]) t.dispose();
  });

  it('leaves gradients below the limit alone, and maxNorm 0 disables clipping', async () => {
    const grads = [tf.tensor1d([3, 4]), tf.tensor1d([12])];
    const small = clipByGlobalNorm(grads, 20);
    expect((await small.norm.data())[0]).toBeCloseTo(13, 5);
    expect(await values(small.grads[0])).toEqual([3, 4]);
    expect(await values(small.grads[1])).toEqual([12]);
    const none = clipByGlobalNorm(grads, 0);
    expect(none.grads).toBe(grads);
    expect((await none.norm.data())[0]).toBeCloseTo(13, 5);
    for (const t of [...grads, ...small.grads, small.norm, none.norm]) t.dispose();
  });
});
