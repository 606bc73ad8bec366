/**
 * Evaluation on tfjs and in the experiment store: the batched scorer and the greedy generator
 * behind benchmarks.ts's interfaces, `runEval` (checkpoints × benchmarks, results stored and
 * reused), and `compareForgetting` (DESIGN.md §1: forgetting on old-domain benchmarks, gain on
 * new-domain ones, against a base checkpoint). The harness semantics live in benchmarks.ts.
 *
 * Reuse. A result is reused when the store holds every metric of the same checkpoint row
 * (path + content hash, as registerCheckpointDir records it) on the same benchmark key, AND the
 * run that computed it saw the same weights fingerprint: a sha256 over every byte of the
 * checkpoint's weights, config and tokenizer files. (The store's content hash reads only the
 * first MiB of each weight file, so a checkpoint re-tuned in place can keep it; the
 * fingerprint catches that.) The benchmark key is NAME@HASH12/Kshot[/limitN][/lenL]: the file's
 * contents (with its sidecar and few-shot split), the shots, the item limit and an explicit
 * --max-length; everything that changes a score.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  BENCHMARK_LIMITS,
  DELTA_NOTE,
  HEADLINE_METRIC,
  KIND_METRICS,
  higherIsBetter,
  type BenchmarkKind,
  type CompareReport,
  type CompareRow,
  type EvalReport,
  type EvalResult,
} from '../../shared/benchmarks.js';
import { backendReport, tf, type BackendName } from './backend.js';
import { FAMILY_INFO, formatFamilyMean, metricFamily, summarizeForgetting, type MetricFamily } from '../../shared/forgetting.js';
import { yieldToEventLoop } from './event-loop.js';
import {
  DEFAULT_FEWSHOT_SEED,
  evaluateBenchmark,
  loadBenchmark,
  loadFewshotSplit,
  requestInput,
  resolveBenchmarkSpec,
  type Benchmark,
  type EvalProgress,
  type EvalTokenizer,
  type ItemList,
  type LoglikelihoodResult,
  type TextGenerator,
  type TokenScorer,
  type BenchmarkScores,
} from './benchmarks.js';
import type { ModelConfig } from './config.js';
import { openCheckpoint } from './checkpoint.js';
import { BlocklabError } from './errors.js';
import { generate } from './generate.js';
import { loadModel, type LoadedModel } from './index.js';
import { evalTokenBudget } from './plan.js';
import { targetLogProbs, type LlamaModel } from './model.js';
import type { HfTokenizer } from './tokenizer.js';
import type { HarnessTaskEntry } from '../interop/lm-eval.js';
import { registerCheckpointDir } from '../jobs/supervisor.js';
import type { ExperimentStore } from '../store/index.js';
import { getEvalResults, listBenchmarks, registerBenchmark, saveEvalResults } from '../store/evals.js';

/** Metric names a stored (imported) benchmark holds, falling back to its kind's. */
function importedMetrics(info: Record<string, unknown> | null, kind: BenchmarkKind): string[] {
  const m = info?.metrics;
  return Array.isArray(m) && m.every((x) => typeof x === 'string') ? (m as string[]) : [...KIND_METRICS[kind]];
}

export * from './benchmarks.js';

// ---------------------------------------------------------------------------------------------
// The model behind the harness interfaces

export interface ModelScorerOptions {
  /** sequences per forward pass (default 8) */
  batch?: number;
  /** longest model input (default: max_position_embeddings) */
  maxLength?: number;
  /** most tokens (sequences × length) in one forward pass, from the memory plan (default: no limit) */
  maxTokens?: number;
  signal?: AbortSignal;
}

/**
 * Log-likelihoods from a LlamaModel, many requests per forward pass: requests sorted by input
 * length (longest first, as the harness does, so the ETA errs long), `batch` at a time,
 * right-padded to the longest of their batch. Causal attention means padding after a row's
 * last real token never changes that row's logits, so only the real positions are read.
 */
