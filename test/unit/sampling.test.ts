/**
 * sampleToken and seededRandom against hand-computed answers: greedy, top-k, top-p (the
 * transformers TopPLogitsWarper rule), temperature scaling, the CTRL repetition penalty
 * (positive logits divided, negative multiplied) and seeding.
 */
import { describe, expect, it } from 'vitest';
import { sampleToken, type SamplingOptions } from '../../src/main/engine/generate.js';
import { seededRandom } from '../../src/main/engine/random.js';

const BASE: SamplingOptions = { temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0 };

function opts(o: Partial<SamplingOptions>): SamplingOptions {
  return { ...BASE, ...o };
}

/** Draws `n` tokens from fresh copies of `logits`; returns the empirical frequency of each id. */
function frequencies(logits: number[], o: SamplingOptions, n: number, seed = 1234, seen: number[] = []): number[] {
  const random = seededRandom(seed);
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < n; i++) counts[sampleToken(Float32Array.from(logits), o, seen, random)]++;
  return counts.map((c) => c / n);
}

const DRAWS = 20_000;
const TOL = 0.03;

/** logits whose softmax is [0.5, 0.3, 0.15, 0.05] (shifted by a constant, which softmax ignores) */
const PROBS = [0.5, 0.3, 0.15, 0.05];
const LOGITS = PROBS.map((p) => Math.log(p) + 3);

function expectClose(got: number[], want: number[], tol = TOL): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    expect(Math.abs(got[i] - want[i]), `id ${i}: got ${got[i]}, want ${want[i]}`).toBeLessThanOrEqual(tol);
  }
}

describe('sampleToken: greedy', () => {
  it('temperature 0 picks the argmax, whatever the random source says', () => {
    const logits = [0.1, -2, 3.5, 3.4, 0];
    for (const r of [0, 0.3, 0.999999]) {
      expect(sampleToken(Float32Array.from(logits), opts({ temperature: 0 }), [], () => r)).toBe(2);
    }
    // top-k / top-p are irrelevant to greedy
    expect(sampleToken(Float32Array.from(logits), opts({ temperature: 0, topK: 3, topP: 0.1 }), [], Math.random)).toBe(2);
  });

  it('temperature 0 breaks ties on the first index (as torch.argmax)', () => {
    expect(sampleToken(Float32Array.from([1, 3, 3, 0]), opts({ temperature: 0 }), [], Math.random)).toBe(1);
  });

  it('temperature 0 handles all-negative logits', () => {
    expect(sampleToken(Float32Array.from([-5, -4, -0.5, -9]), opts({ temperature: 0 }), [], Math.random)).toBe(2);
  });

  it('top-k 1 is the argmax at any temperature', () => {
    const logits = [0.2, 0.25, 0.1, 0.24, -1]; // nearly flat: sampling would often pick others
    for (const temperature of [0.5, 1, 5, 100]) {
      const random = seededRandom(temperature * 10);
      for (let i = 0; i < 200; i++) {
        expect(sampleToken(Float32Array.from(logits), opts({ temperature, topK: 1 }), [], random)).toBe(1);
      }
    }
  });

  it('top-p smaller than the top probability keeps only the top token', () => {
    const logits = [Math.log(0.9), Math.log(0.1)];
    const f = frequencies(logits, opts({ topP: 0.5 }), 2000);
    expect(f).toEqual([1, 0]);
  });
});

