/**
 * The metric panels of a training run, as W&B lays them out: loss with validation loss, then
 * learning rate, gradient norm, tokens/s and the backend's memory (W&B's system panel); the x axis by optimizer step, by tokens seen
 * (step × batch × sequence × gradient accumulation) or by training time (the elapsed seconds
 * the trainer recorded at each step, continuing across a resume).
 */
import { formatBytes, formatDuration } from './format';
import { fmtLoss, fmtLr, fmtRate } from '../components/charts/format';

export type XAxis = 'step' | 'tokens' | 'time';
export const X_AXES: { value: XAxis; label: string }[] = [
  { value: 'step', label: 'step' },
  { value: 'tokens', label: 'tokens seen' },
  { value: 'time', label: 'time' },
];

export type Point = [number, number];

export interface PanelSpec {
  id: string;
  title: string;
  /** the curves drawn: a stored metric's name; validation ones dashed with markers, never smoothed */
  metrics: { name: string; validation?: boolean; label?: string }[];
  yName: string;
  format: (v: number) => string;
  /** the y axis's ticks, when they need the same notation throughout (a learning rate) */
  yFormat?: (v: number) => string;
}

export const LOSS_PANEL: PanelSpec = { id: 'loss', title: 'loss and validation loss', metrics: [{ name: 'loss', label: 'loss' }, { name: 'val_loss', validation: true, label: 'val loss' }], yName: 'loss', format: fmtLoss };
export const TRAIN_LOSS_PANEL: PanelSpec = { id: 'loss', title: 'training loss', metrics: [{ name: 'loss' }], yName: 'loss', format: fmtLoss };
export const VAL_LOSS_PANEL: PanelSpec = { id: 'val_loss', title: 'validation loss', metrics: [{ name: 'val_loss', validation: true }], yName: 'val loss', format: fmtLoss };
export const LR_PANEL: PanelSpec = { id: 'lr', title: 'learning rate', metrics: [{ name: 'lr' }], yName: 'lr', format: fmtLr, yFormat: fmtLr };
export const GRAD_PANEL: PanelSpec = { id: 'grad_norm', title: 'gradient norm', metrics: [{ name: 'grad_norm' }], yName: 'grad norm', format: (v) => (Number.isFinite(v) ? v.toPrecision(3) : '–') };
export const TPS_PANEL: PanelSpec = { id: 'tokens_per_second', title: 'tokens/s', metrics: [{ name: 'tokens_per_second' }], yName: 'tokens/s', format: fmtRate };
/** the backend's memory after each step (the wasm heap, WebGPU's buffers): what the memory plan's device figure predicts */
export const MEMORY_PANEL: PanelSpec = { id: 'backend_bytes', title: 'backend memory', metrics: [{ name: 'backend_bytes' }], yName: 'bytes', format: formatBytes, yFormat: formatBytes };

/** Tokens one optimizer step consumes, from a training run's stored config (null when it does not say). */
export function tokensPerStep(config: Record<string, unknown> | null | undefined): number | null {
  const c = config ?? {};
  const b = Number(c.batch);
  const t = Number(c.seq);
  const a = c.gradAccum === undefined ? 1 : Number(c.gradAccum);
  return [b, t, a].every((v) => Number.isFinite(v) && v > 0) ? b * t * a : null;
}

/**
 * A curve on the chosen x axis: steps as they are; tokens = step × tokensPerStep; time = the
 * elapsed seconds recorded at that step (points with no timing are left out).
 */
export function onAxis(points: readonly Point[], x: XAxis, ctx: { tokensPerStep: number | null; elapsed: readonly Point[] }): Point[] {
  if (x === 'step') return points.map(([s, v]) => [s, v]);
  if (x === 'tokens') return ctx.tokensPerStep === null ? [] : points.map(([s, v]) => [s * ctx.tokensPerStep!, v]);
  const at = new Map(ctx.elapsed.map(([s, e]) => [s, e]));
  const out: Point[] = [];
  for (const [s, v] of points) {
    const e = at.get(s);
    if (e !== undefined && Number.isFinite(e)) out.push([e, v]);
  }
  return out;
}

/** 40960 → "41k", 1.2e6 → "1.2M" */
export function fmtTokens(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e9) return `${Number((v / 1e9).toPrecision(3))}G`;
  if (a >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
  if (a >= 1e3) return `${Number((v / 1e3).toPrecision(3))}k`;
  return String(Math.round(v));
}

export function xAxisName(x: XAxis): string {
  return x === 'step' ? 'step' : x === 'tokens' ? 'tokens seen' : 'time';
}

export function xFormat(x: XAxis): (v: number) => string {
  return x === 'tokens' ? fmtTokens : x === 'time' ? (v) => formatDuration(v) : (v) => String(Number(v.toPrecision(6)));
}
