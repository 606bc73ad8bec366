import { describe, expect, it } from 'vitest';
import { ema, smoothCurve } from '../../src/renderer/src/lib/smoothing';

describe('ema (TensorBoard / W&B smoothing)', () => {
  it('debiased: the first point is the value itself, then a corrected running average', () => {
    // w = 0.5: s1 = 0.5 / 0.5 = 1; s2 = (0.25 + 1) / 0.75 = 5/3; s3 = (0.625 + 1.5) / 0.875 = 17/7
    const s = ema([1, 2, 3], 0.5);
    expect(s[0]).toBeCloseTo(1, 12);
    expect(s[1]).toBeCloseTo(5 / 3, 12);
    expect(s[2]).toBeCloseTo(17 / 7, 12);
  });

  it('without debias the average starts at the first value', () => {
    expect(ema([1, 2, 3], 0.5, false)).toEqual([1, 1.5, 2.25]);
    // w = 0.9: 10, 0.9·10 + 0.1·0 = 9, 0.9·9 + 0.1·0 = 8.1
    const s = ema([10, 0, 0], 0.9, false);
    expect(s[1]).toBeCloseTo(9, 12);
    expect(s[2]).toBeCloseTo(8.1, 12);
  });

  it('debiased w = 0.9 on 4, 0: (0.4·0.9) / (1 − 0.81) = 0.36 / 0.19', () => {
    const s = ema([4, 0], 0.9);
    expect(s[0]).toBeCloseTo(4, 12);
    expect(s[1]).toBeCloseTo(0.36 / 0.19, 12);
  });

  it('weight 0 is the identity; a constant series stays constant', () => {
    expect(ema([3, 1, 2], 0)).toEqual([3, 1, 2]);
    expect(ema([2, 2, 2], 0.99)).toEqual([2, 2, 2]);
  });

  it('non-finite values pass through and do not enter the average', () => {
    const s = ema([1, Number.NaN, 3], 0.5);
    expect(s[0]).toBeCloseTo(1, 12);
    expect(Number.isNaN(s[1])).toBe(true);
    // as if the series were [1, 3]: (0.25 + 1.5) / 0.75 = 7/3
    expect(s[2]).toBeCloseTo(7 / 3, 12);
  });

  it('smoothCurve keeps the steps', () => {
    const c = smoothCurve(
      [
        [10, 1],
        [20, 2],
        [30, 3],
      ],
      0.25, // √0.25 = 0.5 per 10 steps
      { debias: false, unit: 10 },
    );
    expect(c).toEqual([
      [10, 1],
      [20, 1.5],
      [30, 2.25],
    ]);
  });
});

describe('smoothCurve (W&B time-weighted EMA)', () => {
  it('a dense curve (a point per thousandth of its range) is the debiased EMA exactly', () => {
    const ys = Array.from({ length: 1001 }, (_, i) => 3 + Math.sin(i / 7) + (i % 5) * 0.1);
    const pts = ys.map((y, i) => [i * 4, y] as [number, number]); // steps 0, 4, …, 4000
    // the slider at 0.81 is a weight of √0.81 = 0.9 per point
    const twema = smoothCurve(pts, 0.81).map((p) => p[1]);
    // by the definition: Σ 0.9^(n-i) y_i / Σ 0.9^(n-i)
    let num = 0;
    let den = 0;
    ys.forEach((y, i) => {
      num = num * 0.9 + y;
      den = den * 0.9 + 1;
      expect(twema[i]).toBeCloseTo(num / den, 10);
    });
    expect(twema).toEqual(ema(ys, 0.9).map((v) => expect.closeTo(v, 10)));
  });

  it('a sparse validation curve at 0.95 ends at its last value, not behind it (the walkthrough: ~4.2 against 3.7)', () => {
    const val: [number, number][] = [
      [8, 6.0],
      [16, 5.0],
      [24, 4.5],
      [32, 4.0],
      [40, 3.7],
    ];
    const s = smoothCurve(val, 0.95);
    // each gap is 250 thousandths of the range: the older points weigh √0.95^250 ≈ 0.002 as much
    expect(Math.abs(s[4]![1] - 3.7)).toBeLessThan(0.01);
    // the point-by-point EMA lags: it is the average of the five, weighted 0.95^k
    expect(ema(val.map((p) => p[1]), 0.95)[4]).toBeGreaterThan(4.5);
  });
});

describe('a 40-step loss curve', () => {
  it('is smoothed visibly near the top of the slider, and not at all at 0', () => {
    const loss = Array.from({ length: 40 }, (_, i) => [i + 1, 6 - i / 20 + (i % 2 ? 0.5 : -0.5)] as [number, number]);
    const wiggle = (c: [number, number][]) => Math.max(...c.slice(10).map((p, i, a) => (i ? Math.abs(p[1] - a[i - 1]![1]) : 0)));
    expect(wiggle(smoothCurve(loss, 0))).toBeCloseTo(1.05, 6); // raw: ±0.5 around the trend
    // √0.95 per thousandth, 25.6 thousandths a step: 0.52 per step, the zigzag mostly averaged out
    expect(wiggle(smoothCurve(loss, 0.95))).toBeLessThan(0.4);
    expect(wiggle(smoothCurve(loss, 0.99))).toBeLessThan(0.15);
  });
});