export function modelScorer(model: LlamaModel, opts: ModelScorerOptions = {}): TokenScorer {
  const batch = opts.batch ?? 8;
  const maxLength = opts.maxLength ?? model.config.maxPositionEmbeddings;
  if (!Number.isInteger(batch) || batch < 1) throw new BlocklabError(`--batch must be a whole number ≥ 1 (got ${batch})`);
  if (!Number.isInteger(maxLength) || maxLength < 1 || maxLength > model.config.maxPositionEmbeddings) {
    throw new BlocklabError(`--max-length must be between 1 and the model's max_position_embeddings (${model.config.maxPositionEmbeddings}); got ${maxLength}`);
  }
  return {
    maxLength,
    async loglikelihood(requests, onProgress) {
      const prepared = requests.map((r) => requestInput(r, maxLength));
      const order = prepared.map((_, i) => i).sort((a, b) => prepared[b].input.length - prepared[a].input.length || a - b);
      const results: LoglikelihoodResult[] = new Array(requests.length);
      const workTotal = prepared.reduce((s, p) => s + p.input.length, 0);
      let work = 0;
      let done = 0;
      for (let s = 0; s < order.length; ) {
        if (opts.signal?.aborted) throw new BlocklabError('the evaluation was cancelled');
        const longest = prepared[order[s]].input.length; // longest first
        const fit = Math.max(1, Math.min(batch, Math.floor((opts.maxTokens ?? Infinity) / longest)));
        const chunk = order.slice(s, s + fit);
        s += chunk.length;
        const B = chunk.length;
        const T = longest;
        const ids = new Int32Array(B * T); // pad id 0: it is never read
        const rowIndex: number[] = []; // flat [B·T] position predicting each target
        const targets: number[] = [];
        chunk.forEach((req, b) => {
          const { input, targets: cont } = prepared[req];
          ids.set(input, b * T);
          // the logits at position start + j predict cont[j] (the last target is not in the input)
          const start = input.length - cont.length;
          for (let j = 0; j < cont.length; j++) {
            rowIndex.push(b * T + start + j);
            targets.push(cont[j]);
          }
        });
        await yieldToEventLoop(); // a caller's IPC, timers and signals are served while evaluating
        const idT = tf.tensor2d(ids, [B, T], 'int32');
        let picked: Float32Array;
        let argmax: Int32Array;
        try {
          ({ logp: picked, argmax } = await targetLogProbs(model, idT, rowIndex, targets));
        } finally {
          idT.dispose();
        }
        let k = 0;
        for (const req of chunk) {
          const cont = prepared[req].targets;
          let ll = 0;
          let greedy = true;
          for (let j = 0; j < cont.length; j++, k++) {
            ll += picked[k];
            if (argmax[k] !== cont[j]) greedy = false;
          }
          results[req] = { ll, greedy };
          work += prepared[req].input.length;
        }
        done += B;
        onProgress?.({ done, total: requests.length, work, workTotal });
      }
      return results;
    },
  };
}

function indexOfRun(haystack: number[], needle: number[]): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** The harness's view of an HF tokenizer: bare encodes, the BOS it adds, the prefix token. */
export function evalTokenizer(tok: HfTokenizer, config: ModelConfig, dir = 'tokenizer.json'): EvalTokenizer {
  const bare = tok.encode('a', { addSpecialTokens: false });
  const full = tok.encode('a');
  const at = indexOfRun(full, bare);
  const prefixIds = at > 0 ? full.slice(0, at) : [];
  const prefixTokenId = tok.bosTokenId ?? config.bosTokenId ?? tok.eosTokenIds[0] ?? config.eosTokenIds[0];
  if (prefixTokenId === undefined || prefixTokenId === null) {
    throw new BlocklabError('has neither a BOS nor an EOS token, which log-likelihood scoring uses as the first context; set bos_token in tokenizer_config.json', { file: dir });
  }
  return { encode: (text) => tok.encode(text, { addSpecialTokens: false }), prefixIds, prefixTokenId };
}

/** Greedy generation with the KV cache (generate.ts), stopped at EOS or a stop string. */
export function modelGenerator(model: LlamaModel, tok: HfTokenizer, eosTokenIds: number[], signal?: AbortSignal): TextGenerator {
  return async ({ context, until, maxTokens }) => {
    const r = await generate(model, context, (ids) => tok.decode(ids, { skipSpecialTokens: false }), {
      temperature: 0,
      maxTokens,
      stop: until,
      eosTokenIds,
      signal,
      never: tok.undecodableIds(model.config.vocabSize),
    });
    if (r.finishReason === 'aborted') throw new BlocklabError('the evaluation was cancelled');
    return r.text;
  };
}

