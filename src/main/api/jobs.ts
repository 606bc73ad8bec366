/**
 * The app's long work: each job the renderer starts runs in an engine process (training through
 * the supervisor, which keeps its run row current; expand, eval, chat and export as one-shot
 * engine tasks) and streams its events to every connected window as `ApiPush` messages.
 * The results are recorded in the store here (expanded checkpoints and their lineage).
 */
import { randomUUID } from 'node:crypto';
import { basename, join, resolve } from 'node:path';
import type { ApiPush, GgufNllChange, JobEvent, JobInfo, JobResult, JobSpec, TrainSpec } from '../../shared/api.js';
import type { FromEngine, TrainJob } from '../../shared/jobs.js';
import { buildTrainJob } from '../../shared/train-spec.js';
import type { CompareReport, EvalReport } from '../../shared/benchmarks.js';
import { ExpansionRequestError, inConfigTerms, planExpansion, type ExpansionRecord, type ExpansionRequest } from '../../shared/expansion.js';
import { checkWritableFile, checkWritableTarget, type OutputKind } from '../engine/atomic.js';
import { BlocklabError } from '../engine/errors.js';
import { checkOutputLocation } from './paths.js';
import { EngineWorker, registerCheckpointDir, runEngineTask, startJob, type TaskHandle, type TaskOutcome } from '../jobs/supervisor.js';
import { resumableTrainJob } from '../jobs/resume.js';
import type { ExperimentStore } from '../store/index.js';

export interface JobContext {
  store: ExperimentStore;
  storePath: string;
  /** where jobs put what they make when the request names no folder */
  workDir: string;
  push(p: ApiPush): void;
  /** what `blocklab inspect` shows about a checkpoint, read in an engine process */
  inspect(path: string): Promise<Record<string, unknown>>;
}

interface Active {
  info: JobInfo;
  cancel(): void;
  pause(): void;
  cancelled?: boolean;
  /** the folder a training job writes */
  out?: string;
}

/** A folder-name-safe stamp: 20261128-101500. */
function stamp(d = new Date()): string {
  return d.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
}

function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40) || 'run';
}

/** The full training job for a Train cell's settings (the builder `blocklab train` uses too), its paths resolved here. */
export function trainJobFromSpec(spec: TrainSpec, ctx: Pick<JobContext, 'workDir' | 'storePath'>): TrainJob {
  const method = spec.method.kind === 'last' ? `last${spec.method.k}` : spec.method.kind;
  return buildTrainJob(
    { ...spec, model: resolve(spec.model), data: spec.data.map((p) => resolve(p)) },
    {
      out: resolve(spec.out ?? join(ctx.workDir, 'runs', `${slug(spec.name ?? method)}-${stamp()}`)),
      cacheDir: join(resolve(ctx.storePath, '..'), 'cache'),
    },
  );
}

/** Fails fast, before the expansion starts, on one the model cannot take. */
async function checkExpansion(inspect: JobContext['inspect'], model: string, config: ExpansionRequest): Promise<void> {
  // headers only: a missing or damaged checkpoint is refused here with the engine's own message
  const layers = Number((await inspect(resolve(model))).layers);
  try {
    planExpansion(layers, config);
  } catch (e) {
    if (e instanceof ExpansionRequestError) throw new BlocklabError(`the expansion config does not fit this ${layers}-layer model: ${inConfigTerms(e.message)}`);
    throw e;
  }
}

/** Chat engines kept warm (one model each, the two sides of a chat cell), and for how long. */
const CHAT_ENGINES = 2;
const CHAT_IDLE_MS = 10 * 60_000;

export class JobManager {
  private readonly active = new Map<string, Active>();
  /** model folder and backend → its warm chat engine, least recently used first */
  private readonly chatEngines = new Map<string, EngineWorker>();

  constructor(private readonly ctx: JobContext) {}

  /**
   * A chat turn runs in the model's warm engine, which keeps the model loaded between turns
   * (loading a large checkpoint for every answer would dominate); when that engine is busy
   * (the same model on both sides), in a one-shot engine process.
   */
  private chatEngine(model: string, request: Parameters<typeof runEngineTask>[0], onMessage: (m: FromEngine) => void): TaskHandle {
    // one engine per model and backend: a model loaded on one backend is not moved to another
    const key = `${request.kind === 'generate' ? (request.backend ?? 'auto') : 'auto'}:${model}`;
    let worker = this.chatEngines.get(key);
    if (worker?.busy) return runEngineTask(request, { onMessage });
    if (!worker) {
      worker = new EngineWorker({ keepAlive: true, idleMs: CHAT_IDLE_MS });
      while (this.chatEngines.size >= CHAT_ENGINES) {
        const [oldest, w] = [...this.chatEngines.entries()].find(([, w]) => !w.busy) ?? [];
        if (!oldest || !w) break;
        w.close();
        this.chatEngines.delete(oldest);
      }
    }
    this.chatEngines.delete(key);
    this.chatEngines.set(key, worker);
    return worker.run(request, { onMessage });
  }

