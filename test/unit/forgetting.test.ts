/**
 * The forgetting summary (src/shared/forgetting.ts) against hand-computed cases, and the standard
 * error of bits per byte against the textbook case it must reduce to.
 */
import { describe, expect, it } from 'vitest';
import { metricFamily, summarizeForgetting, type SummaryInput } from '../../src/shared/forgetting.js';
import { bitsPerByteStderr, perplexityMetrics } from '../../src/main/engine/benchmarks.js';

/** A comparison of checkpoints a and b against a base: per benchmark [metric, role, base se, a (delta, se), b (delta, se)]. */
function compare(rows: [string, string, 'old' | 'new', number | null, [number, number | null], [number, number | null]][]): SummaryInput {
  return {
    checkpoints: ['a', 'b'],
    rows: rows.map(([benchmark, metric, role, baseSe, a, b]) => ({
      benchmark,
      metric,
      role,
      base: { value: 1, stderr: baseSe },
      checkpoints: [
        { checkpoint: 'a', value: 1, delta: a[0], stderr: a[1] },
        { checkpoint: 'b', value: 1, delta: b[0], stderr: b[1] },
      ],
    })),
  };
}

describe('summarizeForgetting', () => {
  it('never averages across metric families: the demo report mixed 3.97 bits/byte with 0.017 acc_norm into +1.995', () => {
    const s = summarizeForgetting(
      compare([
        ['code-ppl', 'bits_per_byte', 'new', 0.05, [3.97, 0.05], [3.83, 0.05]],
        ['code-mc', 'acc_norm', 'new', 0.03, [0.017, 0.03], [0.0, 0.03]],
      ]),
    );
    const a = s.means.filter((m) => m.checkpoint === 'a');
    expect(a.map((m) => [m.family, m.mean])).toEqual([
      ['accuracy', expect.closeTo(1.7, 10)], // points
      ['bits_per_byte', expect.closeTo(3.97, 10)],
    ]);
    expect(s.means.some((m) => Math.abs(m.mean - 1.995) < 1e-6)).toBe(false);
  });

  it('means and standard errors within a family: sqrt(Σ(se_t² + se_b²)) / k, accuracy in points', () => {
    const s = summarizeForgetting(
      compare([
        ['mc1', 'acc', 'old', 0.02, [0.01, 0.03], [0.0, 0.03]],
        ['mc2', 'acc_norm', 'old', 0.04, [0.03, 0.01], [0.0, 0.01]],
      ]),
    );
    const a = s.means.find((m) => m.checkpoint === 'a')!;
    expect(a.mean).toBeCloseTo(2, 12); // (1 + 3) / 2 points
    // sqrt(2² + 3² + 4² + 1²) / 2 = sqrt(30) / 2 points
    expect(a.stderr).toBeCloseTo(Math.sqrt(30) / 2, 12);
    expect(a.clear).toBe(false); // 2 < 2.74: within noise
  });

  it('names a winner only beyond the combined standard error of the two (the base cancels)', () => {
    // the demo's bits-per-byte forgetting: top 0.143, blocks 0.162 (a = top, b = blocks)
    const clear = summarizeForgetting(compare([['general-ppl', 'bits_per_byte', 'old', 0.5, [0.143, 0.01], [0.162, 0.01]]]));
    // combined se sqrt(0.01² + 0.01²) = 0.0141 < 0.019: a leads (the base's 0.5 plays no part)
    expect(clear.verdicts).toHaveLength(1);
    expect(clear.verdicts[0].winner).toBe('a');
    expect(clear.verdicts[0].statement).toMatch(/^Least forgetting on old-domain benchmarks, bits per byte \(1 benchmark\): a \+0\.143 ± 0\.500 bits\/byte, ahead of every other checkpoint by more than the combined standard error \(closest: b, difference 0\.019 > 0\.014\)\.$/);
    const noisy = summarizeForgetting(compare([['general-ppl', 'bits_per_byte', 'old', 0.5, [0.143, 0.02], [0.162, 0.02]]]));
    // combined se 0.0283 > 0.019
    expect(noisy.verdicts[0].winner).toBeNull();
    expect(noisy.verdicts[0].tied).toEqual(['a', 'b']);
    expect(noisy.verdicts[0].statement).toMatch(/no clear difference between a and b .*difference 0\.019, within the combined standard error 0\.028/);
  });

  it('gain picks the largest, forgetting the smallest; a missing standard error forbids any claim', () => {
    const s = summarizeForgetting(compare([['code-ppl', 'bits_per_byte', 'new', 0.01, [4.6, 0.01], [3.97, 0.01]]]));
    expect(s.verdicts[0].winner).toBe('a');
    expect(s.verdicts[0].statement).toMatch(/^Most gain/);
    const unknown = summarizeForgetting(compare([['code-ppl', 'bits_per_byte', 'new', 0.01, [4.6, null], [3.97, 0.01]]]));
    expect(unknown.verdicts[0].winner).toBeNull();
    expect(unknown.verdicts[0].statement).toMatch(/no clear difference can be claimed/);
    expect(unknown.means.find((m) => m.checkpoint === 'a')!.stderr).toBeNull();
  });

  it('families of the metrics', () => {
    expect(['acc', 'acc_norm', 'exact_match', 'acc,none', 'exact_match,strict-match'].map(metricFamily)).toEqual(Array(5).fill('accuracy'));
    expect(metricFamily('bits_per_byte')).toBe('bits_per_byte');
    expect(metricFamily('word_perplexity')).toBeNull();
  });
});

describe('bits per byte standard error', () => {
  it('equal-length documents: the standard error of the per-document mean', () => {
    // ll = [-2, -6] over 2 bytes each: per-document bpb 1/ln2 and 3/ln2, mean 2/ln2, sample sd sqrt(2)/ln2, se 1/ln2
    expect(bitsPerByteStderr([-2, -6], [2, 2])).toBeCloseTo(1 / Math.LN2, 12);
  });

  it('unequal lengths: the ratio estimator, hand-computed', () => {
    // R = -10/4 = -2.5; residuals -1 - (-2.5)(1) = 1.5, -9 - (-2.5)(3) = -1.5; n/(n-1) Σr² = 2·4.5 = 9; sqrt 3 / 4 / ln2
    expect(bitsPerByteStderr([-1, -9], [1, 3])).toBeCloseTo(3 / 4 / Math.LN2, 12);
    // a plain mean of per-document bpb (1/ln2 and 3/ln2) would give 1/ln2: a different number
    expect(bitsPerByteStderr([-1, -9], [1, 3])).not.toBeCloseTo(1 / Math.LN2, 3);
    expect(bitsPerByteStderr([-1], [1])).toBeNull();
  });

  it('perplexityMetrics carries it for bits_per_byte only', () => {
    const m = perplexityMetrics(-8, 4, 2, 4, { lls: [-2, -6], bytes: [2, 2] });
    expect(m.find((x) => x.metric === 'bits_per_byte')!.stderr).toBeCloseTo(1 / Math.LN2, 12);
    expect(m.filter((x) => x.metric !== 'bits_per_byte').every((x) => x.stderr === null)).toBe(true);
  });
});
