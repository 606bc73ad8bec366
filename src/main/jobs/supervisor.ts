/**
 * Runs a job in an engine process (`child_process.fork` of engine-process.ts; the Electron app
 * will use `utilityProcess` with the same messages) and keeps the experiment store up to date:
 * the run row, its metrics (batched), checkpoints, and how it ended. A job whose process dies
 * fails cleanly with the reason (killed, out of memory, crashed), never silently.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FromEngineSchema, type FromEngine, type JobRequest, type StepEvent, type ToEngine } from '../../shared/jobs.js';
import { BlocklabError } from '../engine/errors.js';
import type { CheckpointInfo, ExperimentStore, MetricWriter } from '../store/index.js';

export interface JobEvents {
  onLog?(message: string): void;
  onStarted?(info: Record<string, unknown>): void;
  onStep?(m: StepEvent): void;
  onEval?(step: number, valLoss: number): void;
  onCheckpoint?(step: number, dir: string): void;
}

export type JobOutcome =
  | { status: 'completed' | 'cancelled' | 'paused'; runId: number | null; result: Record<string, unknown> }
  | { status: 'failed' | 'interrupted'; runId: number | null; error: string; userError: boolean };

/**
 * How long an engine process has to acknowledge a cancel (a training job) or to end (any other
 * job) before it is killed: it is stuck — a runaway computation that never returns to its event
 * loop — and would otherwise run on after the user asked it to stop.
 */
export const CANCEL_GRACE_MS = 5000;

export interface JobHandle {
  runId: number | null;
  pid: number | undefined;
  /**
   * Asks the engine to stop after the current step (it writes a checkpoint first). An engine
   * that does not acknowledge within `graceMs` is killed; the run then ends as cancelled and
   * resumes from its last checkpoint.
   */
  cancel(graceMs?: number): void;
  /** the same, recorded as paused: a stop meant to be resumed */
  pause(): void;
  /** kills the engine process at once */
  kill(signal?: NodeJS.Signals): void;
  done: Promise<JobOutcome>;
}

const ENGINE_ENTRY = fileURLToPath(new URL('./engine-process.ts', import.meta.url));

/** Node flags for the engine process: the tsx loader, so it runs the TypeScript sources. */
function engineExecArgv(): string[] {
  const require = createRequire(import.meta.url);
  const tsx = require.resolve('tsx');
  return ['--import', new URL(`file://${join(tsx, '..', 'esm', 'index.mjs')}`).href];
}

/**
 * A running engine process, whatever started it: `child_process.fork` here, Electron's
 * `utilityProcess` in the app (src/main/index.ts installs that spawner).
 */
export interface EngineChild {
  pid: number | undefined;
  send(message: ToEngine): void;
  onMessage(listener: (raw: unknown) => void): void;
  /** once, when the process has ended */
  onExit(listener: (code: number | null, signal: NodeJS.Signals | null) => void): void;
  onError(listener: (e: Error) => void): void;
  /** the process's stderr, when it can be read */
  stderr: NodeJS.ReadableStream | null;
  kill(signal?: NodeJS.Signals): void;
}

export type EngineSpawner = (opts: { maxHeapMb?: number }) => EngineChild;

/** The default: a forked Node process running engine-process.ts through tsx, IPC over JSON. */
export const forkEngine: EngineSpawner = (opts) => {
  const proc: ChildProcess = fork(ENGINE_ENTRY, [], {
    execArgv: [...engineExecArgv(), ...(opts.maxHeapMb ? [`--max-old-space-size=${opts.maxHeapMb}`] : [])],
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    serialization: 'json',
  });
  return {
    pid: proc.pid,
    send: (m) => {
      if (proc.connected) proc.send(m);
    },
    onMessage: (l) => void proc.on('message', l),
    onExit: (l) => void proc.on('exit', l),
    onError: (l) => void proc.on('error', l),
    stderr: proc.stderr,
    kill: (signal) => void proc.kill(signal),
  };
};

let spawnEngine: EngineSpawner = forkEngine;

/** Replaces how engine processes start (the Electron app uses `utilityProcess`). */
export function setEngineSpawner(spawner: EngineSpawner): void {
  spawnEngine = spawner;
}

/** Reads an engine's stderr: library warnings go to `onLog` line by line; the tail explains a death. */
function watchStderr(child: EngineChild, onLog?: (line: string) => void): () => string {
  let tail = '';
  let partial = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    tail = (tail + chunk).slice(-8192);
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line.trim() && !/^\s*\d+: 0x|^<--- |^\s*$/.test(line)) onLog?.(line.slice(0, 500));
  });
  return () => tail;
}

