/**
 * Smoothing for training curves, as Weights & Biases draws its default ("time-weighted EMA"):
 * an exponential moving average whose memory is measured along the x axis, not in points —
 * a point's weight decays by w per thousandth of the curve's x range, w = √slider (W&B maps
 * its slider so) — and debiased (divided by the sum of the weights, so the start is not dragged
 * towards zero). A dense curve (a point per thousandth) is the TensorBoard EMA with weight w;
 * a 40-step loss curve is smoothed from about 0.9 on the slider; a sparse one (a validation
 * loss measured 5 times) is barely smoothed, so it ends at its last value instead of lagging
 * behind it. Non-finite values (NaN, ±∞) pass through unchanged and do not enter the average;
 * a constant series comes back as it is.
 */

export interface SmoothOptions {
  /** the x distance over which a point's weight decays by `weight` (default: a thousandth of the x range) */
  unit?: number;
  /** divide by the sum of the weights (default); off: the average starts at the first value */
  debias?: boolean;
}

/** The smoothed curve, keeping its x values. `slider` in [0, 1): 0 is no smoothing. */
export function smoothCurve(points: readonly (readonly [number, number])[], slider: number, opts: SmoothOptions = {}): [number, number][] {
  const s = Number.isFinite(slider) ? Math.max(slider, 0) : 0;
  return timeWeightedEma(points, Math.sqrt(s), opts);
}

/** The time-weighted EMA with decay `weight` per `unit` of x. */
function timeWeightedEma(points: readonly (readonly [number, number])[], weight: number, opts: SmoothOptions): [number, number][] {
  const w = Math.min(Math.max(Number.isFinite(weight) ? weight : 0, 0), 0.999);
  const out = points.map((p) => [p[0], p[1]] as [number, number]);
  if (w === 0) return out;
  const finite = points.filter((p) => Number.isFinite(p[1]) && Number.isFinite(p[0]));
  if (finite.length === 0 || finite.every((p) => p[1] === finite[0]![1])) return out;
  const range = finite[finite.length - 1]![0] - finite[0]![0];
  const unit = opts.unit ?? (range > 0 ? range / 1000 : 1);
  const debias = opts.debias ?? true;
  let num = 0;
  let den = 0;
  let last = 0;
  let prevX: number | null = null;
  for (const p of out) {
    const [x, y] = p;
    if (!Number.isFinite(y) || !Number.isFinite(x)) continue;
    const decay = prevX === null ? 0 : Math.pow(w, Math.max(0, x - prevX) / unit);
    if (debias) {
      num = num * decay + y;
      den = den * decay + 1;
      p[1] = num / den;
    } else {
      last = prevX === null ? y : last * decay + (1 - decay) * y;
      p[1] = last;
    }
    prevX = x;
  }
  return out;
}

/**
 * The EMA of a series point by point (TensorBoard's smoothing): s_t = w·s_{t-1} + (1 − w)·y_t,
 * debiased by 1 − w^n: the time-weighted EMA with one unit per finite point.
 */
export function ema(values: readonly number[], weight: number, debias = true): number[] {
  let k = 0;
  const points = values.map((v) => [Number.isFinite(v) ? k++ : Number.NaN, v] as [number, number]);
  return timeWeightedEma(points, weight, { unit: 1, debias }).map((p) => p[1]);
}
