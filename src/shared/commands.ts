/**
 * The `blocklab …` command that does what a cell does (LLaMA Board's "preview command"): every
 * cell that does work shows it before and after Run, and a run page shows the one that made the
 * run. Each builder writes the flags the CLI parses back into the same job (tested against
 * `blocklab train --dry-run` in test/integration/commands.test.ts); values are quoted for a
 * POSIX shell.
 */
import { DEFAULT_ADAMW, TRAIN_DEFAULTS, type TrainJob } from './jobs.js';
import { defaultWarmup } from './train-spec.js';
import type { ExpansionRequest } from './expansion.js';

/** A word as a POSIX shell reads it back unchanged: bare when safe, else in single quotes. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A part of a command: a literal word, or a placeholder shown as it is (`<out-folder>`). */
type Word = string | { placeholder: string };

function join(words: Word[]): string {
  return words.map((w) => (typeof w === 'string' ? shellQuote(w) : w.placeholder)).join(' ');
}

/** A path, or a placeholder for one the app chooses when the cell runs. */
function pathOr(path: string | null | undefined, placeholder: string): Word {
  return path && path.trim() ? path : { placeholder };
}

const num = (x: number) => String(x);

function backendFlag(backend: string | null | undefined): string[] {
  return backend && backend !== 'auto' ? ['--backend', backend] : [];
}

/** The placeholder for an output folder the app picks at run time. */
export const OUT_PLACEHOLDER = '<out-folder>';

/**
 * `blocklab train …` for a full training job: the data, the method and the run's size always;
 * every other option when it differs from the trainer's default.
 */
export function trainCommand(job: Omit<TrainJob, 'out' | 'cacheDir' | 'resume'> & { out?: string | null }, opts: { name?: string | null } = {}): string {
  const w: Word[] = ['blocklab', 'train', job.model, '--data', ...job.data.paths];
  if (job.data.include?.length) w.push('--include', ...job.data.include);
  if (job.data.exclude?.length) w.push('--exclude', ...job.data.exclude);
  if (job.data.textColumn) w.push('--text-column', job.data.textColumn);
  w.push('--out', pathOr(job.out, OUT_PLACEHOLDER));
  const m = job.method;
  w.push('--method', m.kind === 'last' ? `last:${m.k}` : m.kind);
  if (m.kind === 'blocks' && m.layers?.length) w.push('--trainable-layers', m.layers.join(','));
  if (m.kind === 'lora') w.push('--lora-rank', num(m.rank), '--lora-alpha', num(m.alpha), '--lora-targets', m.targets.join(','));
  w.push('--steps', num(job.steps), '--lr', num(job.lr), '--batch', num(job.batch), '--seq', num(job.seq));
  if (job.gradAccum !== TRAIN_DEFAULTS.gradAccum) w.push('--grad-accum', num(job.gradAccum));
  if (job.warmup !== defaultWarmup(job.steps)) w.push('--warmup', num(job.warmup));
  if (job.minLrRatio !== TRAIN_DEFAULTS.minLrRatio) w.push('--min-lr-ratio', num(job.minLrRatio));
  w.push('--seed', num(job.seed));
  if (job.adamw.weightDecay !== DEFAULT_ADAMW.weightDecay) w.push('--weight-decay', num(job.adamw.weightDecay));
  if (job.adamw.beta1 !== DEFAULT_ADAMW.beta1) w.push('--beta1', num(job.adamw.beta1));
  if (job.adamw.beta2 !== DEFAULT_ADAMW.beta2) w.push('--beta2', num(job.adamw.beta2));
  if (job.clip !== TRAIN_DEFAULTS.clip) w.push('--clip', num(job.clip));
  if (job.saveEvery !== TRAIN_DEFAULTS.saveEvery) w.push('--save-every', num(job.saveEvery));
  if (job.evalEvery !== TRAIN_DEFAULTS.evalEvery) w.push('--eval-every', num(job.evalEvery));
  if (job.evalBatches !== TRAIN_DEFAULTS.evalBatches) w.push('--eval-batches', num(job.evalBatches));
  if (job.valFraction !== TRAIN_DEFAULTS.valFraction) w.push('--val-fraction', num(job.valFraction));
  if (job.keepCheckpoints !== TRAIN_DEFAULTS.keepCheckpoints) w.push('--keep-checkpoints', num(job.keepCheckpoints));
  if (job.stopAfter !== undefined) w.push('--stop-after', num(job.stopAfter));
  if (opts.name?.trim()) w.push('--name', opts.name.trim());
  w.push(...backendFlag(job.backend));
  return join(w);
}