export interface CheckpointEvalOptions {
  shots?: number;
  limit?: number | null;
  batch?: number;
  maxLength?: number | null;
  /** most tokens in one forward pass (the memory plan's) */
  maxTokens?: number;
  seed?: number;
  fewshot?: ItemList | null;
  onProgress?: (p: EvalProgress) => void;
  signal?: AbortSignal;
}

/** Scores one loaded checkpoint on one benchmark (no store). */
export async function evaluateLoaded(loaded: LoadedModel, bench: Benchmark, opts: CheckpointEvalOptions = {}): Promise<BenchmarkScores> {
  const tok = loaded.tokenizer;
  if (!tok) throw new BlocklabError('has no tokenizer.json, which text benchmarks need; add the tokenizer files', { file: loaded.checkpoint.dir });
  const config = loaded.checkpoint.config;
  const scorer = modelScorer(loaded.model, { batch: opts.batch, maxLength: opts.maxLength ?? undefined, maxTokens: opts.maxTokens, signal: opts.signal });
  const eos = [...new Set([...config.eosTokenIds, ...tok.eosTokenIds])];
  return evaluateBenchmark(bench, {
    scorer,
    tokenizer: evalTokenizer(tok, config, loaded.checkpoint.dir),
    generator: modelGenerator(loaded.model, tok, eos, opts.signal),
    shots: opts.shots,
    limit: opts.limit,
    seed: opts.seed,
    fewshot: opts.fewshot,
    onProgress: opts.onProgress,
  });
}

// ---------------------------------------------------------------------------------------------
// Identity of what was evaluated

const FINGERPRINT_FILES = new Set([
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'chat_template.jinja',
  'chat_template.json',
  'model.safetensors.index.json',
]);

/** sha256 over the names, sizes and every byte of a checkpoint's weights, config and tokenizer files. */
export async function weightsFingerprint(dir: string): Promise<string> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => FINGERPRINT_FILES.has(n) || n.endsWith('.safetensors')).sort();
  } catch {
    throw new BlocklabError('no such folder; pass a Hugging Face checkpoint folder', { file: dir });
  }
  const h = createHash('sha256');
  for (const n of names) {
    const file = join(dir, n);
    const st = await stat(file);
    if (!st.isFile()) continue;
    h.update(`${n}\0${st.size}\0`);
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 22 })) h.update(chunk as Buffer);
  }
  return h.digest('hex');
}

export interface BenchmarkSetup {
  shots: number;
  /** null: every item */
  limit: number | null;
  /** null: the model's max_position_embeddings */
  maxLength: number | null;
}

/** The store key of a benchmark file evaluated with a setup: NAME@HASH12/Kshot[/limitN][/lenL]. */
export function benchmarkKey(name: string, contentHash: string, setup: BenchmarkSetup): string {
  let key = `${name}@${contentHash.slice(0, 12)}/${setup.shots}shot`;
  if (setup.limit !== null) key += `/limit${setup.limit}`;
  if (setup.maxLength !== null) key += `/len${setup.maxLength}`;
  return key;
}

// ---------------------------------------------------------------------------------------------
// runEval: checkpoints × benchmarks, through the store

export interface RunEvalOptions {
  /** checkpoint folders */
  models: string[];
  /** task files, or builtin:NAME */
  benchmarks: string[];
  shots?: number;
  limit?: number | null;
  batch?: number;
  maxLength?: number | null;
  /** few-shot seed (default 1234, the harness's) */
  seed?: number;
  /** recompute even when the store holds the results */
  force?: boolean;
  backend?: BackendName | 'auto';
  builtinDir?: string;
  /** a name for the run */
  name?: string;
  signal?: AbortSignal;
  /**
   * Progress within the current (checkpoint, benchmark) evaluation, with where that is in the
   * whole: `task` of `tasks` (0-based), and an ETA for all of them (null until it can be guessed).
   */
  onProgress?: (p: EvalProgress & { checkpoint: string; task: number; tasks: number; overallEtaSeconds: number | null }) => void;
  /** one line per event worth telling (loading a model, a reused result) */
  log?: (line: string) => void;
  /** write lm-evaluation-harness's results file (and, with logSamples, samples JSONL; nothing is reused then) per model under dir */
  output?: { dir: string; logSamples: boolean };
}

