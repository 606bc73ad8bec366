/**
 * `blocklab demo`: the paper's experiment in miniature, offline, from the bundled files
 * (resources/demo). The base model was pretrained on general English only; code is the new
 * domain. On the same code data and token budget:
 *
 *   blocks      LLaMA Pro: interleave 2 identity blocks (4 → 6), train only them
 *   top         suffix stacking: 2 identity blocks on top, train only them
 *   full        full fine-tuning of the base model
 *   lora        LoRA (rank 8, all linear layers) on the base model
 *
 * then every checkpoint is evaluated against the base on the builtin benchmarks (general =
 * old domain: forgetting; code = new domain: gain), and a report is written.
 */
import { FAMILY_INFO, formatFamilyMean, summarizeForgetting } from '../../shared/forgetting.js';
import { demoDir } from '../engine/resources.js';
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { checkWritableTarget, OUTPUT_MARKER, prepareOutputFolder } from '../engine/atomic.js';
import { join, resolve } from 'node:path';
import { expandModel } from '../engine/index.js';
import { BlocklabError } from '../engine/errors.js';
import { compareForgetting, runEval } from '../engine/eval.js';
import { DEFAULT_ADAMW } from '../engine/optimizer.js';
import { TRAIN_DEFAULTS } from '../engine/trainer.js';
import { startJob, registerCheckpointDir, type JobEvents } from '../jobs/supervisor.js';
import { buildRunReport, checkpointLabel, forgettingFromCompare, writeReport, type WrittenReport } from '../report/index.js';
import type { ExperimentStore } from '../store/index.js';
import type { CompareReport } from '../../shared/benchmarks.js';
import type { TrainJob } from '../../shared/jobs.js';

export const DEMO_BENCHMARKS = ['builtin:general-ppl', 'builtin:general-mc', 'builtin:code-ppl', 'builtin:code-mc'];

export interface DemoOptions {
  out: string;
  store: ExperimentStore;
  /** optimizer steps per method (the token budget is steps × batch × seq, the same for all) */
  steps?: number;
  batch?: number;
  seq?: number;
  seed?: number;
  /** limit items per benchmark (for a quick look) */
  limit?: number;
  pdf?: boolean;
  overwrite?: boolean;
  log?: (line: string) => void;
  events?: JobEvents;
  signal?: AbortSignal;
}

export interface DemoMethod {
  name: string;
  description: string;
  model: string;
  method: TrainJob['method'];
  lr: number;
}

export interface DemoResult {
  out: string;
  tokensPerMethod: number;
  runs: { name: string; runId: number | null; model: string; firstLoss: number | null; lastLoss: number | null; valLoss: number | null; tokensPerSecond: number | null; seconds: number | null; trainableParams: number | null }[];
  compare: CompareReport;
  report: WrittenReport;
  seconds: number;
}

/** (the CLI repeats `steps` as its --steps default, to avoid loading this module for --help) */
export const DEMO_DEFAULTS = { steps: 80, batch: 4, seq: 128, seed: 0 } as const;

/**
 * The learning rates: one for the methods that train ordinary weights (blocks, top, full —
 * the paper uses one rate for all), and a higher one for LoRA, as is usual for adapters
 * (its update is scaled by alpha / r on a low-rank product). Chosen before looking at the
 * forgetting table; not tuned to it.
 */