export type TaskOutcome = { ok: true; result: Record<string, unknown> } | { ok: false; error: string; userError: boolean; interrupted: boolean };

export interface TaskHandle {
  pid: number | undefined;
  cancel(): void;
  kill(signal?: NodeJS.Signals): void;
  done: Promise<TaskOutcome>;
  /** resolves when the engine process is up and has the request (a cold start can take seconds) */
  sent: Promise<void>;
}

/**
 * Runs one non-training request (expand, eval, generate, export, sql) in an engine process.
 * `onMessage` sees every progress/token/log message; `done` settles once, with the result or
 * the reason it failed (an error, or the process dying — e.g. killed by a caller's time limit).
 */
export function runEngineTask(request: JobRequest, opts: { onMessage?: (m: FromEngine) => void; maxHeapMb?: number } = {}): TaskHandle {
  return new EngineWorker({ keepAlive: false, maxHeapMb: opts.maxHeapMb }).run(request, { onMessage: opts.onMessage });
}

/**
 * An engine process that runs one job at a time. With `keepAlive` it stays between jobs — the
 * chat engine keeps its model loaded between turns, the SQL engine its start-up — restarts
 * after a crash, and ends after `idleMs` without work (or on close()); without, the process
 * ends with its one job (runEngineTask).
 */
export class EngineWorker {
  private child: EngineChild | null = null;
  private ready: Promise<void> | null = null;
  private job: { onMessage?: (m: FromEngine) => void; finish(o: TaskOutcome): void } | null = null;
  private idleTimer: NodeJS.Timeout | undefined;
  private stderrTail: () => string = () => '';

  constructor(private readonly opts: { keepAlive: true; idleMs: number; maxHeapMb?: number } | { keepAlive: false; maxHeapMb?: number }) {}

  get busy(): boolean {
    return this.job !== null;
  }

  private start(): Promise<void> {
    const child = spawnEngine({ maxHeapMb: this.opts.maxHeapMb });
    this.child = child;
    this.stderrTail = watchStderr(child, (line) => this.job?.onMessage?.({ type: 'log', message: line }));
    return new Promise<void>((resolveReady) => {
      child.onMessage((raw) => {
        const parsed = FromEngineSchema.safeParse(raw);
        if (!parsed.success) return;
        const m = parsed.data;
        if (m.type === 'ready') resolveReady();
        else if (m.type === 'done') this.job?.finish({ ok: true, result: m.result });
        else if (m.type === 'error') this.job?.finish({ ok: false, error: m.message, userError: m.userError, interrupted: false });
        else this.job?.onMessage?.(m);
      });
      const gone = (message: string, interrupted: boolean) => {
        if (this.child === child) {
          this.child = null;
          this.ready = null;
        }
        resolveReady(); // a job waiting for readiness fails below
        this.job?.finish({ ok: false, error: message, userError: false, interrupted });
      };
      child.onError((e) => gone(`could not start the engine process: ${e.message}`, false));
      child.onExit((code, signal) => {
        const d = describeExit(code, signal, this.stderrTail());
        gone(d.message, d.interrupted);
      });
    });
  }

  /** Runs one request; throws when a job is already running here. `onSent`: the (started) engine has the request. */
  run(request: JobRequest, opts: { onMessage?: (m: FromEngine) => void; onSent?: () => void } = {}): TaskHandle {
    if (this.job) throw new Error('this engine worker is busy');
    clearTimeout(this.idleTimer);
    let cancelRequested = false;
    let killTimer: NodeJS.Timeout | undefined;
    let job: NonNullable<EngineWorker['job']>;
    const done = new Promise<TaskOutcome>((resolveDone) => {
      job = this.job = {
        onMessage: opts.onMessage,
        finish: (o) => {
          if (!this.job) return;
          this.job = null;
          clearTimeout(killTimer);
          if (this.opts.keepAlive) {
            this.idleTimer = setTimeout(() => this.close(), this.opts.idleMs);
            this.idleTimer.unref?.();
          }
          resolveDone(o);
        },
      };
    });
    if (!this.child) this.ready = this.start();
    const child = this.child!;
    const sent = this.ready!.then(() => {
      if (!this.job || this.child !== child) return;
      child.send({ type: 'start', request, keep: this.opts.keepAlive });
      opts.onSent?.();
      if (cancelRequested) child.send({ type: 'cancel' });
    });
    return {
      sent,
      pid: child.pid,
      cancel: () => {
        cancelRequested = true;
        child.send({ type: 'cancel' });
        // a one-shot job keeps nothing when stopped: one still running after the grace is killed
        if (killTimer === undefined) {
          killTimer = setTimeout(() => {
            if (this.job === job && this.child === child) child.kill('SIGKILL');
          }, CANCEL_GRACE_MS);
          killTimer.unref?.();
        }
      },
      kill: (signal = 'SIGKILL') => child.kill(signal),
      done,
    };
  }