interface PreparedBenchmark {
  spec: string;
  /** the task file; null for results imported from lm-evaluation-harness (only stored results exist) */
  bench: Benchmark | null;
  header: { name: string; kind: BenchmarkKind; domain: string; role: 'old' | 'new' };
  /** the metrics stored for it */
  metrics: readonly string[];
  fewshot: ItemList | null;
  setup: BenchmarkSetup;
  key: string;
  id: number;
}

function checkInt(name: string, v: number | null | undefined, min: number, max: number): void {
  if (v === undefined || v === null) return;
  if (!Number.isInteger(v) || v < min || v > max) throw new BlocklabError(`${name} must be a whole number from ${min} to ${max} (got ${v})`);
}

async function prepareBenchmarks(store: ExperimentStore, opts: RunEvalOptions): Promise<PreparedBenchmark[]> {
  const out: PreparedBenchmark[] = [];
  const seen = new Set<string>();
  for (const spec of opts.benchmarks) {
    if (spec.startsWith('lm-eval:')) {
      // an lm-evaluation-harness task imported with blocklab import-eval: its newest stored setup
      const task = spec.slice('lm-eval:'.length);
      const row = listBenchmarks(store)
        .filter((r: { info: Record<string, unknown> | null }) => r.info?.source === 'lm-eval' && r.info?.display_name === task)
        .pop();
      if (!row) throw new BlocklabError(`there is no imported lm-evaluation-harness task "${task}" in the store; import a results file first (blocklab import-eval results.json --model DIR)`);
      if (seen.has(row.name)) continue;
      seen.add(row.name);
      const kind = row.kind as BenchmarkKind;
      out.push({
        spec,
        bench: null,
        header: { name: task, kind, domain: row.domain ?? 'general', role: row.info?.role === 'new' ? 'new' : 'old' },
        metrics: importedMetrics(row.info, kind),
        fewshot: null,
        setup: { shots: Number(row.info?.shots ?? 0), limit: (row.info?.limit as number | null) ?? null, maxLength: null },
        key: row.name,
        id: row.id,
      });
      continue;
    }
    const bench = await loadBenchmark(await resolveBenchmarkSpec(spec, opts.builtinDir));
    const shots = bench.kind === 'perplexity' ? 0 : (opts.shots ?? 0);
    const fewshot = shots > 0 ? await loadFewshotSplit(bench) : null;
    const limit = opts.limit && opts.limit < bench.items.length ? opts.limit : null;
    const setup: BenchmarkSetup = { shots, limit, maxLength: opts.maxLength ?? null };
    const contentHash = fewshot ? createHash('sha256').update(`${bench.contentHash}\0${fewshot.contentHash}`).digest('hex') : bench.contentHash;
    const key = benchmarkKey(bench.header.name, contentHash, setup);
    if (seen.has(key)) continue;
    seen.add(key);
    const h = bench.header;
    const id = registerBenchmark(store, {
      name: key,
      kind: bench.kind,
      domain: h.domain,
      path: bench.file,
      contentHash,
      info: {
        display_name: h.name,
        role: h.role,
        description: h.description ?? null,
        shots,
        limit,
        max_length: setup.maxLength,
        items: bench.items.length,
        fewshot_split: fewshot?.file ?? null,
        header_source: bench.headerSource,
        metrics: KIND_METRICS[bench.kind],
      },
    });
    out.push({ spec, bench, header: { name: h.name, kind: bench.kind, domain: h.domain, role: h.role }, metrics: KIND_METRICS[bench.kind], fewshot, setup, key, id });
  }
  return out;
}

interface RunConfigModel {
  path: string;
  checkpoint_id: number;
  fingerprint: string;
}

/** The fingerprint the run `runId` recorded for checkpoint `checkpointId`, if any. */
function recordedFingerprint(store: ExperimentStore, runId: number | null, checkpointId: number): string | null {
  if (runId === null) return null;
  const config = store.getRun(runId)?.config as { models?: RunConfigModel[] } | null | undefined;
  return config?.models?.find((m) => m.checkpoint_id === checkpointId)?.fingerprint ?? null;
}