  list(): JobInfo[] {
    return [...this.active.values()].map((a) => a.info);
  }

  cancel(jobId: string): boolean {
    const a = this.active.get(jobId);
    if (!a) return false;
    a.info.stopping = 'stop';
    a.cancel();
    this.ctx.push({ type: 'changed', what: 'runs' });
    return true;
  }

  pause(jobId: string): boolean {
    const a = this.active.get(jobId);
    if (!a || a.info.kind !== 'train' && a.info.kind !== 'resume') return false;
    a.info.stopping = 'pause';
    a.pause();
    this.ctx.push({ type: 'changed', what: 'runs' });
    return true;
  }

  /** Stops every job (the window or the server is closing): training writes its checkpoint. */
  stopAll(): void {
    for (const a of this.active.values()) a.cancel();
    // a chat being answered ends with what it has (the engine stops; its job reports why)
    for (const w of this.chatEngines.values()) w.close();
    this.chatEngines.clear();
  }

  /**
   * Where a job will write (null when it writes nothing of its own): the folder the request
   * names, or a new stamped one under the work folder.
   */
  private outputOf(spec: JobSpec): { path: string; kind: OutputKind | 'gguf'; overwrite: boolean } | null {
    const { workDir } = this.ctx;
    switch (spec.kind) {
      case 'expand': {
        const blocks = spec.config.blocks ?? spec.config.positions?.length ?? 'p';
        const path = resolve(spec.out ?? join(workDir, 'checkpoints', `${basename(resolve(spec.model))}-${spec.config.placement ?? 'interleave'}-${blocks}-${stamp()}`));
        // never inferred from `out` being given: only a request that says so replaces a folder
        return { path, kind: 'checkpoint', overwrite: spec.overwrite === true };
      }
      case 'export-checkpoint': {
        const name = basename(resolve(spec.model));
        const path = resolve(spec.out ?? join(workDir, 'exports', spec.format === 'gguf' ? `${name}-${stamp()}.gguf` : `${name}-hf-${stamp()}`));
        return { path, kind: spec.format === 'gguf' ? 'gguf' : 'checkpoint', overwrite: spec.overwrite === true };
      }
      case 'export-report':
        return { path: resolve(spec.out ?? join(workDir, 'reports', `report-${stamp()}`)), kind: 'report', overwrite: spec.overwrite === true };
      case 'export-run':
        return { path: resolve(spec.out ?? join(workDir, 'cluster', `${basename(resolve(spec.train.model))}-${spec.train.method.kind}-${stamp()}`)), kind: 'cluster', overwrite: spec.overwrite === true };
      case 'train':
        // a run folder is filled over time, never replaced: a new or empty folder, or a run's own
        return { path: trainJobFromSpec(spec.train, this.ctx).out, kind: 'run', overwrite: true };
      default:
        return null;
    }
  }

  /**
   * Refuses, before a job starts, an output the app may not write: a system or hidden folder,
   * a folder of the user's, or — unless the request says `overwrite`, which the app sends only
   * after the user confirmed it naming the folder — one of Blocklab's own outputs.
   */
  private async checkOutput(o: { path: string; kind: OutputKind | 'gguf'; overwrite: boolean }): Promise<void> {
    checkOutputLocation(o.path, { userDataDir: this.ctx.workDir });
    if (o.kind === 'gguf') await checkWritableFile(o.path, o.overwrite, { bytes: new TextEncoder().encode('GGUF'), format: 'GGUF' });
    else await checkWritableTarget(o.path, o.overwrite, o.kind);
  }