export const DEMO_LR = { weights: 1e-3, lora: 3e-3 } as const;

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const started = performance.now();
  const log = o.log ?? (() => undefined);
  const base = join(demoDir(), 'base-model');
  if (!existsSync(join(base, 'model.safetensors'))) {
    throw new BlocklabError('the bundled demo base model is missing; run `npm run demo:make-base` (or restore resources/demo/base-model from git)', { file: base });
  }
  const out = resolve(o.out);
  // a new or empty folder is used as it is; an earlier demo is replaced only with --overwrite;
  // anything else is refused (checkWritableTarget)
  if ((await checkWritableTarget(out, o.overwrite ?? false, 'demo')) === 'ours') {
    for (const name of await readdir(out)) if (name !== OUTPUT_MARKER) await rm(join(out, name), { recursive: true, force: true });
  }
  await prepareOutputFolder(out, 'demo');
  const steps = o.steps ?? DEMO_DEFAULTS.steps;
  const batch = o.batch ?? DEMO_DEFAULTS.batch;
  const seq = o.seq ?? DEMO_DEFAULTS.seq;
  const seed = o.seed ?? DEMO_DEFAULTS.seed;

  // --- expansions
  const interleaved = join(out, 'expanded-interleave');
  const stacked = join(out, 'expanded-top');
  log('expanding the base model: interleave 4 → 6 and top stacking 4 → 6 (identity checked)');
  const baseId = await registerCheckpointDir(o.store, base, 'import', { info: { role: 'demo base model' } });
  for (const [dir, placement] of [[interleaved, 'interleave'], [stacked, 'top']] as const) {
    const r = await expandModel(base, { blocks: 2, placement }, { out: dir, overwrite: true });
    const id = await registerCheckpointDir(o.store, dir, 'expand', { parentId: baseId });
    o.store.recordExpansion({ checkpointId: id, baseCheckpointId: baseId, record: r.record });
  }

  // --- training: the same data and token budget for every method
  const methods: DemoMethod[] = [
    { name: 'blocks', description: 'LLaMA Pro: interleaved identity blocks, only they train', model: interleaved, method: { kind: 'blocks' }, lr: DEMO_LR.weights },
    { name: 'top', description: 'suffix stacking: identity blocks on top, only they train', model: stacked, method: { kind: 'blocks' }, lr: DEMO_LR.weights },
    { name: 'full', description: 'full fine-tuning of the base model', model: base, method: { kind: 'full' }, lr: DEMO_LR.weights },
    { name: 'lora', description: 'LoRA r=8 on all linear layers of the base model', model: base, method: { kind: 'lora', rank: 8, alpha: 16, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] }, lr: DEMO_LR.lora },
  ];
  // Training runs in an engine process while this process evaluates: on a 2-core machine the
  // two overlap. The base and the untrained expansion are scored first, each tuned model as
  // soon as its training ends; the comparison then reads the stored results.
  const evalOptions = { limit: o.limit ?? undefined, batch: 8, signal: o.signal, log };
  const trainOne = async (m: DemoMethod): Promise<DemoResult['runs'][number]> => {
    if (o.signal?.aborted) throw new BlocklabError('the demo was stopped');
    log(`training ${m.name}: ${m.description} (${steps} steps × ${batch} × ${seq} tokens, lr ${m.lr})`);
    const job: TrainJob = {
      ...TRAIN_DEFAULTS,
      model: m.model,
      data: { paths: [join(demoDir(), 'corpora', 'code', 'train.jsonl')] },
      out: join(out, `run-${m.name}`),
      method: m.method,
      steps,
      batch,
      seq,
      lr: m.lr,
      warmup: Math.max(1, Math.round(steps / 10)),
      seed,
      adamw: DEFAULT_ADAMW,
      evalEvery: Math.max(1, Math.round(steps / 4)),
      evalBatches: 4,
      keepCheckpoints: 1,
      cacheDir: join(out, 'cache'),
      resume: false,
    };
    const handle = startJob({ kind: 'train', train: job }, { store: o.store, events: o.events, name: `demo ${m.name}` });
    const onAbort = () => handle.cancel();
    o.signal?.addEventListener('abort', onAbort);
    const outcome = await handle.done;
    o.signal?.removeEventListener('abort', onAbort);
    if (!('result' in outcome)) throw new BlocklabError(`demo training "${m.name}" failed: ${outcome.error}`);
    if (outcome.status !== 'completed') throw new BlocklabError('the demo was stopped');
    const r = outcome.result as Record<string, number | string | null>;
    log(`trained ${m.name}: loss ${Number(r.firstLoss).toFixed(3)} → ${Number(r.lastLoss).toFixed(3)} in ${Math.round(Number(r.seconds))} s`);
    return {
      name: m.name,
      runId: outcome.runId,
      model: String(r.model),
      firstLoss: r.firstLoss as number | null,
      lastLoss: r.lastLoss as number | null,
      valLoss: r.valLoss as number | null,
      tokensPerSecond: r.tokensPerSecond as number | null,
      seconds: r.seconds as number | null,
      trainableParams: r.trainableParams as number | null,
    };
  };
  const trainings: Promise<DemoResult['runs'][number]>[] = [];
  let previous: Promise<unknown> = Promise.resolve();
  for (const m of methods) {
    const p = previous.then(() => trainOne(m));
    p.catch(() => undefined); // awaited below; a failure is reported there
    trainings.push(p);
    previous = p;
  }
  // (the untrained expansion is not evaluated: its identity check already showed its logits
  // equal the base model's, max |Δlogit| in the report's lineage)
  log('evaluating the base model while training runs');
  await runEval(o.store, { ...evalOptions, models: [base], benchmarks: DEMO_BENCHMARKS, name: 'demo evaluation: base' });
  const runs: DemoResult['runs'] = [];
  const runIds: number[] = [];
  for (const p of trainings) {
    const r = await p;
    runs.push(r);
    if (r.runId !== null) runIds.push(r.runId);
    await runEval(o.store, { ...evalOptions, models: [r.model], benchmarks: DEMO_BENCHMARKS, name: `demo evaluation: ${r.name}` });
  }

  // --- the comparison, from the stored results
  const tuned = runs.map((r) => r.model);
  const compare = await compareForgetting(o.store, base, tuned, DEMO_BENCHMARKS, { ...evalOptions, name: 'demo comparison' });

  // --- report
  const nameOf = new Map<string, string>([
    [resolve(base), 'base'],
    ...runs.map((r) => [resolve(r.model), r.name] as [string, string]),
  ]);
  const label = (p: string) => nameOf.get(resolve(p)) ?? checkpointLabel(p);
  const forgetting = forgettingFromCompare(compare, label);
  const data = buildRunReport(o.store, runIds, {
    title: 'Blocklab demo: block expansion vs. full fine-tuning, LoRA and top stacking',
    forgetting,
    notes: demoNotes(compare, runs, steps * batch * seq, label),
  });
  const report = await writeReport(data, join(out, 'report'), { pdf: o.pdf ?? true });
  return { out, tokensPerMethod: steps * batch * seq, runs, compare: relabelCompare(compare, label), report, seconds: (performance.now() - started) / 1000 };
}

