/**
 * Every option of `blocklab train`, once: the schema a Train cell's form validates against as
 * the person types, the server validates a `jobs.start` against, and the CLI validates its
 * parsed flags against; the one builder that turns those options into the trainer's full job
 * (the defaults for what was left out); and the flag each option is spelled as on the command
 * line (src/shared/commands.ts writes the command back from a job).
 */
import { z } from 'zod';
import { BackendChoiceSchema, DEFAULT_ADAMW, TRAIN_DEFAULTS, TrainJobSchema, type TrainJob } from './jobs.js';

const Path = z.string().min(1, 'is empty').max(4096, 'is longer than 4096 characters');

/** An integer in [min, max], with messages in plain words. */
function int(min: number, max: number) {
  return z
    .number({ error: 'must be a number' })
    .int(`must be a whole number`)
    .min(min, min === 0 ? 'must be 0 or more' : `must be at least ${min.toLocaleString('en-US')}`)
    .max(max, `must be at most ${max.toLocaleString('en-US')}`);
}

const Projection = z.enum(['q', 'k', 'v', 'o', 'gate', 'up', 'down']);

/** What a Train cell chooses: the method and its own settings. */
export const TrainMethodSpecSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('blocks'), layers: z.array(int(0, 1_000_000)).min(1, 'name at least one layer, e.g. 4,9').max(4096).optional() }),
  z.object({ kind: z.literal('full') }),
  z.object({ kind: z.literal('last'), k: int(1, 4096) }),
  z.object({
    kind: z.literal('lora'),
    rank: int(1, 4096),
    alpha: z.number({ error: 'must be a number' }).gt(0, 'must be above 0').max(1e6, 'must be at most 1,000,000'),
    targets: z.array(Projection).min(1, 'choose at least one projection').max(7),
  }),
]);

/**
 * The options of a training run, as a Train cell sends them and as `blocklab train` parses
 * them. Optional ones take the trainer's defaults (TRAIN_DEFAULTS, DEFAULT_ADAMW).
 */
export const TrainSpecSchema = z
  .object({
    model: Path,
    data: z.array(Path).min(1, 'give at least one data folder or file').max(64, 'at most 64 data paths'),
    include: z.array(z.string().min(1).max(1000)).max(64).optional(),
    exclude: z.array(z.string().min(1).max(1000)).max(64).optional(),
    /** the .jsonl field / .parquet column holding the text (default "text") */
    textColumn: z.string().min(1).max(200).optional(),
    out: Path.optional(),
    method: TrainMethodSpecSchema,
    steps: int(1, 10_000_000),
    lr: z.number({ error: 'must be a number' }).gt(0, 'must be above 0').max(1, 'must be at most 1 (typical: 1e-5 to 1e-3)'),
    batch: int(1, 4096),
    seq: int(2, 1_000_000),
    gradAccum: int(1, 4096).optional(),
    warmup: int(0, 10_000_000).optional(),
    minLrRatio: z.number({ error: 'must be a number' }).min(0, 'must be 0 or more').max(1, 'must be at most 1').optional(),
    seed: int(-(2 ** 31), 2 ** 31 - 1).optional(),
    weightDecay: z.number({ error: 'must be a number' }).min(0, 'must be 0 or more').max(10, 'must be at most 10 (typical: 0 to 0.1)').optional(),
    beta1: z.number({ error: 'must be a number' }).min(0, 'must be 0 or more').lt(1, 'must be below 1').optional(),
    beta2: z.number({ error: 'must be a number' }).min(0, 'must be 0 or more').lt(1, 'must be below 1').optional(),
    clip: z.number({ error: 'must be a number' }).min(0, 'must be 0 (off) or more').max(1e6, 'must be at most 1,000,000').optional(),
    saveEvery: int(0, 10_000_000).optional(),
    evalEvery: int(0, 10_000_000).optional(),
    evalBatches: int(1, 100_000).optional(),
    valFraction: z.number({ error: 'must be a number' }).min(0, 'must be 0 or more').max(0.5, 'must be at most 0.5').optional(),
    keepCheckpoints: int(0, 100_000).optional(),
    /** pause after this step, with a checkpoint (Resume continues); for a look at an early model */
    stopAfter: int(1, 10_000_000).optional(),
    name: z.string().max(200, 'must be at most 200 characters').optional(),
    /** the compute backend (default auto) */
    backend: BackendChoiceSchema.optional(),
  })
  .superRefine((s, ctx) => {
    if (s.warmup !== undefined && s.warmup > s.steps) ctx.addIssue({ code: 'custom', path: ['warmup'], message: `must not be longer than the run (${s.steps} steps)` });
    if (s.stopAfter !== undefined && s.stopAfter >= s.steps) ctx.addIssue({ code: 'custom', path: ['stopAfter'], message: `must be before the last step (${s.steps})` });
  });
export type TrainSpec = z.infer<typeof TrainSpecSchema>;
export type TrainSpecInput = z.input<typeof TrainSpecSchema>;