  close(): void {
    clearTimeout(this.idleTimer);
    const child = this.child;
    this.child = null;
    this.ready = null;
    child?.kill('SIGTERM');
  }
}

/**
 * A warm engine process that runs short requests (SQL queries, checkpoint inspection) one after
 * another: however many arrive at once, one process does the work and the rest wait their turn
 * (at most `maxWaiting`; more are refused with a message). Each request has a time limit from
 * the start of its turn; one that overruns has its process killed, and the next gets a fresh one.
 */
/** How long a fresh engine process may take to start (loading the TypeScript sources, tfjs). */
const ENGINE_START_LIMIT_MS = 60_000;

export class EngineQueue {
  private readonly worker: EngineWorker;
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;
  private pendingSent: (() => void) | null = null;

  constructor(private readonly opts: { idleMs: number; maxWaiting: number; what: string }) {
    this.worker = new EngineWorker({ keepAlive: true, idleMs: opts.idleMs });
  }

  /** Resolves with the request's result; rejects with its error, a refusal, or `overran(limitMs)`. */
  run(request: JobRequest, limitMs: number, overran: (limitMs: number) => string): Promise<Record<string, unknown>> {
    if (this.waiting >= this.opts.maxWaiting) {
      return Promise.reject(new BlocklabError(`${this.waiting} ${this.opts.what} are already waiting; try again when they have finished`));
    }
    this.waiting++;
    const turn = this.tail.then(() => this.runNow(request, limitMs, overran));
    this.tail = turn.catch(() => undefined);
    return turn.finally(() => this.waiting--);
  }

  private async runNow(request: JobRequest, limitMs: number, overran: (limitMs: number) => string): Promise<Record<string, unknown>> {
    // the limit counts from when the engine has the request, not the engine's own start-up
    // (which has a limit of its own: a process that never becomes ready is not waited for)
    let timer: NodeJS.Timeout | undefined;
    let limit = ENGINE_START_LIMIT_MS;
    const timedOut = new Promise<null>((resolveTimeout) => {
      timer = setTimeout(() => resolveTimeout(null), ENGINE_START_LIMIT_MS);
      this.pendingSent = () => {
        clearTimeout(timer);
        limit = limitMs;
        timer = setTimeout(() => resolveTimeout(null), limitMs);
      };
    });
    const task = this.worker.run(request, { onSent: () => this.pendingSent?.() });
    const o = await Promise.race([task.done, timedOut]);
    clearTimeout(timer);
    this.pendingSent = null;
    if (o === null) {
      task.kill('SIGKILL');
      await task.done; // the worker is free (and will start a fresh process) once its process is gone
      throw new BlocklabError(limit === limitMs ? overran(limitMs) : `the engine process did not start within ${ENGINE_START_LIMIT_MS / 1000} s; the machine may be overloaded or out of memory`);
    }
    if (!o.ok) throw o.userError ? new BlocklabError(o.error) : new Error(o.error);
    return o.result;
  }

  close(): void {
    this.worker.close();
  }
}

/**
 * Identity of a checkpoint folder: sha256 over config.json and each weight file's name, size
 * and safetensors header (cheap for multi-GB files; any change to a tensor's layout or a file's
 * length changes it). Null when the folder has no config.json.
 */
export async function checkpointHash(dir: string): Promise<string | null> {
  const h = createHash('sha256');
  try {
    h.update(await readFile(join(dir, 'config.json')));
  } catch {
    return null;
  }
  const names = (await readdir(dir)).filter((n) => n.endsWith('.safetensors') || n === 'model.safetensors.index.json').sort();
  for (const n of names) {
    const file = join(dir, n);
    const size = (await stat(file)).size;
    h.update(`${n}\0${size}\0`);
    const fh = await open(file, 'r');
    try {
      const head = Buffer.alloc(Math.min(size, 1 << 20));
      await fh.read(head, 0, head.length, 0);
      h.update(head);
    } finally {
      await fh.close();
    }
  }
  return h.digest('hex');
}

