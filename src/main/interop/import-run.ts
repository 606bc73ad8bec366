/**
 * `blocklab import-run DIR`: what a cluster made, back in the store as a run beside local ones.
 *
 * DIR is a Hugging Face Trainer output folder (LLaMA-Factory's `output_dir`), or the folder
 * export-run wrote (its train.yaml names the output folder). Read:
 *   trainer_state.json   transformers' TrainerState (json.dumps(asdict(state), indent=2,
 *                        sort_keys=True)): global_step, max_steps, log_history — one entry per
 *                        logging step {loss, learning_rate, grad_norm, epoch, step}, per
 *                        evaluation {eval_loss, ...}, and a last one {train_loss, train_runtime, ...}
 *   all_results.json     Trainer.save_metrics: train_loss, train_runtime, eval_loss, ...
 *   train.yaml           the LLaMA-Factory settings (training_args.yaml when LLaMA Board launched it)
 *   checkpoint-N/        every saved checkpoint: full weights (config.json + safetensors) or a
 *                        PEFT adapter (adapter_config.json + adapter_model.safetensors)
 *   the final model      in DIR itself (or the adapter)
 * training_args.bin and *.bin weights are pickles: never loaded (unpickling runs code).
 *
 * The run starts from a checkpoint in the store matched by fingerprint (export-run records the
 * exported model's; a local model_name_or_path folder is fingerprinted), so the lineage holds
 * however the cluster spelled the path. Importing the same run again updates its one row.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { BlocklabError } from '../engine/errors.js';
import { weightsFingerprint } from '../engine/eval.js';
import { registerCheckpointDir } from '../jobs/supervisor.js';
import type { ExperimentStore } from '../store/index.js';
import { EXPORT_FORMAT, EXPORT_MANIFEST } from './llamafactory.js';

const MAX_JSON_BYTES = 256 * 1024 * 1024;
const MAX_YAML_BYTES = 1024 * 1024;

/** One log_history entry: numbers we know by name, anything else allowed. */
const LogEntrySchema = z.looseObject({ step: z.number().int().nonnegative() });

export const TrainerStateSchema = z.looseObject({
  global_step: z.number().int().nonnegative(),
  max_steps: z.number().int().nonnegative().optional(),
  epoch: z.number().nullable().optional(),
  log_history: z.array(LogEntrySchema),
  train_batch_size: z.number().int().nullable().optional(),
  logging_steps: z.number().nullable().optional(),
  save_steps: z.number().nullable().optional(),
});
export type TrainerState = z.infer<typeof TrainerStateSchema>;

/** log_history key → the store's metric name (the ones Blocklab's own trainer records, where they exist). */
export const LOG_METRICS: Record<string, string> = {
  loss: 'loss',
  eval_loss: 'val_loss',
  learning_rate: 'lr',
  grad_norm: 'grad_norm',
  epoch: 'epoch',
};

export interface ImportedCheckpoint {
  path: string;
  step: number | null;
  kind: 'model' | 'adapter';
  checkpointId: number;
}

export interface ImportRunResult {
  runId: number;
  /** false when this run was imported before (its row was updated) */
  created: boolean;
  outputDir: string;
  trainer: 'llamafactory' | 'hf-trainer';
  method: string;
  steps: number;
  maxSteps: number | null;
  metrics: Record<string, number>;
  firstLoss: number | null;
  lastLoss: number | null;
  valLoss: number | null;
  baseCheckpointId: number | null;
  baseMatchedBy: 'fingerprint' | 'none';
  checkpoints: ImportedCheckpoint[];
  notes: string[];
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

async function readBounded(file: string, max: number): Promise<string> {
  const s = await stat(file);
  if (s.size > max) throw new BlocklabError(`is ${s.size} bytes, more than the ${max} this file can be; is it the right file?`, { file });
  return readFile(file, 'utf8');
}

async function readJson(file: string): Promise<unknown> {
  const text = await readBounded(file, MAX_JSON_BYTES);
  try {
    // Python's json.dumps writes NaN/Infinity for non-finite floats (a diverged loss)
    return JSON.parse(text.replace(/(?<=[:\[,]\s*)(-?Infinity|NaN)(?=\s*[,}\]])/g, 'null'));
  } catch (e) {
    throw new BlocklabError(`is not valid JSON (${(e as Error).message}); the folder may still be being written`, { file });
  }
}

/** checkpoint-N folders, by step. */
async function checkpointFolders(dir: string): Promise<{ path: string; step: number }[]> {
  const out: { path: string; step: number }[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const m = /^checkpoint-(\d+)$/.exec(e.name);
    if (m && e.isDirectory()) out.push({ path: join(dir, e.name), step: Number(m[1]) });
  }
  return out.sort((a, b) => a.step - b.step);
}

