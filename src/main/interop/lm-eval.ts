/**
 * lm-evaluation-harness's files, both ways (EleutherAI/lm-evaluation-harness):
 *
 * Out — `blocklab eval … --output-path DIR [--log-samples]` writes what `lm_eval --output_path DIR
 * [--log_samples]` writes (lm_eval/loggers/evaluation_tracker.py): per model,
 * DIR/<model name sanitized>/results_<date>.json — the EvalResults of lm_eval/result_schema.py:
 * "results" per task {"name", "alias", "sample_len", "acc,none", "acc_stderr,none", …},
 * "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples"
 * {"original", "effective"}, "config", "date", the model identity, "task_hashes" — and, with
 * samples, samples_<task>_<date>.jsonl: one line per document, {"doc_id", "doc", "target",
 * "arguments": {"gen_args_N": {"arg_0": context, "arg_1": continuation}}, "resps" and
 * "filtered_resps" (str()-ed as sanitize_list does: ["-1.25", "False"] per choice), "filter",
 * "metrics", "doc_hash", "prompt_hash", "target_hash", and each metric's value}, so any number
 * can be checked line by line. The perplexities' standard errors are "N/A", as the harness
 * writes them; acc/acc_norm/exact_match carry the standard error of the mean, as it does.
 *
 * In — `blocklab import-eval results.json --model DIR`: a harness results file becomes that
 * checkpoint's stored results (with samples_*.jsonl beside it, bits per byte gets the standard
 * error the harness leaves out), so forgetting charts can use evaluations done on a cluster:
 * `--bench lm-eval:TASK` names them.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { higherIsBetter, type BenchmarkKind, type BenchmarkRole } from '../../shared/benchmarks.js';
import { writeFileAtomically } from '../engine/atomic.js';
import { bitsPerByteStderr, type Benchmark, type BenchmarkScores, type ItemDetail } from '../engine/benchmarks.js';
import { openCheckpoint } from '../engine/checkpoint.js';
import { BlocklabError } from '../engine/errors.js';
import { weightsFingerprint } from '../engine/eval.js';
import { registerCheckpointDir } from '../jobs/supervisor.js';
import type { ExperimentStore } from '../store/index.js';
import { registerBenchmark, saveEvalResults } from '../store/evals.js';

// ---------------------------------------------------------------------------------------------
// Python's spellings

/** Python's repr() of a float (what str() and json.dumps write): 1.0, 1e-05, -0.0, 1.5e+16. */
export function pyFloat(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mant, expText] = x.toExponential().split('e'); // shortest round-trip digits
  const exp = Number(expText);
  const neg = mant.startsWith('-');
  const digits = mant.replace('-', '').replace('.', '');
  if (exp >= -4 && exp < 16) {
    let s: string;
    if (exp >= digits.length - 1) s = digits + '0'.repeat(exp - digits.length + 1) + '.0';
    else if (exp >= 0) s = `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
    else s = `0.${'0'.repeat(-exp - 1)}${digits}`;
    return (neg ? '-' : '') + s;
  }
  const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${neg ? '-' : ''}${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
}

/** json.dumps(v, indent=2, ensure_ascii=False) for the JSON values of a task document. */
function pyDumps(v: unknown, level = 0): string {
  const pad = '  '.repeat(level + 1);
  const end = '  '.repeat(level);
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : pyFloat(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'string') return JSON.stringify(v); // escapes the control characters as json.dumps does
  if (Array.isArray(v)) return v.length === 0 ? '[]' : `[\n${v.map((x) => pad + pyDumps(x, level + 1)).join(',\n')}\n${end}]`;
  const keys = Object.keys(v as object);
  return keys.length === 0 ? '{}' : `{\n${keys.map((k) => `${pad}${JSON.stringify(k)}: ${pyDumps((v as Record<string, unknown>)[k], level + 1)}`).join(',\n')}\n${end}}`;
}

/** Python's datetime.now().isoformat(): local time with microseconds, no zone. */
function pyIsoNow(): string {
  const d = new Date();
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds() * 1000, 6)}`;
}

/** lm_eval.utils.hash_string */
export function hashString(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}