/** Stored results of (checkpoint, benchmark) that can be reused, by metric, or null. */
function reusableResults(store: ExperimentStore, checkpointId: number, b: PreparedBenchmark, fingerprint: string) {
  const rows = getEvalResults(store, { checkpointId, benchmarkId: b.id });
  const byMetric = new Map(rows.map((r) => [r.metric, r]));
  for (const metric of b.metrics) {
    const r = byMetric.get(metric);
    if (!r || recordedFingerprint(store, r.runId, checkpointId) !== fingerprint) return null;
  }
  return byMetric;
}

function resultRows(
  label: string,
  checkpointId: number,
  b: PreparedBenchmark,
  values: Map<string, { value: number | null; stderr: number | null; n: number }>,
  cached: boolean,
): EvalResult[] {
  const h = b.header;
  return b.metrics.map((metric) => {
    const v = values.get(metric);
    return {
      checkpoint: label,
      checkpoint_id: checkpointId,
      benchmark: h.name,
      benchmark_id: b.id,
      benchmark_key: b.key,
      kind: h.kind,
      domain: h.domain,
      role: h.role,
      shots: b.setup.shots,
      limit: b.setup.limit,
      metric,
      value: v?.value ?? null,
      stderr: v?.stderr ?? null,
      n: v?.n ?? 0,
      cached,
    };
  });
}

/**
 * Evaluates every checkpoint on every benchmark, reusing stored results (unless `force`),
 * and records the rest: the checkpoints and benchmarks are registered, a run of kind 'eval'
 * groups the results, and each (checkpoint, benchmark, metric) is stored with its standard
 * error and item count. A model is loaded only when something is left to compute for it.
 */