/** What weights a folder holds: a model, a PEFT adapter, or why neither is usable. */
async function weightsIn(dir: string): Promise<{ kind: 'model' | 'adapter' } | { none: string }> {
  const names = await readdir(dir);
  const safetensors = names.some((n) => n.endsWith('.safetensors') && !n.startsWith('adapter_'));
  if (names.includes('config.json') && safetensors) return { kind: 'model' };
  if (names.includes('adapter_config.json') && names.includes('adapter_model.safetensors')) return { kind: 'adapter' };
  if (names.some((n) => n.endsWith('.bin') && n !== 'training_args.bin')) return { none: 'its weights are pickle .bin files, which Blocklab never loads (save with safe_serialization, the Trainer default)' };
  if (names.some((n) => /^global_step\d+$/.test(n))) return { none: 'it holds only DeepSpeed ZeRO shards (global_stepN/); convert them with zero_to_fp32.py --safe_serialization' };
  return { none: 'it holds no safetensors weights' };
}

interface Located {
  outputDir: string;
  yamlFile: string | null;
  manifest: { base_fingerprint?: string; method?: unknown; source_model?: string } | null;
  manifestDir: string | null;
}

/** Finds the Trainer output folder and the YAML / export manifest that describe it. */
async function locate(dir: string): Promise<Located> {
  const root = resolve(dir);
  if (!(await isDir(root))) throw new BlocklabError('no such folder; give a LLaMA-Factory / Hugging Face Trainer output folder (with trainer_state.json)', { file: root });
  const readManifest = async (d: string) => {
    if (!(await isFile(join(d, EXPORT_MANIFEST)))) return null;
    const m = (await readJson(join(d, EXPORT_MANIFEST))) as { format?: unknown };
    return m && m.format === EXPORT_FORMAT ? (m as Located['manifest']) : null;
  };
  const yamlIn = async (d: string) => {
    for (const n of ['train.yaml', 'training_args.yaml']) if (await isFile(join(d, n))) return join(d, n);
    return null;
  };
  // an export folder: train.yaml names output_dir
  const manifest = await readManifest(root);
  const rootYaml = await yamlIn(root);
  if (manifest && rootYaml) {
    const y = await readYaml(rootYaml);
    const out = typeof y.output_dir === 'string' ? y.output_dir : 'output';
    const outputDir = isAbsolute(out) ? out : join(root, out);
    if (!(await isDir(outputDir))) {
      throw new BlocklabError(`is the folder export-run wrote, but its output folder ${out}/ is not there yet; copy the cluster's ${out}/ back into it first`, { file: root });
    }
    return { outputDir, yamlFile: rootYaml, manifest, manifestDir: root };
  }
  // an output folder, maybe inside an export folder
  const parent = dirname(root);
  const parentManifest = await readManifest(parent);
  return {
    outputDir: root,
    yamlFile: rootYaml ?? (parentManifest ? await yamlIn(parent) : null),
    manifest: parentManifest,
    manifestDir: parentManifest ? parent : null,
  };
}

async function readYaml(file: string): Promise<Record<string, unknown>> {
  const text = await readBounded(file, MAX_YAML_BYTES);
  let y: unknown;
  try {
    y = parseYaml(text, { version: '1.1', maxAliasCount: 100 });
  } catch (e) {
    throw new BlocklabError(`is not valid YAML (${(e as Error).message})`, { file });
  }
  if (!y || typeof y !== 'object' || Array.isArray(y)) throw new BlocklabError('is not a YAML mapping of settings', { file });
  return y as Record<string, unknown>;
}

function methodOf(y: Record<string, unknown> | null, manifest: Located['manifest']): string {
  const m = manifest?.method as { kind?: string; k?: number } | undefined;
  if (m?.kind) return m.kind === 'last' ? `last:${m.k}` : m.kind;
  if (!y) return 'unknown';
  if (y.finetuning_type === 'freeze') return y.use_llama_pro ? 'blocks' : `freeze:${y.freeze_trainable_layers ?? 2}`;
  return typeof y.finetuning_type === 'string' ? y.finetuning_type : 'lora'; // LLaMA-Factory's default
}

/** The store checkpoint whose recorded fingerprint is `fp`: the one at `preferPath` if several hold the same weights, else the newest. */
function checkpointByFingerprint(store: ExperimentStore, fp: string, preferPath?: string): number | null {
  const rows = store.listCheckpoints().filter((c) => c.info?.fingerprint === fp);
  const preferred = preferPath ? rows.find((c) => c.path === resolve(preferPath)) : undefined;
  return preferred?.id ?? (rows.length ? rows[rows.length - 1].id : null);
}