describe('sampleToken: distributions', () => {
  it('no filtering draws from the softmax of the logits', () => {
    expectClose(frequencies(LOGITS, opts({}), DRAWS), PROBS);
  });

  it('top_p 0.7 keeps {0, 1} (cumulative 0.5, 0.8) renormalised', () => {
    const f = frequencies(LOGITS, opts({ topP: 0.7 }), DRAWS);
    expect(f[2]).toBe(0);
    expect(f[3]).toBe(0);
    expectClose(f, [0.5 / 0.8, 0.3 / 0.8, 0, 0]);
  });

  it('top_p 0.85 keeps {0, 1, 2} (cumulative 0.5, 0.8, 0.95) renormalised', () => {
    const f = frequencies(LOGITS, opts({ topP: 0.85 }), DRAWS);
    expect(f[3]).toBe(0);
    expect(f[2]).toBeGreaterThan(0);
    expectClose(f, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]);
  });

  it('top_p works whatever order the logits are in', () => {
    // the same distribution, permuted: ids 3, 0, 2, 1 hold 0.5, 0.3, 0.15, 0.05
    const perm = [3, 0, 2, 1];
    const logits = new Array<number>(4);
    perm.forEach((id, rank) => (logits[id] = LOGITS[rank]));
    const f = frequencies(logits, opts({ topP: 0.7 }), DRAWS);
    expectClose(f, [0.3 / 0.8, 0, 0, 0.5 / 0.8]);
  });

  it('top_k 2 keeps the two best tokens renormalised', () => {
    const f = frequencies(LOGITS, opts({ topK: 2 }), DRAWS);
    expect(f[2] + f[3]).toBe(0);
    expectClose(f, [0.5 / 0.8, 0.3 / 0.8, 0, 0]);
  });

  it('top_k larger than the vocabulary is no filter', () => {
    expectClose(frequencies(LOGITS, opts({ topK: 50 }), DRAWS), PROBS);
  });

  it('temperature 1 on logits [0, ln 3] gives [1/4, 3/4]', () => {
    expectClose(frequencies([0, Math.log(3)], opts({ temperature: 1 }), DRAWS), [0.25, 0.75]);
  });

  it('temperature 2 on logits [0, ln 3] gives [1/(1+√3), √3/(1+√3)]', () => {
    const s = Math.sqrt(3);
    expectClose(frequencies([0, Math.log(3)], opts({ temperature: 2 }), DRAWS), [1 / (1 + s), s / (1 + s)]);
  });

  it('temperature 0.5 on logits [0, ln 3] gives [1/10, 9/10]', () => {
    expectClose(frequencies([0, Math.log(3)], opts({ temperature: 0.5 }), DRAWS), [0.1, 0.9]);
  });

  it('top_p is applied to the temperature-scaled distribution', () => {
    // T = 2 on PROBS: p ∝ sqrt(p) = [0.7071, 0.5477, 0.3873, 0.2236] / 1.8657
    //   = [0.379, 0.294, 0.208, 0.120]; cumulative 0.379, 0.673, 0.880 → top_p 0.7 keeps {0, 1, 2}
    const sq = PROBS.map(Math.sqrt);
    const kept = sq[0] + sq[1] + sq[2];
    const f = frequencies(LOGITS, opts({ temperature: 2, topP: 0.7 }), DRAWS);
    expect(f[3]).toBe(0);
    expectClose(f, [sq[0] / kept, sq[1] / kept, sq[2] / kept, 0]);
  });
});