  async start(spec: JobSpec): Promise<{ jobId: string; runId: number | null }> {
    const output = this.outputOf(spec);
    if (output) await this.checkOutput(output);
    if (spec.kind === 'expand') await checkExpansion(this.ctx.inspect, spec.model, spec.config);
    const jobId = randomUUID().slice(0, 8);
    const info: JobInfo = { jobId, kind: spec.kind, runId: null, startedAt: new Date().toISOString(), last: null, step: null, stopping: null };
    const emit = (event: JobEvent) => {
      if (event.kind !== 'log' && event.kind !== 'token') info.last = event;
      if (event.kind === 'step') info.step = event.metrics;
      this.ctx.push({ type: 'job', jobId, runId: info.runId, event });
    };
    const entry: Active = { info, cancel: () => {}, pause: () => {} };
    this.active.set(jobId, entry);
    const end = (event: JobEvent) => {
      this.active.delete(jobId);
      emit(event);
    };
    const fail = (e: unknown) => end({ kind: 'error', message: (e as Error)?.message ?? String(e) });

    try {
      if (spec.kind === 'train' || spec.kind === 'resume') this.startTraining(spec, entry, emit, end, output?.path);
      else if (spec.kind === 'export-report') {
        this.exportReport(spec, output!.path).then((result) => end({ kind: 'done', status: 'completed', result }), fail);
      } else this.startTask(spec, entry, emit, end, output?.path ?? '');
    } catch (e) {
      this.active.delete(jobId);
      throw e;
    }
    // let the caller subscribe before the first event
    return { jobId, runId: info.runId };
  }

  // ------------------------------------------------------------------------------ training

  private startTraining(spec: Extract<JobSpec, { kind: 'train' | 'resume' }>, entry: Active, emit: (e: JobEvent) => void, end: (e: JobEvent) => void, out?: string): void {
    const { store } = this.ctx;
    const job = spec.kind === 'train' ? { ...trainJobFromSpec(spec.train, this.ctx), ...(out ? { out } : {}) } : resumableTrainJob(store, spec.runId);
    const clash = [...this.active.values()].find((a) => a !== entry && a.out === job.out);
    if (clash) throw new BlocklabError(`a running job (${clash.info.kind}, run ${clash.info.runId ?? '?'}) is already writing to ${job.out}; stop it, or choose another output folder`);
    entry.out = job.out;
    const handle = startJob(
      { kind: 'train', train: job },
      {
        store,
        resumeRunId: spec.kind === 'resume' ? spec.runId : undefined,
        name: spec.kind === 'train' ? spec.train.name : undefined,
        events: {
          onLog: (message) => emit({ kind: 'log', message }),
          onStarted: (info) => emit({ kind: 'started', info }),
          onStep: (metrics) => emit({ kind: 'step', metrics }),
          onEval: (step, valLoss) => emit({ kind: 'eval', step, valLoss }),
          onCheckpoint: (step, dir) => emit({ kind: 'checkpoint', step, dir }),
        },
      },
    );
    entry.info.runId = handle.runId;
    entry.cancel = () => handle.cancel();
    entry.pause = () => handle.pause();
    this.ctx.push({ type: 'changed', what: 'runs' });
    void handle.done.then((o) => {
      this.ctx.push({ type: 'changed', what: 'runs' });
      this.ctx.push({ type: 'changed', what: 'checkpoints' });
      if ('result' in o) {
        const status = o.status;
        const model = (o.result.model as string | null) ?? null;
        end({ kind: 'done', status, result: { kind: 'train', runId: o.runId, model, steps: Number(o.result.steps ?? 0), summary: o.result } });
      } else {
        end({ kind: 'error', message: o.status === 'interrupted' ? `${o.error} (the run can be resumed)` : o.error });
      }
    });
  }

  // ------------------------------------------------------------------- one-shot engine tasks