/**
 * Imports a LLaMA-Factory / HF Trainer output folder as a training run. Refuses, naming the
 * file, what it cannot read; a second import of the same run updates the same row.
 */
export async function importRun(store: ExperimentStore, dir: string, opts: { name?: string; log?: (line: string) => void } = {}): Promise<ImportRunResult> {
  store.assertWritable('importing a run');
  const log = opts.log ?? (() => undefined);
  const loc = await locate(dir);
  const notes: string[] = [];
  const checkpoints = await checkpointFolders(loc.outputDir);

  // trainer_state.json: the final one, else the newest checkpoint's
  let stateFile = join(loc.outputDir, 'trainer_state.json');
  let finished = true;
  if (!(await isFile(stateFile))) {
    finished = false;
    const withState = [];
    for (const c of checkpoints) if (await isFile(join(c.path, 'trainer_state.json'))) withState.push(c);
    if (withState.length === 0) {
      throw new BlocklabError(
        'is not a LLaMA-Factory / Hugging Face Trainer output folder: there is no trainer_state.json in it or in a checkpoint-N/ folder; give the output_dir of the run',
        { file: loc.outputDir },
      );
    }
    stateFile = join(withState[withState.length - 1].path, 'trainer_state.json');
    notes.push(`no final trainer_state.json: the run stopped (or is still running); read ${basename(dirname(stateFile))}/trainer_state.json`);
  }
  const parsedState = TrainerStateSchema.safeParse(await readJson(stateFile));
  if (!parsedState.success) {
    const i = parsedState.error.issues[0];
    throw new BlocklabError(`is not a Trainer state: ${i?.path.join('.') || 'the document'} ${i?.message}; expected {"global_step": N, "log_history": [...]}`, { file: stateFile });
  }
  const state = parsedState.data;
  let allResults: Record<string, unknown> | null = null;
  if (await isFile(join(loc.outputDir, 'all_results.json'))) {
    const r = await readJson(join(loc.outputDir, 'all_results.json'));
    if (r && typeof r === 'object' && !Array.isArray(r)) allResults = r as Record<string, unknown>;
    else throw new BlocklabError('is not a JSON object of results', { file: join(loc.outputDir, 'all_results.json') });
  }
  const yaml = loc.yamlFile ? await readYaml(loc.yamlFile) : null;
  if (!yaml) notes.push('no train.yaml / training_args.yaml: the settings were not recorded (training_args.bin is a pickle and is not read)');
  const trainer = yaml ? 'llamafactory' : 'hf-trainer';

  // metrics
  const rows: { step: number; name: string; value: number }[] = [];
  for (const e of state.log_history) {
    const isTrainLog = 'loss' in e;
    for (const [key, name] of Object.entries(LOG_METRICS)) {
      if (key === 'epoch' && !isTrainLog) continue; // one epoch value per logging step
      const v = (e as Record<string, unknown>)[key];
      if (typeof v === 'number') rows.push({ step: e.step, name, value: v });
      else if (v === null && (key === 'loss' || key === 'eval_loss')) rows.push({ step: e.step, name, value: NaN });
    }
  }
  const series = (name: string) => rows.filter((r) => r.name === name);
  const loss = series('loss');
  const val = series('val_loss');
  const final = [...state.log_history].reverse().find((e) => 'train_runtime' in e) as Record<string, unknown> | undefined;
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const seconds = num(allResults?.train_runtime) ?? num(final?.train_runtime);
  const cutoff = typeof yaml?.cutoff_len === 'number' ? yaml.cutoff_len : null;
  const samplesPerSecond = num(allResults?.train_samples_per_second) ?? num(final?.train_samples_per_second);
  const method = methodOf(yaml, loc.manifest);

  // identity: the run's settings and its first log entries, wherever the folder now lies
  const importKey = createHash('sha256')
    .update(JSON.stringify({ yaml, max_steps: state.max_steps ?? null, head: state.log_history.slice(0, 20) }))
    .digest('hex');

  // the checkpoint it started from, by fingerprint
  let baseFingerprint: string | null = loc.manifest?.base_fingerprint ?? null;
  if (!baseFingerprint && typeof yaml?.model_name_or_path === 'string') {
    const local = resolve(loc.yamlFile ? dirname(loc.yamlFile) : loc.outputDir, yaml.model_name_or_path);
    if (await isFile(join(local, 'config.json'))) {
      baseFingerprint = await weightsFingerprint(local);
      if (checkpointByFingerprint(store, baseFingerprint) === null) {
        await registerCheckpointDir(store, local, 'import', { info: { fingerprint: baseFingerprint } });
      }
    }
  }
  const baseCheckpointId = baseFingerprint ? checkpointByFingerprint(store, baseFingerprint, loc.manifestDir ? join(loc.manifestDir, 'model') : undefined) : null;
  if (baseFingerprint && baseCheckpointId === null) notes.push(`the starting checkpoint (fingerprint ${baseFingerprint.slice(0, 12)}…) is not in this store, so the lineage stops here`);
  if (!baseFingerprint) notes.push('the starting checkpoint is unknown (no export manifest, and model_name_or_path is not a local folder)');

  const existing = store.listRuns({ kind: 'train' }).find((r) => (r.config as { imported?: { key?: string } } | null)?.imported?.key === importKey);
  const config = {
    imported: { key: importKey, from: loc.outputDir, trainer, state_file: stateFile, export_folder: loc.manifestDir },
    method,
    train_yaml: yaml,
    all_results: allResults,
    trainer_state: { global_step: state.global_step, max_steps: state.max_steps ?? null, epoch: state.epoch ?? null, train_batch_size: state.train_batch_size ?? null },
  };
  let runId: number;
  if (existing) {
    runId = existing.id;
    store.deleteMetrics(runId);
    store.updateRun(runId, { config, method, outDir: loc.outputDir, baseCheckpointId, totalSteps: state.max_steps ?? state.global_step, name: opts.name ?? existing.name });
    log(`run ${runId} was imported before; updating it`);
  } else {
    runId = store.createRun({
      kind: 'train',
      method,
      config,
      seed: typeof yaml?.seed === 'number' ? yaml.seed : null,
      backend: trainer === 'llamafactory' ? 'LLaMA-Factory (cluster)' : 'HF Trainer (cluster)',
      baseCheckpointId,
      outDir: loc.outputDir,
      totalSteps: state.max_steps ?? state.global_step,
      name: opts.name ?? `${method} (cluster, ${basename(loc.manifestDir ?? loc.outputDir)})`,
    });
  }
  const writer = store.metricWriter(runId);
  try {
    for (const r of rows) writer.add(r.step, r.name, r.value);
  } finally {
    writer.close();
  }

  // checkpoints: every checkpoint-N, then the final weights
  const registered: ImportedCheckpoint[] = [];
  const register = async (path: string, step: number | null) => {
    const w = await weightsIn(path);
    if ('none' in w) {
      notes.push(`${basename(path)}: not registered, ${w.none}`);
      return null;
    }
    const info: Record<string, unknown> = { step, imported_from: trainer };
    if (w.kind === 'adapter') info.adapter = true;
    const id = await registerCheckpointDir(store, path, 'train', { parentId: baseCheckpointId, runId, info });
    const c: ImportedCheckpoint = { path, step, kind: w.kind, checkpointId: id };
    registered.push(c);
    return c;
  };
  for (const c of checkpoints) await register(c.path, c.step);
  const finalCkpt = finished ? await register(loc.outputDir, state.global_step) : null;
  const result = finalCkpt ?? registered[registered.length - 1] ?? null;

  const lastOf = (xs: { value: number }[]) => (xs.length ? xs[xs.length - 1].value : null);
  const summary = {
    method,
    steps: state.global_step,
    firstLoss: loss[0]?.value ?? null,
    lastLoss: lastOf(loss),
    valLoss: lastOf(val) ?? num(allResults?.eval_loss),
    trainLoss: num(allResults?.train_loss) ?? num(final?.train_loss),
    seconds,
    tokensPerSecond: samplesPerSecond !== null && cutoff !== null ? samplesPerSecond * cutoff : null,
    model: result?.path ?? null,
    imported: true,
  };
  store.finishRun(runId, {
    status: finished && (state.max_steps === undefined || state.global_step >= state.max_steps) ? 'completed' : 'interrupted',
    error: finished ? null : 'imported from a run that had not finished (no final trainer_state.json)',
    summary,
    resultCheckpointId: result?.checkpointId ?? null,
    lastStep: state.global_step,
  });
  // the run's times are the cluster's, not the import's
  const ended = (await stat(stateFile)).mtime;
  store.updateRun(runId, { endedAt: ended.toISOString(), startedAt: new Date(ended.getTime() - (seconds ?? 0) * 1000).toISOString(), pid: null });

  const metricCounts: Record<string, number> = {};
  for (const r of rows) metricCounts[r.name] = (metricCounts[r.name] ?? 0) + 1;
  return {
    runId,
    created: !existing,
    outputDir: loc.outputDir,
    trainer,
    method,
    steps: state.global_step,
    maxSteps: state.max_steps ?? null,
    metrics: metricCounts,
    firstLoss: summary.firstLoss,
    lastLoss: summary.lastLoss,
    valLoss: summary.valLoss,
    baseCheckpointId,
    baseMatchedBy: baseCheckpointId !== null ? 'fingerprint' : 'none',
    checkpoints: registered,
    notes,
  };
}