describe('sampleToken: repetition penalty (transformers rule)', () => {
  it('divides a positive logit, which can flip the argmax', () => {
    const logits = [2.0, 1.5, -0.5];
    expect(sampleToken(Float32Array.from(logits), opts({ temperature: 0 }), [0], Math.random)).toBe(0);
    // 2.0 / 1.5 = 1.33 < 1.5
    expect(sampleToken(Float32Array.from(logits), opts({ temperature: 0, repetitionPenalty: 1.5 }), [0], Math.random)).toBe(1);
    // 2.0 / 1.2 = 1.67 > 1.5
    expect(sampleToken(Float32Array.from(logits), opts({ temperature: 0, repetitionPenalty: 1.2 }), [0], Math.random)).toBe(0);
  });

  it('multiplies a negative logit (dividing it would raise it)', () => {
    const logits = [-1.0, -1.2, -3];
    // -1.0 · 1.5 = -1.5 < -1.2 → id 1; dividing would give -0.67 and keep id 0
    expect(sampleToken(Float32Array.from(logits), opts({ temperature: 0, repetitionPenalty: 1.5 }), [0], Math.random)).toBe(1);
  });

  it('a penalty < 1 encourages repetition', () => {
    const logits = [1.0, 1.5];
    // 1.0 / 0.5 = 2.0 > 1.5
    expect(sampleToken(Float32Array.from(logits), opts({ temperature: 0, repetitionPenalty: 0.5 }), [0], Math.random)).toBe(0);
  });

  it('penalises a token once however often it was seen', () => {
    const logits = [2.0, 1.0];
    // once: 2 / 1.5 = 1.33 > 1; three times would be 2 / 3.375 = 0.59 < 1
    expect(sampleToken(Float32Array.from(logits), opts({ temperature: 0, repetitionPenalty: 1.5 }), [0, 0, 0], Math.random)).toBe(0);
  });

  it('leaves unseen tokens alone and rewrites seen ones in place', () => {
    const logits = Float32Array.from([2.0, -1.0, 0.5]);
    sampleToken(logits, opts({ temperature: 0, repetitionPenalty: 2 }), [0, 1], Math.random);
    expect(Array.from(logits)).toEqual([1.0, -2.0, 0.5]);
  });

  it('changes the sampled distribution accordingly', () => {
    // logits [0, ln 3] with id 1 seen and penalty 2: [0, ln 3 / 2] → [1/(1+√3), √3/(1+√3)]
    const s = Math.sqrt(3);
    expectClose(frequencies([0, Math.log(3)], opts({ repetitionPenalty: 2 }), DRAWS, 99, [1]), [1 / (1 + s), s / (1 + s)]);
  });
});

describe('sampleToken: seeding', () => {
  const logits = Array.from({ length: 10 }, (_, i) => Math.sin(i) * 0.3);
  const draw = (seed: number) => {
    const random = seededRandom(seed);
    return Array.from({ length: 64 }, () => sampleToken(Float32Array.from(logits), opts({ temperature: 1 }), [], random));
  };

  it('the same seed gives the same sequence of draws', () => {
    expect(draw(42)).toEqual(draw(42));
  });

  it('different seeds give different sequences', () => {
    expect(draw(42)).not.toEqual(draw(43));
    expect(draw(0)).not.toEqual(draw(1));
  });
});

describe('seededRandom', () => {
  it('gives values in [0, 1) with mean ≈ 1/2, variance ≈ 1/12 and flat deciles', () => {
    const random = seededRandom(2024);
    const n = 100_000;
    const bins = new Array<number>(10).fill(0);
    let sum = 0;
    let sumSq = 0;
    let outside = 0;
    for (let i = 0; i < n; i++) {
      const x = random();
      if (!(x >= 0 && x < 1)) outside++;
      sum += x;
      sumSq += x * x;
      bins[Math.floor(x * 10)]++;
    }
    expect(outside).toBe(0);
    const mean = sum / n;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.005);
    expect(Math.abs(sumSq / n - mean * mean - 1 / 12)).toBeLessThan(0.003);
    for (const b of bins) expect(Math.abs(b / n - 0.1)).toBeLessThan(0.005);
  });

  it('is deterministic per seed and differs between seeds', () => {
    const take = (seed: number) => {
      const r = seededRandom(seed);
      return Array.from({ length: 16 }, () => r());
    };
    expect(take(7)).toEqual(take(7));
    expect(take(0)).toEqual(take(0));
    expect(take(7)).not.toEqual(take(8));
    expect(take(0)).not.toEqual(take(1));
  });

  it('two generators with the same seed are independent streams', () => {
    const a = seededRandom(5);
    const b = seededRandom(5);
    const first = a();
    a();
    expect(b()).toBe(first);
  });
});