/** `blocklab expand …` with the same effect as an Expansion cell. */
export function expandCommand(model: string | null | undefined, out: string | null | undefined, request: ExpansionRequest, opts: { overwrite?: boolean; backend?: string | null } = {}): string {
  const w: Word[] = ['blocklab', 'expand', pathOr(model, '<model>'), '--out', pathOr(out, OUT_PLACEHOLDER)];
  if (request.positions && request.positions.length > 0) {
    w.push('--positions', request.positions.map((p) => (p.source === undefined ? `${p.position}` : `${p.position}:${p.source}`)).join(','));
  } else {
    if (request.blocks !== undefined) w.push('--blocks', String(request.blocks));
    w.push('--placement', request.placement ?? 'interleave');
  }
  if (opts.overwrite) w.push('--overwrite');
  w.push(...backendFlag(opts.backend));
  return join(w);
}

const DTYPE_FLAG: Record<string, string> = { float32: 'f32', float16: 'f16', bfloat16: 'bf16', F32: 'f32', F16: 'f16', BF16: 'bf16' };

/** `blocklab export …` for a Model cell's export. */
export function exportCommand(e: { model: string | null | undefined; format: 'hf' | 'gguf'; out?: string | null; dtype?: string | null }): string {
  const w: Word[] = ['blocklab', 'export', pathOr(e.model, '<model>'), '--format', e.format, '--out', pathOr(e.out, e.format === 'gguf' ? '<out-file.gguf>' : OUT_PLACEHOLDER)];
  if (e.dtype) w.push('--dtype', DTYPE_FLAG[e.dtype] ?? e.dtype);
  return join(w);
}

/**
 * `blocklab compare --base …` (with a base: forgetting and gain) or `blocklab eval …` (plain
 * scores) for an Eval cell; the benchmarks go last, as the CLI's variadic --bench wants.
 */
export function evalCommand(e: { base?: string | null; checkpoints: string[]; benchmarks: string[]; limit?: number | null; shots?: number | null; backend?: string | null }): string {
  const base = e.base?.trim();
  const others = base ? e.checkpoints.filter((c) => c !== base) : e.checkpoints;
  const w: Word[] = base ? ['blocklab', 'compare', '--base', base] : ['blocklab', 'eval'];
  w.push(...(others.length ? others : [{ placeholder: '<checkpoint>' }]));
  if (e.limit) w.push('--limit', num(e.limit));
  if (e.shots) w.push('--shots', num(e.shots));
  w.push(...backendFlag(e.backend));
  w.push('--bench', ...(e.benchmarks.length ? e.benchmarks : [{ placeholder: '<benchmark>' }]));
  return join(w);
}

export interface GenerateCommandInput {
  model: string | null | undefined;
  /** completion mode: the text to continue (null: not typed yet, a placeholder) */
  prompt?: string | null;
  /** chat mode: the conversation so far, ending with the user's turn (null: none yet, a placeholder) */
  messages?: { role: 'system' | 'user' | 'assistant'; content: string }[] | null;
  useTemplate?: boolean;
  system?: string;
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
  maxTokens: number;
  seed: number;
  backend?: string | null;
}

/** `blocklab generate …` that writes the same answer (same seed, same sampling, same prompt). */
export function generateCommand(g: GenerateCommandInput): string {
  const w: Word[] = ['blocklab', 'generate', pathOr(g.model, '<model>')];
  if (g.messages !== undefined) {
    w.push('--messages', g.messages === null ? { placeholder: '<conversation-json>' } : JSON.stringify(g.messages.filter((m) => m.role !== 'system').map(({ role, content }) => ({ role, content }))));
    if (g.useTemplate !== false) w.push('--chat');
    if (g.system) w.push('--system', g.system);
  } else {
    w.push('--prompt', g.prompt === null || g.prompt === undefined ? { placeholder: '<prompt>' } : g.prompt);
  }
  w.push('--max-tokens', num(g.maxTokens), '--temperature', num(g.temperature), '--top-p', num(g.topP), '--top-k', num(g.topK), '--repetition-penalty', num(g.repetitionPenalty), '--seed', num(g.seed));
  w.push(...backendFlag(g.backend));
  return join(w);
}