/** lm_eval.utils.sanitize_model_name */
export function sanitizeModelName(name: string): string {
  return name.replace(/["<>:/|\\?*[\]]+/g, '__');
}

/** lm_eval.utils.sanitize_task_name */
export function sanitizeTaskName(name: string): string {
  return name.replace(/[^\p{L}\p{N}_]/gu, '_');
}

// ---------------------------------------------------------------------------------------------
// Writing

const OUTPUT_TYPE: Record<BenchmarkKind, string> = { multiple_choice: 'multiple_choice', perplexity: 'loglikelihood_rolling', generation: 'generate_until' };
/** The harness's metrics of each kind (token_perplexity is Blocklab's own and is left out). */
const HARNESS_METRICS: Record<BenchmarkKind, readonly string[]> = {
  multiple_choice: ['acc', 'acc_norm'],
  perplexity: ['word_perplexity', 'byte_perplexity', 'bits_per_byte'],
  generation: ['exact_match'],
};
const AGGREGATION: Record<string, string> = { acc: 'mean', acc_norm: 'mean', exact_match: 'mean', word_perplexity: 'weighted_perplexity', byte_perplexity: 'weighted_perplexity', bits_per_byte: 'bits_per_byte' };

export interface HarnessTaskEntry {
  bench: Benchmark;
  shots: number;
  limit: number | null;
  /** the metrics as computed (or stored) */
  metrics: { metric: string; value: number | null; stderr: number | null }[];
  n: number;
  /** per-document details, for samples (absent for a result reused from the store) */
  details?: ItemDetail[];
}

/** One task's "results" entry, as _compute_task_aggregations writes it. */
function taskResults(name: string, e: HarnessTaskEntry): Record<string, unknown> {
  const out: Record<string, unknown> = { name, alias: name, sample_len: e.n };
  for (const metric of HARNESS_METRICS[e.bench.kind]) {
    const m = e.metrics.find((x) => x.metric === metric);
    out[`${metric},none`] = m?.value ?? null;
    // the harness has no standard error for perplexity aggregations (stderr_for_metric → None)
    out[`${metric}_stderr,none`] = e.bench.kind === 'perplexity' || m?.stderr === null || m?.stderr === undefined ? 'N/A' : m.stderr;
  }
  return out;
}

function taskConfig(name: string, e: HarnessTaskEntry): Record<string, unknown> {
  const h = e.bench.header;
  return {
    task: name,
    dataset_path: 'json',
    dataset_kwargs: { data_files: { test: e.bench.file } },
    test_split: 'test',
    output_type: OUTPUT_TYPE[e.bench.kind],
    ...(e.bench.kind === 'multiple_choice' ? { doc_to_text: '{{context}}', doc_to_target: '{{gold}}', doc_to_choice: '{{choices}}' } : {}),
    ...(e.bench.kind === 'perplexity' ? { doc_to_text: '', doc_to_target: '{{text}}' } : {}),
    ...(e.bench.kind === 'generation'
      ? { doc_to_text: '{{prompt}}', doc_to_target: '{{answer}}', generation_kwargs: { until: h.until ?? [h.fewshot_delimiter], do_sample: false, temperature: 0.0, max_gen_toks: h.max_gen_tokens } }
      : {}),
    description: '',
    target_delimiter: h.target_delimiter,
    fewshot_delimiter: h.fewshot_delimiter,
    num_fewshot: e.shots,
    metric_list: HARNESS_METRICS[e.bench.kind].map((metric) => ({ metric, aggregation: AGGREGATION[metric], higher_is_better: higherIsBetter(metric) })),
    repeats: 1,
    should_decontaminate: false,
    metadata: { version: 1.0, blocklab: { domain: h.domain, role: h.role } },
  };
}

/** The JSON of a task document, with Python's float spellings: the doc_hash the harness computes over it. */
function docHash(doc: unknown): string {
  return hashString(pyDumps(doc));
}

/** One samples_*.jsonl line per document, as evaluate() builds it and save_results_samples sanitises it. */
export function sampleLines(e: HarnessTaskEntry): string[] {
  const lines: string[] = [];
  const details = e.details ?? [];
  details.forEach((d, i) => {
    const doc = e.bench.items[i] as unknown as Record<string, unknown>;
    let sample: Record<string, unknown>;
    if (d.kind === 'multiple_choice') {
      const choices = (doc as { choices: string[] }).choices;
      const delim = e.bench.header.target_delimiter;
      const target = d.gold;
      sample = {
        doc_id: i,
        doc,
        target: String(target),
        arguments: Object.fromEntries(choices.map((c, j) => [`gen_args_${j}`, { arg_0: d.context, arg_1: `${delim}${c}` }])),
        resps: d.lls.map((ll, j) => [[pyFloat(ll), d.greedy[j] ? 'True' : 'False']]),
        filtered_resps: d.lls.map((ll, j) => [pyFloat(ll), d.greedy[j] ? 'True' : 'False']),
        filter: 'none',
        metrics: ['acc', 'acc_norm'],
        doc_hash: docHash(doc),
        prompt_hash: hashString(d.context),
        target_hash: hashString(String(target)),
        acc: f(d.pred === target ? 1 : 0),
        acc_norm: f(d.predNorm === target ? 1 : 0),
      };
    } else if (d.kind === 'perplexity') {
      const text = (doc as { text: string }).text;
      sample = {
        doc_id: i,
        doc,
        target: text,
        arguments: { gen_args_0: { arg_0: text } },
        resps: [[pyFloat(d.ll)]],
        filtered_resps: [pyFloat(d.ll)],
        filter: 'none',
        metrics: ['word_perplexity', 'byte_perplexity', 'bits_per_byte'],
        doc_hash: docHash(doc),
        prompt_hash: hashString(text),
        target_hash: hashString(text),
        word_perplexity: [f(d.ll), d.words],
        byte_perplexity: [f(d.ll), d.bytes],
        bits_per_byte: [f(d.ll), d.bytes],
      };
    } else {
      const h = e.bench.header;
      sample = {
        doc_id: i,
        doc,
        target: d.answer,
        arguments: { gen_args_0: { arg_0: d.context, arg_1: { until: d.until, do_sample: false, temperature: f(0), max_gen_toks: h.max_gen_tokens } } },
        resps: [[d.output]],
        filtered_resps: [d.extracted],
        filter: 'none',
        metrics: ['exact_match'],
        doc_hash: docHash(doc),
        prompt_hash: hashString(d.context),
        target_hash: hashString(d.answer),
        exact_match: f(d.correct ? 1 : 0),
      };
    }
    lines.push(pyJsonLine(sample));
  });
  return lines;
}

/** A number Python holds as a float (written 1.0, not 1). */
class PyF {
  constructor(readonly v: number) {}
}
const f = (v: number) => new PyF(v);

/** json.dumps(sample, ensure_ascii=False): ", " and ": " separators, Python's float spelling. */
function pyJsonLine(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (v instanceof PyF) return Number.isFinite(v.v) ? pyFloat(v.v) : v.v > 0 ? 'Infinity' : v.v < 0 ? '-Infinity' : 'NaN';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : pyFloat(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(pyJsonLine).join(', ')}]`;
  return `{${Object.entries(v as object).map(([k, x]) => `${JSON.stringify(k)}: ${pyJsonLine(x)}`).join(', ')}}`;
}

export interface HarnessOutput {
  resultsFile: string;
  sampleFiles: string[];
}

/**
 * Writes the harness's results file (and samples) for one model under DIR, as EvaluationTracker
 * does: DIR/<sanitized model>/results_<date>.json. Each file is written atomically.
 */
export async function writeHarnessOutput(
  dir: string,
  o: { model: string; entries: HarnessTaskEntry[]; logSamples: boolean; batchSize: number; device: string | null; seed: number; startedAt: number; limit: number | null },
): Promise<HarnessOutput> {
  const folder = join(resolve(dir), sanitizeModelName(o.model));
  await mkdir(folder, { recursive: true });
  const dateId = pyIsoNow().replace(/:/g, '-'); // datetime.now().isoformat().replace(":", "-")
  const taskNames = o.entries.map((e) => e.bench.header.name);
  const sampleFiles: string[] = [];
  const taskHashes: Record<string, string> = {};
  if (o.logSamples) {
    for (const e of o.entries) {
      const name = e.bench.header.name;
      const lines = sampleLines(e);
      // evaluation_tracker: hash over each sample's doc_hash + prompt_hash + target_hash
      taskHashes[name] = hashString(lines.map((l) => JSON.parse(l) as Record<string, string>).map((s) => s.doc_hash + s.prompt_hash + s.target_hash).join(''));
      const file = join(folder, `samples_${sanitizeTaskName(name)}_${dateId}.jsonl`);
      await writeFileAtomically(file, lines.length ? lines.join('\n') + '\n' : '', { exclusive: true });
      sampleFiles.push(file);
    }
  }
  const sorted = <T>(m: Record<string, T>) => Object.fromEntries(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const byTask = <T>(f: (e: HarnessTaskEntry, name: string) => T) => Object.fromEntries(o.entries.map((e) => [e.bench.header.name, f(e, e.bench.header.name)]));
  const results = {
    results: byTask((e, n) => taskResults(n, e)),
    group_subtasks: Object.fromEntries(taskNames.map((n) => [n, [] as string[]])),
    configs: sorted(byTask((e, n) => taskConfig(n, e))),
    versions: sorted(byTask(() => 1.0)),
    'n-shot': sorted(byTask((e) => e.shots)),
    higher_is_better: sorted(byTask((e) => Object.fromEntries(HARNESS_METRICS[e.bench.kind].map((m) => [m, higherIsBetter(m)])))),
    'n-samples': byTask((e) => ({ original: e.bench.items.length, effective: e.n })),
    config: {
      model: 'blocklab',
      model_args: `pretrained=${o.model}`,
      batch_size: o.batchSize,
      batch_sizes: [],
      device: o.device,
      use_cache: null,
      limit: o.limit,
      bootstrap_iters: 0,
      gen_kwargs: null,
      random_seed: 0,
      numpy_seed: 1234,
      torch_seed: 1234,
      fewshot_seed: o.seed,
    },
    git_hash: null,
    date: o.startedAt / 1000,
    task_hashes: taskHashes,
    model_source: 'blocklab',
    model_name: o.model,
    model_name_sanitized: sanitizeModelName(o.model),
    system_instruction: null,
    system_instruction_sha: null,
    fewshot_as_multiturn: false,
    chat_template: null,
    chat_template_sha: null,
    start_time: o.startedAt / 1000,
    end_time: Date.now() / 1000,
    total_evaluation_time_seconds: String((Date.now() - o.startedAt) / 1000),
  };
  const resultsFile = join(folder, `results_${dateId}.json`);
  await writeFileAtomically(resultsFile, JSON.stringify(results, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2), { exclusive: true });
  return { resultsFile, sampleFiles };
}

// ---------------------------------------------------------------------------------------------
// Reading

const MAX_RESULTS_BYTES = 64 * 1024 * 1024;
const MAX_SAMPLES_BYTES = 1024 * 1024 * 1024;

export const HarnessResultsSchema = z.looseObject({
  results: z.record(z.string(), z.record(z.string(), z.unknown())),
  group_subtasks: z.record(z.string(), z.array(z.string())).optional(),
  configs: z.record(z.string(), z.record(z.string(), z.unknown())).optional(),
  versions: z.record(z.string(), z.unknown()).optional(),
  'n-shot': z.record(z.string(), z.unknown()).optional(),
  'n-samples': z.record(z.string(), z.union([z.looseObject({ original: z.number().optional(), effective: z.number().optional() }), z.number()])).optional(),
  config: z.record(z.string(), z.unknown()).optional(),
});

const KIND_OF: [RegExp, BenchmarkKind][] = [
  [/^(acc|acc_norm)$/, 'multiple_choice'],
  [/^(bits_per_byte|word_perplexity|byte_perplexity)$/, 'perplexity'],
  [/^exact_match$/, 'generation'],
];

export interface ImportEvalOptions {
  model: string;
  /** tasks of the new domain (role "new"); the others are "old" (the domain the model knew) */
  newTasks?: string[];
  /** the domain tag of the new tasks (default "new"); old ones are "general" */
  domain?: string;
  name?: string;
}

export interface ImportEvalResult {
  runId: number;
  checkpointId: number;
  tasks: { task: string; benchmark_key: string; kind: BenchmarkKind; role: BenchmarkRole; n: number; metrics: Record<string, { value: number | null; stderr: number | null }> }[];
  skipped: { task: string; reason: string }[];
}

/** The per-document (loglikelihood, bytes) of a perplexity task from its samples file, if there is one beside the results. */
async function samplesBitsPerByteStderr(resultsFile: string, task: string): Promise<number | null> {
  const dir = dirname(resultsFile);
  const m = /^results_(.+)\.json$/.exec(basename(resultsFile));
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return null;
  }
  const wanted = m ? `samples_${sanitizeTaskName(task)}_${m[1]}.jsonl` : null;
  const file = names.find((n) => n === wanted) ?? names.filter((n) => n.startsWith(`samples_${sanitizeTaskName(task)}_`) && n.endsWith('.jsonl')).sort().pop();
  if (!file) return null;
  const path = join(dir, file);
  if ((await stat(path)).size > MAX_SAMPLES_BYTES) return null;
  const lls: number[] = [];
  const bytes: number[] = [];
  for (const [i, line] of (await readFile(path, 'utf8')).split('\n').entries()) {
    if (!line.trim()) continue;
    let s: { filter?: string; bits_per_byte?: unknown };
    try {
      s = JSON.parse(line);
    } catch (e) {
      throw new BlocklabError(`line ${i + 1} is not valid JSON (${(e as Error).message})`, { file: path });
    }
    if (s.filter !== undefined && s.filter !== 'none') continue;
    const v = s.bits_per_byte;
    if (Array.isArray(v) && typeof v[0] === 'number' && typeof v[1] === 'number') {
      lls.push(v[0]);
      bytes.push(v[1]);
    }
  }
  return bitsPerByteStderr(lls, bytes);
}

/** Imports a harness results file as the evaluation of checkpoint `model`. */
export async function importHarnessResults(store: ExperimentStore, resultsFile: string, o: ImportEvalOptions): Promise<ImportEvalResult> {
  store.assertWritable('importing evaluation results');
  const file = resolve(resultsFile);
  let text: string;
  try {
    const s = await stat(file);
    if (s.size > MAX_RESULTS_BYTES) throw new BlocklabError(`is ${s.size} bytes; a results file is far smaller — is it the samples file?`, { file });
    text = await readFile(file, 'utf8');
  } catch (e) {
    if (e instanceof BlocklabError) throw e;
    throw new BlocklabError(`cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)}); give the results_<date>.json that lm_eval --output_path wrote`, { file });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text.replace(/(?<=[:\[,]\s*)(-?Infinity|NaN)(?=\s*[,}\]])/g, 'null'));
  } catch (e) {
    throw new BlocklabError(`is not valid JSON (${(e as Error).message})`, { file });
  }
  const parsed = HarnessResultsSchema.safeParse(raw);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new BlocklabError(`is not an lm-evaluation-harness results file: ${i?.path.join('.') || 'the document'} ${i?.message}; expected {"results": {"task": {"acc,none": …}}, …}`, { file });
  }
  const h = parsed.data;
  await openCheckpoint(o.model); // a missing or broken folder fails before anything is recorded
  const checkpointId = await registerCheckpointDir(store, o.model, 'import');
  const fingerprint = await weightsFingerprint(o.model);
  const newTasks = new Set(o.newTasks ?? []);
  const groups = h.group_subtasks ?? {};
  const tasks: ImportEvalResult['tasks'] = [];
  const skipped: ImportEvalResult['skipped'] = [];
  const unknownNew = [...newTasks].filter((t) => !(t in h.results));
  if (unknownNew.length) throw new BlocklabError(`has no task ${unknownNew.map((t) => `"${t}"`).join(', ')} (--new); its tasks are ${Object.keys(h.results).join(', ')}`, { file });

  const runId = store.createRun({
    kind: 'eval',
    config: {
      imported: { from: file, format: 'lm-evaluation-harness', model_args: h.config?.model_args ?? null },
      models: [{ path: resolve(o.model), checkpoint_id: checkpointId, fingerprint }],
      benchmarks: [] as string[],
    },
    baseCheckpointId: checkpointId,
    totalSteps: Object.keys(h.results).length,
    name: o.name ?? `lm-eval import: ${basename(file)}`,
  });
  try {
    for (const [task, entry] of Object.entries(h.results)) {
      if ((groups[task] ?? []).length > 0) {
        skipped.push({ task, reason: 'a group aggregate (its subtasks are imported one by one)' });
        continue;
      }
      const metrics = new Map<string, { value: number | null; stderr: number | null }>();
      for (const [key, value] of Object.entries(entry)) {
        const m = /^(.+),(.+)$/.exec(key);
        if (!m || m[1].endsWith('_stderr')) continue;
        const [, metric, filter] = m;
        const stderrRaw = entry[`${metric}_stderr,${filter}`];
        const name = filter === 'none' ? metric : `${metric},${filter}`;
        metrics.set(name, { value: typeof value === 'number' && Number.isFinite(value) ? value : null, stderr: typeof stderrRaw === 'number' && Number.isFinite(stderrRaw) ? stderrRaw : null });
      }
      const kind = KIND_OF.find(([re]) => [...metrics.keys()].some((k) => re.test(k.split(',')[0])))?.[1];
      if (!kind) {
        skipped.push({ task, reason: `its metrics (${[...metrics.keys()].join(', ') || 'none'}) are none Blocklab compares (acc, acc_norm, exact_match, perplexities, bits_per_byte)` });
        continue;
      }
      if (kind === 'perplexity' && metrics.get('bits_per_byte')?.stderr === null) {
        const se = await samplesBitsPerByteStderr(file, task);
        if (se !== null) metrics.get('bits_per_byte')!.stderr = se;
      }
      const nRaw = h['n-samples']?.[task];
      const n = typeof nRaw === 'number' ? nRaw : (nRaw?.effective ?? (typeof entry.sample_len === 'number' ? entry.sample_len : 0));
      const shots = typeof h['n-shot']?.[task] === 'number' ? (h['n-shot'][task] as number) : 0;
      const config = h.configs?.[task] ?? { task, version: h.versions?.[task] ?? null };
      const contentHash = hashString(JSON.stringify(config));
      const role: BenchmarkRole = newTasks.has(task) ? 'new' : 'old';
      const domain = role === 'new' ? (o.domain ?? 'new') : 'general';
      const limit = typeof h.config?.limit === 'number' ? h.config.limit : null;
      const key = `lm-eval:${task}@${contentHash.slice(0, 12)}/${shots}shot${limit !== null ? `/limit${limit}` : ''}`;
      const benchmarkId = registerBenchmark(store, {
        name: key,
        kind,
        domain,
        path: file,
        contentHash,
        info: { display_name: task, role, shots, limit, items: n, source: 'lm-eval', metrics: [...metrics.keys()], version: h.versions?.[task] ?? null },
      });
      saveEvalResults(store, { runId, checkpointId, benchmarkId, metrics: [...metrics].map(([metric, v]) => ({ metric, value: v.value, stderr: v.stderr, nItems: n })) });
      tasks.push({ task, benchmark_key: key, kind, role, n, metrics: Object.fromEntries(metrics) });
    }
  } catch (e) {
    store.finishRun(runId, { status: 'failed', error: (e as Error).message });
    throw e;
  }
  if (tasks.length === 0) {
    store.finishRun(runId, { status: 'failed', error: 'no task could be imported' });
    throw new BlocklabError(`holds no task Blocklab can import (${skipped.map((s) => `${s.task}: ${s.reason}`).join('; ')})`, { file });
  }
  store.updateRun(runId, { config: { ...(store.getRun(runId)!.config as Record<string, unknown>), benchmarks: tasks.map((t) => t.benchmark_key) } });
  store.finishRun(runId, { status: 'completed', lastStep: Object.keys(h.results).length, summary: { imported: tasks.length, skipped: skipped.length } });
  return { runId, checkpointId, tasks, skipped };
}