  private startTask(spec: Exclude<JobSpec, { kind: 'train' | 'resume' | 'export-report' }>, entry: Active, emit: (e: JobEvent) => void, end: (e: JobEvent) => void, out: string): number | null {
    const { storePath } = this.ctx;
    let request: Parameters<typeof runEngineTask>[0];
    switch (spec.kind) {
      case 'expand':
        request = { kind: 'expand', model: resolve(spec.model), out, config: spec.config as Record<string, unknown>, overwrite: spec.overwrite === true };
        break;
      case 'eval':
        request = {
          kind: 'eval',
          storePath,
          base: spec.base ? resolve(spec.base) : undefined,
          checkpoints: spec.checkpoints.map((c) => resolve(c)),
          benchmarks: spec.benchmarks.map((b) => (b.startsWith('builtin:') || b.startsWith('lm-eval:') ? b : resolve(b))),
          limit: spec.limit,
          shots: spec.shots,
          name: 'eval (app)',
          backend: spec.backend,
        };
        break;
      case 'chat':
        request = {
          kind: 'generate',
          model: resolve(spec.model),
          // completion: the last user text is continued as it is (no template, no history), as `generate --prompt` does
          ...(spec.settings.mode === 'completion'
            ? { prompt: spec.messages.filter((m) => m.role === 'user').at(-1)?.content ?? '' }
            : { messages: spec.messages.filter((m) => m.role !== 'system') }),
          system: spec.settings.system,
          temperature: spec.settings.temperature,
          topP: spec.settings.topP,
          topK: spec.settings.topK,
          repetitionPenalty: spec.settings.repetitionPenalty,
          maxTokens: spec.settings.maxTokens,
          seed: spec.settings.seed,
          useTemplate: spec.settings.useTemplate,
          backend: spec.settings.backend,
        };
        break;
      case 'export-run': {
        const job = trainJobFromSpec(spec.train, this.ctx);
        request = { kind: 'export-run', train: { ...job, out: join(out, 'output') }, out, overwrite: spec.overwrite, nodes: spec.nodes, masterAddr: spec.masterAddr };
        break;
      }
      case 'export-checkpoint':
        request = { kind: 'export', model: resolve(spec.model), format: spec.format, out, dtype: spec.dtype, overwrite: spec.overwrite === true };
        break;
    }
    const onMessage = (m: FromEngine) => {
      if (m.type === 'progress') emit({ kind: 'progress', progress: m.progress });
      else if (m.type === 'token') emit({ kind: 'token', text: m.text });
      else if (m.type === 'log') emit({ kind: 'log', message: m.message });
    };
    // expansions and exports are runs in the store too (eval records its own; a chat is not a run)
    const runId =
      request.kind === 'expand' || request.kind === 'export'
        ? this.ctx.store.createRun({
            kind: request.kind,
            method: request.kind === 'expand' ? String((spec as { config: ExpansionRequest }).config.placement ?? 'interleave') : request.format,
            config: request,
            outDir: out,
            name: request.kind === 'expand' ? `expand ${basename(request.model)}` : `export ${basename(request.model)} (${request.format}${request.dtype ? `, ${request.dtype}` : ''})`,
          })
        : null;
    entry.info.runId = runId;
    if (runId !== null) this.ctx.push({ type: 'changed', what: 'runs' });
    const task = request.kind === 'generate' ? this.chatEngine(request.model, request, onMessage) : runEngineTask(request, { onMessage });
    entry.cancel = () => {
      entry.cancelled = true;
      task.cancel();
    };
    const settle = (event: JobEvent) => {
      if (runId !== null) {
        const ok = event.kind === 'done';
        const error = event.kind === 'error' ? event.message : null;
        this.ctx.store.finishRun(runId, {
          status: ok ? 'completed' : entry.cancelled ? 'cancelled' : 'failed',
          error,
          summary: ok ? event.result : undefined,
          resultCheckpointId: ok && event.result.kind === 'expand' ? event.result.checkpointId : undefined,
        });
        this.ctx.push({ type: 'changed', what: 'runs' });
      }
      end(event);
    };
    void task.done.then(
      async (o) => {
        try {
          settle(await this.finishTask(spec, request, o));
        } catch (e) {
          settle({ kind: 'error', message: (e as Error).message });
        }
      },
      (e) => settle({ kind: 'error', message: String(e) }),
    );
    return runId;
  }

