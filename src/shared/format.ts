/** Number formatting shared by the report renderers (HTML, Markdown) and the app's cells (plain text, not escaped). */

export const DASH = '—';

function finite(v: number | null | undefined): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** A score, loss or perplexity: about four significant digits, no exponent for ordinary values. */
export function fmtValue(v: number | null | undefined): string {
  if (v === null || v === undefined) return DASH;
  if (Number.isNaN(v)) return 'NaN';
  if (v === 0) return '0';
  if (!Number.isFinite(v)) return v > 0 ? '∞' : '−∞';
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e7)) return v.toExponential(2).replace('-', '−');
  const digits = a >= 1000 ? 0 : a >= 100 ? 1 : a >= 10 ? 2 : a >= 0.1 ? 3 : 4;
  return v.toFixed(digits).replace('-', '−');
}

/** A delta with its sign (+0.012, −1.30). */
export function fmtDelta(v: number | null | undefined): string {
  if (!finite(v)) return fmtValue(v);
  const s = fmtValue(Math.abs(v));
  return v > 0 ? `+${s}` : v < 0 ? `−${s}` : `±${s}`;
}

/** An integer with thousands separators. */
export function fmtInt(v: number | null | undefined): string {
  if (!finite(v)) return DASH;
  return Math.round(v)
    .toString()
    .replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** A parameter count: 1.23 M, 456 K, 789. */
export function fmtCount(v: number | null | undefined): string {
  if (!finite(v)) return DASH;
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(2)} B`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(2)} M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(1)} K`;
  return fmtInt(v);
}

/** A share of a whole, as a percentage. */
export function fmtPercent(part: number | null | undefined, whole: number | null | undefined): string {
  if (!finite(part) || !finite(whole) || whole === 0) return DASH;
  const p = (100 * part) / whole;
  return `${p >= 10 ? p.toFixed(0) : p >= 1 ? p.toFixed(1) : p.toFixed(2)}%`;
}

/** A duration: 42.1 s, 3 min 05 s, 2 h 04 min. */
export function fmtSeconds(v: number | null | undefined): string {
  if (!finite(v)) return DASH;
  if (v < 60) return `${v.toFixed(v < 10 ? 2 : 1)} s`;
  const s = Math.round(v);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

/** Tokens per second, rounded to a readable precision. */
export function fmtRate(v: number | null | undefined): string {
  if (!finite(v)) return DASH;
  return v >= 100 ? fmtInt(v) : v.toFixed(1);
}

/** A date-time as 'YYYY-MM-DD HH:MM UTC', or the input when it is not a date. */
export function fmtDate(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** Unicode block sparkline of a series (for the Markdown version). */
export function sparkline(values: number[], width = 32): string {
  const v = values.filter((x) => Number.isFinite(x));
  if (v.length === 0) return '';
  const n = Math.min(width, v.length);
  const buckets: number[] = [];
  for (let i = 0; i < n; i++) {
    const from = Math.floor((i * v.length) / n);
    const to = Math.max(from + 1, Math.floor(((i + 1) * v.length) / n));
    const slice = v.slice(from, to);
    buckets.push(slice.reduce((a, b) => a + b, 0) / slice.length);
  }
  const lo = Math.min(...buckets);
  const hi = Math.max(...buckets);
  const bars = '▁▂▃▄▅▆▇█';
  return buckets.map((b) => bars[hi === lo ? 3 : Math.min(7, Math.floor(((b - lo) / (hi - lo)) * 8))]).join('');
}

/**
 * How a checkpoint's score moved against the base, in the direction that is better for the
 * metric: > 0 improved, < 0 got worse, regardless of how `delta` is signed.
 */
export function improvement(base: number | null, value: number | null, higherIsBetter: boolean): number | null {
  if (!finite(base) || !finite(value)) return null;
  return higherIsBetter ? value - base : base - value;
}
