/**
 * Exponential moving average for training curves, as TensorBoard and Weights & Biases draw
 * their "smoothing" slider: s_t = w·s_{t-1} + (1 − w)·y_t, started at 0 and divided by
 * (1 − w^n) so the first points are not dragged towards zero ("debiasing"). Without debias the
 * average starts at the first value instead. Non-finite values (NaN, ±∞) pass through
 * unchanged and do not enter the average; a constant series is returned as it is.
 */
export function ema(values: readonly number[], weight: number, debias = true): number[] {
  const w = Math.min(Math.max(Number.isFinite(weight) ? weight : 0, 0), 0.999);
  if (w === 0) return values.slice();
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length > 0 && finite.every((v) => v === finite[0])) return values.slice();
  const out: number[] = [];
  let last = 0;
  let n = 0;
  for (const y of values) {
    if (!Number.isFinite(y)) {
      out.push(y);
      continue;
    }
    last = n === 0 && !debias ? y : last * w + (1 - w) * y;
    n += 1;
    out.push(debias ? last / (1 - Math.pow(w, n)) : last);
  }
  return out;
}

/** The EMA of a curve's values, keeping its x (step) values. */
export function smoothCurve(points: readonly (readonly [number, number])[], weight: number, debias = true): [number, number][] {
  const ys = ema(
    points.map((p) => p[1]),
    weight,
    debias,
  );
  return points.map((p, i) => [p[0], ys[i]]);
}