  private async finishTask(spec: JobSpec, request: Parameters<typeof runEngineTask>[0], o: TaskOutcome): Promise<JobEvent> {
    if (!o.ok) return { kind: 'error', message: o.error };
    const r = o.result;
    if (r.stopped === 'cancelled') {
      // cancelled before a result existed (eval, expand): nothing to show
      return { kind: 'error', message: 'stopped before it finished' };
    }
    const { store } = this.ctx;
    let result: JobResult;
    switch (spec.kind) {
      case 'expand': {
        const e = r as unknown as { out: string; placement: string; originalLayers: number; totalLayers: number; newLayers: number[]; sources: number[]; identity: { maxAbsLogitDiff: number; maxAbsLogit: number; tolerance: number; probeTokens: number }; record: ExpansionRecord; bytes: number };
        const baseId = await registerCheckpointDir(store, resolve(spec.model), 'import');
        const id = await registerCheckpointDir(store, e.out, 'expand', { parentId: baseId });
        store.recordExpansion({ checkpointId: id, baseCheckpointId: baseId, record: e.record });
        this.ctx.push({ type: 'changed', what: 'checkpoints' });
        result = {
          kind: 'expand',
          out: e.out,
          placement: e.placement,
          originalLayers: e.originalLayers,
          totalLayers: e.totalLayers,
          newLayers: e.newLayers,
          sources: e.sources,
          identity: { ...e.identity, passed: true },
          bytes: e.bytes,
          checkpointId: id,
        };
        break;
      }
      case 'eval':
        this.ctx.push({ type: 'changed', what: 'runs' });
        this.ctx.push({ type: 'changed', what: 'checkpoints' });
        result = { kind: 'eval', runId: (r.report as EvalReport).run_id, report: r.report as EvalReport, compare: (r.compare as CompareReport | null) ?? null };
        break;
      case 'chat':
        result = {
          kind: 'chat',
          text: String(r.text ?? ''),
          finishReason: String(r.finishReason ?? ''),
          promptTokens: Number(r.promptTokens ?? 0),
          generatedTokens: Number(r.generatedTokens ?? 0),
          decodeTokensPerSecond: Number(r.decodeTokensPerSecond ?? 0),
          prefillTokensPerSecond: Number(r.prefillTokensPerSecond ?? 0),
          templated: Boolean(r.templated),
          loadSeconds: Number(r.loadSeconds ?? 0),
          backend: String(r.backend ?? ''),
          residency: String(r.residency ?? ''),
        };
        return { kind: 'done', status: r.finishReason === 'aborted' ? 'cancelled' : 'completed', result };
      case 'export-run': {
        const { recordExportRun } = await import('../interop/llamafactory.js');
        const req = request as Extract<typeof request, { kind: 'export-run' }>;
        const e = await recordExportRun(store, req.train, r as unknown as import('../interop/llamafactory.js').ExportRunResult, spec.train.name);
        this.ctx.push({ type: 'changed', what: 'runs' });
        this.ctx.push({ type: 'changed', what: 'checkpoints' });
        result = {
          kind: 'export-run',
          out: e.out,
          method: e.method,
          finetuningType: e.finetuningType,
          trainableLayers: e.trainableLayers,
          expressedAs: e.expressedAs,
          files: e.files,
          documents: e.corpus.documents,
          commands: e.commands,
          runId: e.runId,
        };
        break;
      }
      case 'export-checkpoint': {
        const out = String(r.out ?? (request as { out: string }).out);
        if (spec.format === 'hf') await registerCheckpointDir(store, out, 'export', { parentId: store.findCheckpoint(resolve(spec.model))?.id ?? null });
        this.ctx.push({ type: 'changed', what: 'checkpoints' });
        result = {
          kind: 'export-checkpoint',
          out,
          format: spec.format,
          bytes: Number(r.bytes ?? 0),
          dtype: String(r.dtype ?? ''),
          nll: (r.nll as GgufNllChange | null | undefined) ?? null,
          warnings: Array.isArray(r.warnings) ? r.warnings.map(String) : [],
        };
        break;
      }
      default:
        throw new BlocklabError(`unexpected job kind ${spec.kind}`);
    }
    return { kind: 'done', status: 'completed', result };
  }

  // ------------------------------------------------------------------------------- reports

  private async exportReport(spec: Extract<JobSpec, { kind: 'export-report' }>, out: string): Promise<JobResult> {
    const { buildRunReport, checkpointLabel, forgettingFromCompare, renderReport, writeReport } = await import('../report/index.js');
    if (spec.runIds.length === 0 && !spec.compare) throw new BlocklabError('a report needs training runs or a forgetting comparison; run an Eval cell with a base first');
    const forgetting = spec.compare ? forgettingFromCompare(spec.compare, checkpointLabel) : null;
    const data = buildRunReport(this.ctx.store, spec.runIds, { title: spec.title, forgetting });
    const w = await writeReport(data, out, { pdf: spec.formats.includes('pdf'), overwrite: spec.overwrite === true });
    const { statSync } = await import('node:fs');
    const files = [
      { format: 'html', path: w.html },
      { format: 'md', path: w.markdown },
      ...(w.pdf ? [{ format: 'pdf', path: w.pdf }] : []),
    ].map((f) => ({ ...f, bytes: statSync(f.path).size }));
    if (spec.formats.includes('pdf') && !w.pdf) throw new BlocklabError(`the HTML report was written to ${w.html}, but not the PDF: ${w.pdfError ?? 'unknown reason'}`);
    return { kind: 'export-report', files, html: renderReport(data).html };
  }
}