/** What the table says, in words, computed from the numbers (no fixed claims). */
export function demoNotes(c: CompareReport, runs: DemoResult['runs'], tokens: number, label: (p: string) => string): string[] {
  const notes = [
    `Every method trained on the same ${tokens.toLocaleString('en-US')} tokens of Python code (the new domain), from a base model pretrained only on general English. ` +
      'Gain is the improvement on the code benchmarks; forgetting is the loss on the general-English ones (positive = worse). ' +
      "Before training, both expanded models computed exactly the base model's logits (the identity check in the lineage above).",
  ];
  const trained = new Set(runs.map((r) => label(r.model)));
  // averages within one metric family only, each with its standard error; a winner only beyond the combined standard error
  const keep = (ck: string) => trained.has(label(ck));
  const summary = summarizeForgetting({
    checkpoints: c.checkpoints.filter(keep).map(label),
    rows: c.rows.map((r) => ({ ...r, checkpoints: r.checkpoints.filter((v) => keep(v.checkpoint)).map((v) => ({ ...v, checkpoint: label(v.checkpoint) })) })),
  });
  for (const role of ['new', 'old'] as const) {
    const ms = summary.means.filter((m) => m.role === role);
    if (ms.length === 0) continue;
    const families = [...new Set(ms.map((m) => m.family))];
    notes.push(
      `Mean ${role === 'new' ? 'gain on the new domain' : 'forgetting of the old domain'}, within each metric family: ` +
        families.map((f) => `${FAMILY_INFO[f].label}: ` + ms.filter((m) => m.family === f).map((m) => `**${m.checkpoint}** ${formatFamilyMean(m)}`).join(', ')).join('; ') +
        '.',
    );
  }
  notes.push(...summary.verdicts.map((v) => v.statement));
  const noisy: string[] = [];
  for (const row of c.rows) {
    if (row.base.stderr === null) continue;
    const within = row.checkpoints.filter((v) => trained.has(label(v.checkpoint))).every((v) => v.delta === null || Math.abs(v.delta) <= Math.max(row.base.stderr ?? 0, v.stderr ?? 0));
    if (within) noisy.push(row.benchmark);
  }
  if (noisy.length > 0) {
    notes.push(
      `On ${noisy.join(' and ')} no method moved the score by more than one standard error: at this model size those tasks are close to chance, ` +
        'so the differences there are noise, and the perplexity benchmarks carry the signal.',
    );
  }
  notes.push(
    'For reference, the paper (Wu et al. 2024, Table 5) found that added blocks gained about as much on the new domain as full fine-tuning while forgetting less, ' +
      'that LoRA forgot little but also gained little, and that stacking all new blocks at the bottom collapsed. ' +
      'This miniature is a 4-block model with under a million parameters, trained for a minute per method on a CPU: a demonstration of the pipeline, not a replication.',
  );
  return notes;
}

/** The comparison with checkpoints named by `label` instead of their paths (for printing). */
export function relabelCompare(c: CompareReport, label: (p: string) => string): CompareReport {
  return {
    ...c,
    base: label(c.base),
    checkpoints: c.checkpoints.map(label),
    rows: c.rows.map((r) => ({ ...r, checkpoints: r.checkpoints.map((v) => ({ ...v, checkpoint: label(v.checkpoint) })) })),
    summary: c.summary.map((x) => ({ ...x, checkpoint: label(x.checkpoint) })),
    forgetting: summarizeForgetting({
      checkpoints: c.checkpoints.map(label),
      rows: c.rows.map((r) => ({ ...r, checkpoints: r.checkpoints.map((v) => ({ ...v, checkpoint: label(v.checkpoint) })) })),
    }),
  };
}