export async function runEval(store: ExperimentStore, opts: RunEvalOptions): Promise<EvalReport> {
  if (opts.models.length === 0) throw new BlocklabError('give at least one checkpoint folder to evaluate');
  if (opts.benchmarks.length === 0) throw new BlocklabError('give at least one benchmark: --bench FILE.jsonl or --bench builtin:NAME');
  checkInt('--shots', opts.shots, 0, BENCHMARK_LIMITS.maxShots);
  checkInt('--limit', opts.limit, 1, BENCHMARK_LIMITS.maxItems);
  checkInt('--batch', opts.batch, 1, 4096);
  checkInt('--max-length', opts.maxLength, 2, 1 << 24);
  checkInt('--seed', opts.seed, -(2 ** 31), 2 ** 31 - 1);
  const log = opts.log ?? (() => undefined);

  const benches = await prepareBenchmarks(store, opts);
  const models: (RunConfigModel & { label: string })[] = [];
  for (const m of opts.models) {
    const path = resolve(m);
    if (models.some((x) => x.path === path)) continue;
    await openCheckpoint(path); // headers only: a missing or broken folder fails here, before the store records it
    const checkpointId = await registerCheckpointDir(store, path, 'import');
    models.push({ label: m, path, checkpoint_id: checkpointId, fingerprint: await weightsFingerprint(path) });
  }

  const runId = store.createRun({
    kind: 'eval',
    config: {
      models: models.map(({ path, checkpoint_id, fingerprint }) => ({ path, checkpoint_id, fingerprint })),
      benchmarks: benches.map((b) => ({ spec: b.spec, file: b.bench?.file ?? null, key: b.key, benchmark_id: b.id })),
      shots: opts.shots ?? 0,
      limit: opts.limit ?? null,
      batch: opts.batch ?? 8,
      max_length: opts.maxLength ?? null,
      seed: opts.seed ?? DEFAULT_FEWSHOT_SEED,
      force: opts.force ?? false,
    },
    seed: opts.seed ?? DEFAULT_FEWSHOT_SEED,
    baseCheckpointId: models[0]?.checkpoint_id ?? null,
    totalSteps: models.length * benches.length,
    name: opts.name ?? null,
  });

  const results: EvalResult[] = [];
  const outputs: NonNullable<EvalReport['outputs']> = [];
  let computed = 0;
  let step = 0;
  // per-document samples exist only for what is computed now
  const force = (opts.force ?? false) || (opts.output?.logSamples ?? false);
  const tasks = models.length * benches.length;
  const evalStart = performance.now();
  /** the whole evaluation's ETA from how far it has got: (task + done/total) of `tasks` */
  const overallEta = (done: number, total: number): number | null => {
    const fraction = (step + (total > 0 ? done / total : 1)) / tasks;
    const elapsed = (performance.now() - evalStart) / 1000;
    return fraction > 0 && fraction < 1 && elapsed > 0.5 ? (elapsed * (1 - fraction)) / fraction : fraction >= 1 ? 0 : null;
  };
  const progress = (p: EvalProgress, checkpoint: string) => opts.onProgress?.({ ...p, checkpoint, task: step, tasks, overallEtaSeconds: overallEta(p.done, p.total) });
  try {
    for (const m of models) {
      let loaded: LoadedModel | null = null;
      const started = Date.now();
      const harness: HarnessTaskEntry[] = [];
      let maxTokens: number | undefined;
      try {
        for (const b of benches) {
          const reuse = force ? null : reusableResults(store, m.checkpoint_id, b, m.fingerprint);
          if (reuse) {
            log(`${m.label} × ${b.header.name}: stored result reused`);
            const values = new Map([...reuse].map(([metric, r]) => [metric, { value: r.value, stderr: r.stderr, n: r.nItems ?? 0 }]));
            results.push(...resultRows(m.label, m.checkpoint_id, b, values, true));
            if (b.bench) harness.push({ bench: b.bench, shots: b.setup.shots, limit: b.setup.limit, metrics: [...values].map(([metric, v]) => ({ metric, ...v })), n: values.values().next().value?.n ?? 0 });
            const n = [...values.values()][0]?.n ?? 0;
            progress({ benchmark: b.header.name, done: n, total: n, unit: 'items', elapsedSeconds: 0, etaSeconds: 0 }, m.label);
          } else {
            if (!b.bench) {
              throw new BlocklabError(
                `the store holds no lm-evaluation-harness result of ${m.label} on ${b.header.name} (for these exact weights); import one with blocklab import-eval results.json --model ${m.label}`,
              );
            }
            if (!loaded) {
              log(`loading ${m.label} …`);
              // refused before loading when even one sequence of the longest input does not fit;
              // the batch then shrinks to what the memory plan allows
              const budget = { length: 0, tokens: 0 };
              loaded = await loadModel(m.path, opts.backend, {
                task: (ckpt) => {
                  budget.length = Math.min(opts.maxLength ?? ckpt.config.maxPositionEmbeddings, ckpt.config.maxPositionEmbeddings);
                  budget.tokens = evalTokenBudget(ckpt, opts.batch ?? 8, budget.length);
                  return { kind: 'infer', what: 'eval', batch: 1, tokens: budget.length, context: 0 };
                },
              });
              maxTokens = budget.tokens;
              store.updateRun(runId, { backend: backendReport()?.active ?? null });
            }
            const scores = await evaluateLoaded(loaded, b.bench, {
              shots: b.setup.shots,
              limit: b.setup.limit,
              batch: opts.batch,
              maxLength: opts.maxLength,
              maxTokens,
              seed: opts.seed,
              fewshot: b.fewshot,
              signal: opts.signal,
              onProgress: opts.onProgress ? (p) => progress(p, m.label) : undefined,
            });
            saveEvalResults(store, {
              runId,
              checkpointId: m.checkpoint_id,
              benchmarkId: b.id,
              metrics: scores.metrics.map((x) => ({ metric: x.metric, value: x.value, stderr: x.stderr, nItems: scores.n })),
            });
            computed++;
            const values = new Map(scores.metrics.map((x) => [x.metric, { value: x.value, stderr: x.stderr, n: scores.n }]));
            results.push(...resultRows(m.label, m.checkpoint_id, b, values, false));
            harness.push({ bench: b.bench, shots: b.setup.shots, limit: b.setup.limit, metrics: scores.metrics, n: scores.n, details: scores.details });
          }
          store.heartbeat(runId, ++step);
        }
      } finally {
        loaded?.dispose();
      }
      if (opts.output && harness.length > 0) {
        const { writeHarnessOutput } = await import('../interop/lm-eval.js');
        const w = await writeHarnessOutput(opts.output.dir, {
          model: m.label,
          entries: harness,
          logSamples: opts.output.logSamples,
          batchSize: opts.batch ?? 8,
          device: backendReport()?.active ?? null,
          seed: opts.seed ?? DEFAULT_FEWSHOT_SEED,
          startedAt: started,
          limit: opts.limit ?? null,
        });
        outputs.push({ checkpoint: m.label, results_file: w.resultsFile, samples_files: w.sampleFiles });
        log(`${m.label}: wrote ${w.resultsFile}${w.sampleFiles.length ? ` and ${w.sampleFiles.length} samples file(s)` : ''}`);
      }
    }
  } catch (e) {
    const cancelled = opts.signal?.aborted === true;
    store.finishRun(runId, { status: cancelled ? 'cancelled' : 'failed', error: (e as Error)?.message ?? String(e), lastStep: step });
    throw e;
  }
  store.finishRun(runId, {
    status: 'completed',
    lastStep: step,
    summary: { pairs: models.length * benches.length, computed, reused: models.length * benches.length - computed, results: results.length },
  });
  return { run_id: runId, results, ...(opts.output ? { outputs } : {}) };
}

