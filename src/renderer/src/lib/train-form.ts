/**
 * The Train cell's form as pure logic: its saved state → the options `blocklab train` takes
 * (checked field by field against the shared schema as the person types), the command that
 * runs the same from a terminal, and the warning when a run's loss diverges.
 */
import { trainCommand } from '../../../shared/commands';
import { TRAIN_DEFAULTS } from '../../../shared/jobs';
import { buildTrainJob, trainSpecErrors, TrainSpecSchema, type TrainSpec } from '../../../shared/train-spec';
import type { TrainCellState } from './cell';

export type Target = 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down';
export const TARGETS: readonly Target[] = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'];

/** "2, 5" → [2, 5]; a word that is not a whole number becomes NaN (the schema says so). */
export function parseLayers(text: string | undefined): number[] | undefined {
  const t = (text ?? '').trim();
  if (!t) return undefined;
  return t.split(/[\s,]+/).filter(Boolean).map((w) => (/^\d+$/.test(w) ? Number(w) : Number.NaN));
}

function lines(text: string[] | string | undefined): string[] | undefined {
  const list = (Array.isArray(text) ? text : (text ?? '').split('\n')).map((l) => l.trim()).filter(Boolean);
  return list.length ? list : undefined;
}

/** The spec the cell's state asks for; the main settings default as the trainer's do. */
export function trainSpecFromState(st: TrainCellState): Record<string, unknown> {
  const method = st.method ?? 'blocks';
  const m =
    method === 'full'
      ? { kind: 'full' }
      : method === 'last'
        ? { kind: 'last', k: st.k ?? 2 }
        : method === 'lora'
          ? { kind: 'lora', rank: st.rank ?? 8, alpha: st.alpha ?? 2 * (st.rank ?? 8), targets: st.targets ?? ['q', 'v'] }
          : { kind: 'blocks', ...(parseLayers(st.layers) ? { layers: parseLayers(st.layers) } : {}) };
  const spec: Record<string, unknown> = {
    model: (st.model ?? '').trim(),
    data: lines(st.data) ?? [],
    method: m,
    steps: st.steps ?? TRAIN_DEFAULTS.steps,
    lr: st.lr ?? TRAIN_DEFAULTS.lr,
    batch: st.batch ?? TRAIN_DEFAULTS.batch,
    seq: st.seq ?? TRAIN_DEFAULTS.seq,
  };
  for (const key of ['gradAccum', 'warmup', 'minLrRatio', 'seed', 'weightDecay', 'beta1', 'beta2', 'clip', 'saveEvery', 'evalEvery', 'evalBatches', 'valFraction', 'keepCheckpoints', 'stopAfter'] as const) {
    if (st[key] !== undefined && st[key] !== null) spec[key] = st[key];
  }
  const include = lines(st.include);
  const exclude = lines(st.exclude);
  if (include) spec.include = include;
  if (exclude) spec.exclude = exclude;
  if (st.textColumn?.trim() && st.textColumn.trim() !== 'text') spec.textColumn = st.textColumn.trim();
  if (st.backend && st.backend !== 'auto') spec.backend = st.backend;
  if (st.name?.trim()) spec.name = st.name.trim();
  if (st.out?.trim()) spec.out = st.out.trim();
  return spec;
}

/** Field → its problem. `unreadable` holds fields whose text is not a number at all. */
export function trainFormErrors(st: TrainCellState, unreadable: Iterable<string> = []): Record<string, string> {
  const spec = trainSpecFromState(st);
  const errors: Record<string, string> = {};
  if (!spec.model) errors.model = 'choose the model folder to train';
  Object.assign(errors, trainSpecErrors(spec));
  if (errors.model === 'is empty') errors.model = 'choose the model folder to train';
  for (const key of unreadable) errors[key] = 'must be a number';
  return errors;
}

/** The checked spec, or an error listing every problem (named as the form labels them). */
export function checkedTrainSpec(st: TrainCellState, labels: Record<string, string>, unreadable: Iterable<string> = []): TrainSpec {
  const errors = trainFormErrors(st, unreadable);
  const keys = Object.keys(errors);
  if (keys.length) throw new Error(`fix the settings first: ${keys.map((k) => `${labels[k] ?? k} ${errors[k]}`).join('; ')}`);
  return TrainSpecSchema.parse(trainSpecFromState(st));
}

/** `blocklab train …` for these settings (null while they do not check out). */
export function trainCommandFor(st: TrainCellState): string | null {
  const parsed = TrainSpecSchema.safeParse(trainSpecFromState(st));
  if (!parsed.success || !parsed.data.model) return null;
  const job = buildTrainJob(parsed.data, { out: parsed.data.out ?? '(chosen when it runs)', cacheDir: '(next to the store)' });
  return trainCommand({ ...job, out: parsed.data.out ?? null }, { name: parsed.data.name });
}

export interface Divergence {
  kind: 'nan' | 'rising';
  message: string;
}

/**
 * Whether a loss curve is diverging: a non-finite loss, or the mean of the last 3 steps at more
 * than 1.5× (and 1 nat above) the first step's loss — the loss of the model before training
 * moved it. Judged from the 4th step on (a single spike does not move a mean of 3 that far).
 */
export function divergence(loss: readonly (readonly [number, number])[]): Divergence | null {
  const bad = loss.find(([, v]) => !Number.isFinite(v));
  if (bad) return { kind: 'nan', message: `the loss became ${bad[1]} at step ${bad[0]}` };
  if (loss.length < 4) return null;
  const start = loss[0]![1];
  const last3 = loss.slice(-3);
  const recent = last3.reduce((s, p) => s + p[1], 0) / last3.length;
  if (recent > 1.5 * start && recent - start > 1) {
    const last = loss[loss.length - 1]!;
    return { kind: 'rising', message: `the loss is ${recent.toFixed(2)} (mean of the last 3 steps, at step ${last[0]}), far above the ${start.toFixed(2)} it started at` };
  }
  return null;
}