/** Registers a checkpoint folder in the store (once per path + hash) and returns its id. */
export async function registerCheckpointDir(store: ExperimentStore, dir: string, madeBy: 'import' | 'expand' | 'train' | 'export', extra: { parentId?: number | null; runId?: number | null; info?: Record<string, unknown> } = {}): Promise<number> {
  const path = resolve(dir);
  const hash = await checkpointHash(path);
  return store.registerCheckpoint({ path, contentHash: hash, parentId: extra.parentId ?? undefined, madeBy, runId: extra.runId ?? undefined, info: extra.info as CheckpointInfo | undefined });
}

/** Why an engine process ended without reporting, from its exit and the last of its stderr. */
export function describeExit(code: number | null, signal: NodeJS.Signals | null, stderrTail = ''): { message: string; interrupted: boolean } {
  if (/heap out of memory|Reached heap limit|Cannot enlarge memory|Out of memory/i.test(stderrTail)) {
    return { message: 'the engine process ran out of memory; lower --batch or --seq, or use a smaller model', interrupted: false };
  }
  if (signal === 'SIGKILL') return { message: 'the engine process was killed (SIGKILL) — by a user, or by the system when memory ran out', interrupted: true };
  if (signal) return { message: `the engine process stopped on signal ${signal}`, interrupted: true };
  return { message: `the engine process exited unexpectedly (exit code ${code})`, interrupted: false };
}

/**
 * Starts a training job. With a store, a run row is created first and kept current; its id is
 * `handle.runId`. `resumeRunId` continues the row of an earlier run instead of creating one.
 */