// ---------------------------------------------------------------------------------------------
// Forgetting

export type CompareOptions = Omit<RunEvalOptions, 'models' | 'benchmarks'>;

/**
 * Forgetting and gain of each checkpoint against `base` (DESIGN.md §1), per benchmark, on the
 * headline metric of its kind (acc_norm, bits_per_byte, exact_match). Results come from the
 * store; what is missing is evaluated first (through runEval, so it is stored too).
 * delta > 0 means "better" (gain) on role-new benchmarks and "worse" (forgot) on role-old ones,
 * whichever direction the metric improves in.
 */
export async function compareForgetting(
  store: ExperimentStore,
  base: string,
  others: string[],
  benchmarks: string[],
  opts: CompareOptions = {},
): Promise<CompareReport> {
  if (others.length === 0) throw new BlocklabError('give at least one checkpoint to compare with --base');
  const report = await runEval(store, { ...opts, models: [base, ...others], benchmarks });
  return forgettingFromEval(report, base, others);
}

/** The forgetting/gain table of `others` against `base`, from scores that include all of them. */
export function forgettingFromEval(report: EvalReport, base: string, others: string[]): CompareReport {
  // results carry the label of the first argument naming each folder: match by checkpoint id
  const idOf = new Map<string, number>();
  for (const r of report.results) idOf.set(resolve(r.checkpoint), r.checkpoint_id);
  const labels: string[] = [];
  for (const o of others) if (!labels.some((l) => resolve(l) === resolve(o))) labels.push(o);
  const byKey = new Map<string, EvalResult[]>();
  for (const r of report.results) {
    if (!byKey.has(r.benchmark_key)) byKey.set(r.benchmark_key, []);
    byKey.get(r.benchmark_key)!.push(r);
  }
  const rows: CompareRow[] = [];
  for (const [key, rs] of byKey) {
    const kind = rs[0].kind as BenchmarkKind;
    // the kind's headline metric; an imported harness task may lack it (acc without acc_norm, exact_match under a filter)
    const metric = rs.some((r) => r.metric === HEADLINE_METRIC[kind]) ? HEADLINE_METRIC[kind] : (rs.find((r) => metricFamily(r.metric) !== null)?.metric ?? HEADLINE_METRIC[kind]);
    const hib = higherIsBetter(metric);
    const role = rs[0].role;
    const pick = (label: string) => rs.find((r) => r.metric === metric && r.checkpoint_id === idOf.get(resolve(label)));
    const b = pick(base);
    const baseScore = { value: b?.value ?? null, stderr: b?.stderr ?? null, n: b?.n ?? 0 };
    rows.push({
      benchmark: rs[0].benchmark,
      benchmark_key: key,
      kind,
      domain: rs[0].domain,
      role,
      metric,
      higher_is_better: hib,
      flag: role === 'old' ? 'forgetting' : 'gain',
      base: baseScore,
      checkpoints: labels.map((label) => {
        const r = pick(label);
        const value = r?.value ?? null;
        let delta: number | null = null;
        if (value !== null && baseScore.value !== null) {
          const improvement = hib ? value - baseScore.value : baseScore.value - value;
          delta = role === 'new' ? improvement : -improvement;
          if (delta === 0) delta = 0; // not −0
        }
        return { checkpoint: label, value, stderr: r?.stderr ?? null, n: r?.n ?? 0, delta };
      }),
    });
  }
  // the scatter's means stay within one metric family: bits per byte where both roles have it, else accuracy
  const familyRoles = (f: MetricFamily) => new Set(rows.filter((r) => metricFamily(r.metric) === f).map((r) => r.role)).size;
  const present = (['bits_per_byte', 'accuracy'] as const).filter((f) => familyRoles(f) > 0);
  const family: MetricFamily | null = present.find((f) => familyRoles(f) === 2) ?? present[0] ?? null;
  const summary = labels.map((label) => {
    const deltas = (role: 'old' | 'new') =>
      rows
        .filter((r) => r.role === role && family !== null && metricFamily(r.metric) === family)
        .map((r) => r.checkpoints.find((c) => c.checkpoint === label)?.delta ?? null)
        .filter((d): d is number => d !== null);
    const gains = deltas('new');
    const forgets = deltas('old');
    const avg = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
    return { checkpoint: label, mean_gain: avg(gains), mean_forgetting: avg(forgets), new_benchmarks: gains.length, old_benchmarks: forgets.length };
  });
  const forgetting = summarizeForgetting({ checkpoints: labels, rows });
  return { run_id: report.run_id, base, checkpoints: labels, delta_note: DELTA_NOTE, rows, summary, summary_family: family, forgetting };
}