/** Each option's `blocklab train` flag (the CLI's error messages and the command preview use them). */
export const TRAIN_FLAGS: Record<string, string> = {
  model: '<model>',
  data: '--data',
  include: '--include',
  exclude: '--exclude',
  textColumn: '--text-column',
  out: '--out',
  method: '--method',
  layers: '--trainable-layers',
  k: '--method last:K',
  rank: '--lora-rank',
  alpha: '--lora-alpha',
  targets: '--lora-targets',
  steps: '--steps',
  lr: '--lr',
  batch: '--batch',
  seq: '--seq',
  gradAccum: '--grad-accum',
  warmup: '--warmup',
  minLrRatio: '--min-lr-ratio',
  seed: '--seed',
  weightDecay: '--weight-decay',
  beta1: '--beta1',
  beta2: '--beta2',
  clip: '--clip',
  saveEvery: '--save-every',
  evalEvery: '--eval-every',
  evalBatches: '--eval-batches',
  valFraction: '--val-fraction',
  keepCheckpoints: '--keep-checkpoints',
  stopAfter: '--stop-after',
  name: '--name',
  backend: '--backend',
};

/** Warmup when none is given: 10 steps, or a tenth of a shorter run (40 steps → 4). */
export function defaultWarmup(steps: number): number {
  return Math.min(TRAIN_DEFAULTS.warmup, Math.floor(steps / 10));
}

/**
 * Field → the first problem with it, for a form that shows each next to its field. Keys are
 * the spec's (`lr`, `warmup`), a method setting's own name (`rank`, `k`, `layers`), or `data`.
 */
export function trainSpecErrors(spec: unknown): Record<string, string> {
  const parsed = TrainSpecSchema.safeParse(spec);
  const errors: Record<string, string> = {};
  if (parsed.success) return errors;
  for (const issue of parsed.error.issues) {
    const path = issue.path.filter((p) => typeof p === 'string') as string[];
    const key = path[0] === 'method' && path.length > 1 ? path[1]! : (path[0] ?? 'spec');
    errors[key] ??= issue.message;
  }
  return errors;
}

/** The first problem of a spec as one line naming the flag: "--lr: must be at most 1". */
export function trainSpecProblem(spec: unknown): string | null {
  const errors = trainSpecErrors(spec);
  const key = Object.keys(errors)[0];
  return key === undefined ? null : `${TRAIN_FLAGS[key] ?? key}: ${errors[key]}`;
}

export interface TrainJobContext {
  /** the run folder, resolved (the app picks one under its data folder when the spec has none) */
  out: string;
  /** where tokenized corpora are cached (next to the store) */
  cacheDir: string;
  resume?: boolean;
  backend?: TrainJob['backend'];
  stopAfter?: number;
}

/**
 * The trainer's full job for a spec: what the spec leaves out takes the defaults. The one place
 * both the app (`jobs.start`) and `blocklab train` build a job, so the same options make the
 * same run from either.
 */
export function buildTrainJob(spec: TrainSpec, ctx: TrainJobContext): TrainJob {
  // the context's choices (a CLI --backend or --stop-after, a resume's) win over the spec's
  const backend = ctx.backend ?? spec.backend;
  const stopAfter = ctx.stopAfter ?? spec.stopAfter;
  const job: TrainJob = {
    model: spec.model,
    data: {
      paths: spec.data,
      ...(spec.include?.length ? { include: spec.include } : {}),
      ...(spec.exclude?.length ? { exclude: spec.exclude } : {}),
      ...(spec.textColumn ? { textColumn: spec.textColumn } : {}),
    },
    out: ctx.out,
    method: spec.method,
    steps: spec.steps,
    lr: spec.lr,
    batch: spec.batch,
    seq: spec.seq,
    gradAccum: spec.gradAccum ?? TRAIN_DEFAULTS.gradAccum,
    warmup: spec.warmup ?? defaultWarmup(spec.steps),
    minLrRatio: spec.minLrRatio ?? TRAIN_DEFAULTS.minLrRatio,
    seed: spec.seed ?? TRAIN_DEFAULTS.seed,
    adamw: {
      beta1: spec.beta1 ?? DEFAULT_ADAMW.beta1,
      beta2: spec.beta2 ?? DEFAULT_ADAMW.beta2,
      eps: DEFAULT_ADAMW.eps,
      weightDecay: spec.weightDecay ?? DEFAULT_ADAMW.weightDecay,
    },
    clip: spec.clip ?? TRAIN_DEFAULTS.clip,
    saveEvery: spec.saveEvery ?? TRAIN_DEFAULTS.saveEvery,
    evalEvery: spec.evalEvery ?? TRAIN_DEFAULTS.evalEvery,
    evalBatches: spec.evalBatches ?? TRAIN_DEFAULTS.evalBatches,
    valFraction: spec.valFraction ?? TRAIN_DEFAULTS.valFraction,
    keepCheckpoints: spec.keepCheckpoints ?? TRAIN_DEFAULTS.keepCheckpoints,
    cacheDir: ctx.cacheDir,
    resume: ctx.resume ?? false,
    ...(backend && backend !== 'auto' ? { backend } : {}),
    ...(stopAfter !== undefined ? { stopAfter } : {}),
  };
  return TrainJobSchema.parse(job);
}
