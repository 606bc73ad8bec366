/**
 * Numbers as the Train / Eval / Chat / Compare cells show them. Scores and deltas come from
 * src/shared/format.ts (the exported report's rules); integers here take thin-space
 * thousands separators here (1 234 567), as on screen they read better than commas.
 */
import { DASH } from '../../../../shared/format';

export { DASH, fmtValue, fmtDelta } from '../../../../shared/format';
const THIN = '\u2009';

function finite(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** A loss: three decimals. */
export function fmtLoss(v: number | null | undefined): string {
  return finite(v) ? v.toFixed(3) : DASH;
}

/** An integer with thin-space thousands separators. */
export function fmtInt(v: number | null | undefined): string {
  if (!finite(v)) return DASH;
  const r = Math.round(v);
  return (r < 0 ? '−' : '') + Math.abs(r).toString().replace(/\B(?=(\d{3})+(?!\d))/g, THIN);
}

/** Tokens per second: an integer from 100 up, one decimal below. */
export function fmtRate(v: number | null | undefined): string {
  if (!finite(v)) return DASH;
  return v >= 100 ? fmtInt(v) : v.toFixed(1);
}

/** A learning rate: 3e-4 style for small values. */
export function fmtLr(v: number | null | undefined): string {
  if (!finite(v)) return DASH;
  if (v === 0) return '0';
  return Math.abs(v) < 0.01 ? v.toExponential(1).replace('e-', 'e−') : String(Number(v.toPrecision(3)));
}

/** Seconds between two ISO times, or null. */
export function secondsBetween(from: string | null, to: string | null): number | null {
  if (!from || !to) return null;
  const a = Date.parse(from);
  const b = Date.parse(to);
  return Number.isFinite(a) && Number.isFinite(b) ? Math.max(0, (b - a) / 1000) : null;
}

/**
 * A short label for a checkpoint folder: its last segment, or the last two when the last is a
 * generic name a trainer writes (…/run-3/model, …/checkpoints/step-40).
 */
export function shortPath(path: string): string {
  const parts = path.replace(/[\\/]+$/, '').split(/[\\/]/).filter(Boolean);
  if (parts.length === 0) return path;
  const last = parts[parts.length - 1];
  if (parts.length >= 2 && /^(model|adapter|final|merged|hf|step-?\d+|checkpoint-?\d+)$/i.test(last)) return `${parts[parts.length - 2]}/${last}`;
  return last;
}