// ---------------------------------------------------------------------------------------------
// Text for the CLI

function grid(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (c ?? '').padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

export function formatNumber(v: number | null): string {
  if (v === null || !Number.isFinite(v)) return '—';
  const a = Math.abs(v);
  if (a >= 1e5) return v.toExponential(3);
  if (a >= 100) return v.toFixed(1);
  if (a >= 10) return v.toFixed(2);
  return v.toFixed(4);
}

function signed(v: number | null): string {
  if (v === null) return '—';
  return (v >= 0 ? '+' : '') + formatNumber(v);
}

/** The benchmark × checkpoint table of an eval report. */
export function formatEvalTable(report: EvalReport): string {
  const checkpoints = [...new Set(report.results.map((r) => r.checkpoint))];
  const keys = [...new Set(report.results.map((r) => r.benchmark_key))];
  const rows: string[][] = [['benchmark', 'metric', ...checkpoints]];
  for (const key of keys) {
    const rs = report.results.filter((r) => r.benchmark_key === key);
    const first = rs[0];
    const label = `${first.benchmark} (${first.kind}, ${first.role}, ${first.shots}-shot, n=${first.n})`;
    const metrics = [...new Set(rs.map((r) => r.metric))];
    metrics.forEach((metric, i) => {
      const cells = checkpoints.map((c) => {
        const r = rs.find((x) => x.checkpoint === c && x.metric === metric);
        if (!r) return '';
        return formatNumber(r.value) + (r.stderr !== null ? ` ± ${formatNumber(r.stderr)}` : '') + (r.cached ? ' *' : '');
      });
      rows.push([i === 0 ? label : '', `${metric} ${higherIsBetter(metric) ? '↑' : '↓'}`, ...cells]);
    });
  }
  const cached = report.results.filter((r) => r.cached).length;
  const lines = [grid(rows), '', `run ${report.run_id}: ${report.results.length} results`];
  if (cached) lines[2] += `, ${cached} reused from the store (marked *; --force recomputes)`;
  return lines.join('\n');
}

/** The forgetting table of a compare report, with the per-checkpoint summary. */
export function formatCompareTable(report: CompareReport): string {
  const rows: string[][] = [['benchmark', 'role', 'metric', `base: ${report.base}`, ...report.checkpoints]];
  for (const r of report.rows) {
    rows.push([
      r.benchmark,
      `${r.role} (${r.domain})`,
      `${r.metric} ${r.higher_is_better ? '↑' : '↓'}`,
      formatNumber(r.base.value),
      ...r.checkpoints.map((c) => `${formatNumber(c.value)} (${r.flag} ${signed(c.delta)})`),
    ]);
  }
  const lines = [grid(rows), ''];
  const f = report.forgetting ?? summarizeForgetting(report);
  for (const m of f.means) {
    lines.push(`${m.checkpoint}: mean ${m.role === 'new' ? 'gain' : 'forgetting'} ${formatFamilyMean(m)} over ${m.benchmarks.length} ${m.role === 'new' ? 'new' : 'old'}-domain ${FAMILY_INFO[m.family].label} benchmark(s)${m.clear ? '' : ' (within noise)'}`);
  }
  if (f.verdicts.length) lines.push('', ...f.verdicts.map((v) => v.statement));
  lines.push('', `(${f.note})`, `(${report.delta_note})`);
  return lines.join('\n');
}