export function startJob(
  request: Extract<JobRequest, { kind: 'train' }>,
  opts: { store?: ExperimentStore; events?: JobEvents; resumeRunId?: number; name?: string; /** JavaScript heap limit of the engine process */ maxHeapMb?: number } = {},
): JobHandle {
  const { store, events = {} } = opts;
  const t = request.train;
  let runId: number | null = null;
  let metrics: MetricWriter | null = null;

  const child = spawnEngine({ maxHeapMb: opts.maxHeapMb });

  if (store) {
    if (opts.resumeRunId !== undefined) {
      runId = opts.resumeRunId;
      store.updateRun(runId, { status: 'running', error: null, pid: process.pid, endedAt: null });
    } else {
      runId = store.createRun({
        kind: 'train',
        method: t.method.kind === 'last' ? `last:${t.method.k}` : t.method.kind,
        config: t as unknown as Record<string, unknown>,
        seed: t.seed,
        outDir: resolve(t.out),
        totalSteps: t.steps,
        name: opts.name,
      });
    }
    metrics = store.metricWriter(runId);
  }

  // The engine reports through IPC; its stderr carries library warnings and, when it dies, the
  // runtime's last words (kept to explain the death, not dumped on the user).
  const stderrTail = watchStderr(child, events.onLog);

  let cancelRequested = false;
  let cancelAcknowledged = false;
  let killTimer: NodeJS.Timeout | undefined;
  /** the grace timer (not a caller's kill(), e.g. a second Ctrl-C) ended the engine */
  let killedForSilence = false;
  let pauseRequested = false;
  const sendToEngine = (m: ToEngine) => child.send(m);

  const done = new Promise<JobOutcome>((resolveDone) => {
    let settled = false;
    let lastStep = 0;
    let baseCheckpointId: number | null = null;
    const pending: Promise<unknown>[] = [];

    const finish = async (outcome: JobOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(killTimer);
      await Promise.allSettled(pending);
      metrics?.close();
      if (store && runId !== null) {
        if ('result' in outcome) {
          let resultCheckpointId: number | undefined;
          const modelDir = outcome.result.model as string | null;
          if (modelDir) resultCheckpointId = await registerCheckpointDir(store, modelDir, 'train', { parentId: baseCheckpointId, runId, info: { method: outcome.result.method } });
          store.finishRun(runId, {
            status: outcome.status,
            summary: outcome.result,
            resultCheckpointId,
            lastStep: Number(outcome.result.steps ?? lastStep),
          });
        } else {
          store.finishRun(runId, { status: outcome.status, error: outcome.error, lastStep });
        }
      }
      resolveDone(outcome);
    };

    child.onMessage((raw) => {
      const parsed = FromEngineSchema.safeParse(raw);
      if (!parsed.success) {
        events.onLog?.(`ignored an invalid message from the engine process: ${parsed.error.issues[0]?.message}`);
        return;
      }
      const m = parsed.data;
      switch (m.type) {
        case 'ready':
          sendToEngine({ type: 'start', request });
          if (cancelRequested) sendToEngine({ type: 'cancel' });
          break;
        case 'log':
          events.onLog?.(m.message);
          break;
        case 'cancelling':
          cancelAcknowledged = true;
          clearTimeout(killTimer);
          break;
        case 'started':
          if (store && runId !== null) {
            store.updateRun(runId, { backend: String(m.info.backend ?? '') });
            pending.push(
              registerCheckpointDir(store, t.model, 'import').then((id) => {
                baseCheckpointId = id;
                store.updateRun(runId!, { baseCheckpointId: id });
              }),
            );
          }
          events.onStarted?.(m.info);
          break;
        case 'step':
          lastStep = m.metrics.step;
          if (metrics && runId !== null) {
            metrics.add(m.metrics.step, 'loss', m.metrics.loss);
            metrics.add(m.metrics.step, 'lr', m.metrics.lr);
            metrics.add(m.metrics.step, 'grad_norm', m.metrics.gradNorm);
            metrics.add(m.metrics.step, 'tokens_per_second', m.metrics.tokensPerSecond);
            metrics.add(m.metrics.step, 'elapsed_seconds', m.metrics.elapsedSeconds);
            if (m.metrics.backendBytes !== undefined) metrics.add(m.metrics.step, 'backend_bytes', m.metrics.backendBytes);
            store!.heartbeat(runId, m.metrics.step);
          }
          events.onStep?.(m.metrics);
          break;
        case 'eval':
          metrics?.add(m.step, 'val_loss', m.valLoss);
          events.onEval?.(m.step, m.valLoss);
          break;
        case 'checkpoint':
          if (store && runId !== null) pending.push(registerCheckpointDir(store, m.dir, 'train', { runId, parentId: baseCheckpointId }).catch(() => undefined));
          events.onCheckpoint?.(m.step, m.dir);
          break;
        case 'done': {
          const stopped = m.result.stopped as string;
          const status = stopped === 'completed' ? 'completed' : stopped === 'paused' || pauseRequested ? 'paused' : 'cancelled';
          void finish({ status, runId, result: m.result });
          break;
        }
        case 'error':
          void finish({ status: 'failed', runId, error: m.message, userError: m.userError });
          break;
      }
    });

    child.onError((e) => void finish({ status: 'failed', runId, error: `could not start the engine process: ${e.message}`, userError: false }));
    child.onExit((code, signal) => {
      if (settled) return;
      if (killedForSilence && signal === 'SIGKILL') {
        // killed by cancel() for not answering: what the user asked for, minus the last checkpoint
        events.onLog?.(`the engine process did not answer the stop request within ${CANCEL_GRACE_MS / 1000} s and was ended; the run resumes from its last checkpoint`);
        void finish({ status: pauseRequested ? 'paused' : 'cancelled', runId, result: { stopped: pauseRequested ? 'paused' : 'cancelled', killed: true, steps: lastStep, model: null } });
        return;
      }
      const { message, interrupted } = describeExit(code, signal, stderrTail());
      const latest = lastStep > 0 ? ` after step ${lastStep}; resume from its last checkpoint with --resume` : '';
      void finish({ status: interrupted ? 'interrupted' : 'failed', runId, error: message + latest, userError: false });
    });
  });

  return {
    runId,
    pid: child.pid,
    cancel(graceMs = CANCEL_GRACE_MS) {
      cancelRequested = true;
      sendToEngine({ type: 'cancel' });
      if (!cancelAcknowledged && killTimer === undefined) {
        killTimer = setTimeout(() => {
          killedForSilence = true;
          child.kill('SIGKILL');
        }, graceMs);
        killTimer.unref?.();
      }
    },
    pause() {
      pauseRequested = true;
      this.cancel();
    },
    kill(signal = 'SIGKILL') {
      child.kill(signal);
    },
    done,
  };
}

/** Throws the job's failure as an error (for callers that want exceptions). */
export function outcomeOrThrow(outcome: JobOutcome): Extract<JobOutcome, { result: unknown }> {
  if (!('result' in outcome)) throw outcome.userError ? new BlocklabError(outcome.error) : new Error(outcome.error);
  return outcome;
}
