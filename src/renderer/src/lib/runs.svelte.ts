/**
 * One store of run and job state for the whole window: the store's run list, which runs a job
 * is training right now (with its latest step), and each run's metric curves — loaded once from
 * the backend, then extended by the live step events. The Train cell, the sidebar, Compare and
 * the run page all read from here, so they show the same status, the same step and the same
 * curves at the same moment, and a view that is closed and opened again (another notebook and
 * back) finds everything where it was.
 */
import { SvelteMap } from 'svelte/reactivity';
import type { ApiPush, JobInfo, RunSummary } from '../../../shared/api';
import type { StepEvent } from '../../../shared/jobs';
import { runStatusWord } from '../../../shared/run-status';
import { api, onPush } from './api';

export type Point = [number, number];

/** A job training a run right now. */
export interface LiveRun {
  jobId: string;
  step: StepEvent | null;
  /** Stop or Pause was asked for: the run is writing its checkpoint */
  stopping: 'stop' | 'pause' | null;
}

/** The metrics the trainer records per step (and val_loss per evaluation). */
export const STEP_METRICS = ['loss', 'lr', 'grad_norm', 'tokens_per_second', 'elapsed_seconds', 'backend_bytes'] as const;

interface Curves {
  loaded: boolean;
  loading: Promise<void> | null;
  byName: Record<string, Point[]>;
}

/** Adds a point in step order; a step at or before the last one (a resume) replaces the tail from there. */
export function addPoint(curve: Point[], step: number, value: number): void {
  if (curve.length && curve[curve.length - 1]![0] >= step) {
    let i = curve.length;
    while (i > 0 && curve[i - 1]![0] >= step) i--;
    curve.length = i;
  }
  curve.push([step, value]);
}

class RunsStore {
  /** the store's runs, newest first */
  list = $state.raw<RunSummary[]>([]);
  listError = $state<string | null>(null);
  /** runId → the job training it */
  readonly live = new SvelteMap<number, LiveRun>();
  /** runId → a counter that changes whenever its curves do */
  readonly curveVersion = new SvelteMap<number, number>();
  private readonly curves = new Map<number, Curves>();
  private started = false;
  private listTimer: ReturnType<typeof setTimeout> | null = null;

  /** Subscribes to the backend's pushes (once) and loads the list and the running jobs. */
  start(): void {
    if (this.started) return;
    this.started = true;
    onPush((p) => this.onPush(p));
    void this.refreshList();
    void this.seedJobs();
  }

  async refreshList(): Promise<void> {
    try {
      this.list = await api('runs.list', { limit: 200 });
      this.listError = null;
    } catch (e) {
      this.listError = (e as Error).message;
    }
  }

  /** The list again soon (many changes arrive together while a run trains). */
  private refreshSoon(): void {
    this.listTimer ??= setTimeout(() => {
      this.listTimer = null;
      void this.refreshList();
    }, 250);
  }

  /** The jobs running in the backend when this window opened (a reload finds them here). */
  private async seedJobs(): Promise<void> {
    try {
      for (const j of await api('jobs.list')) this.adopt(j);
    } catch {
      // the list of runs says what the store knows; live steps come with the next push
    }
  }

  /** Follows a running job found in `jobs.list`. */
  adopt(j: JobInfo): void {
    if (j.runId === null || (j.kind !== 'train' && j.kind !== 'resume')) return;
    const known = this.live.get(j.runId);
    this.live.set(j.runId, { jobId: j.jobId, step: j.step ?? known?.step ?? null, stopping: j.stopping ?? known?.stopping ?? null });
  }

  private onPush(p: ApiPush): void {
    if (p.type === 'changed') {
      if (p.what === 'runs') this.refreshSoon();
      return;
    }
    const runId = p.runId ?? null;
    const e = p.event;
    if (runId === null) return;
    if (e.kind === 'started') {
      this.live.set(runId, { jobId: p.jobId, step: null, stopping: null });
      this.refreshSoon();
    } else if (e.kind === 'step') {
      const m = e.metrics;
      const known = this.live.get(runId);
      this.live.set(runId, { jobId: p.jobId, step: m, stopping: known?.stopping ?? null });
      const c = this.curvesOf(runId);
      addPoint((c.byName.loss ??= []), m.step, m.loss);
      addPoint((c.byName.lr ??= []), m.step, m.lr);
      addPoint((c.byName.grad_norm ??= []), m.step, m.gradNorm);
      addPoint((c.byName.tokens_per_second ??= []), m.step, m.tokensPerSecond);
      addPoint((c.byName.elapsed_seconds ??= []), m.step, m.elapsedSeconds);
      if (m.backendBytes !== undefined) addPoint((c.byName.backend_bytes ??= []), m.step, m.backendBytes);
      this.bump(runId);
      if (!this.list.some((r) => r.id === runId)) this.refreshSoon();
    } else if (e.kind === 'eval') {
      addPoint((this.curvesOf(runId).byName.val_loss ??= []), e.step, e.valLoss);
      this.bump(runId);
    } else if (e.kind === 'done' || e.kind === 'error') {
      const last = this.live.get(runId)?.step ?? null;
      this.live.delete(runId);
      // the new status at once, with the last step the job reported (the store's row follows
      // with the refresh): a run that ends between two list loads never reads "paused · 0/40"
      const status = e.kind === 'error' ? 'failed' : e.status;
      this.list = this.list.map((r) => (r.id === runId ? { ...r, status, ...(last ? { lastStep: last.step, totalSteps: last.totalSteps } : {}) } : r));
      this.refreshSoon();
    }
  }

  /** Marks a run as stopping or pausing (its job is writing a checkpoint). */
  stopping(runId: number, how: 'stop' | 'pause'): void {
    const l = this.live.get(runId);
    if (l) this.live.set(runId, { ...l, stopping: how });
  }

  private curvesOf(runId: number): Curves {
    let c = this.curves.get(runId);
    if (!c) {
      c = { loaded: false, loading: null, byName: {} };
      this.curves.set(runId, c);
    }
    return c;
  }

  private bump(runId: number): void {
    this.curveVersion.set(runId, (this.curveVersion.get(runId) ?? 0) + 1);
  }

  /** Loads a run's stored curves once (live points that came first are kept: they are newer). */
  ensureCurves(runId: number): Promise<void> {
    const c = this.curvesOf(runId);
    if (c.loaded) return Promise.resolve();
    c.loading ??= api('runs.get', { ids: [runId] })
      .then(([detail]) => {
        const stored = detail?.curves ?? {};
        for (const [name, points] of Object.entries(stored)) {
          const byStep = new Map<number, number>(points);
          for (const [s, v] of c.byName[name] ?? []) byStep.set(s, v);
          c.byName[name] = [...byStep.entries()].sort((a, b) => a[0] - b[0]);
        }
        c.loaded = true;
        this.bump(runId);
      })
      .finally(() => (c.loading = null));
    return c.loading;
  }

  /**
   * A run's curve as it is now (a reactive read: it changes when the curve does). A copy: the
   * store's own arrays grow in place, and a view deriving from the same array would not see it.
   */
  curve(runId: number, name: string): Point[] {
    void this.curveVersion.get(runId);
    return (this.curves.get(runId)?.byName[name] ?? []).slice();
  }

  /** A run's summary with what the live job adds: running, its latest step. */
  run(runId: number | null | undefined): (RunSummary & { live: LiveRun | null; word: string }) | null {
    if (runId === null || runId === undefined) return null;
    const r = this.list.find((x) => x.id === runId);
    const live = this.live.get(runId) ?? null;
    if (!r && !live) return null;
    const base: RunSummary = r ?? { id: runId, kind: 'train', name: null, method: null, status: 'running', config: null, summary: null, error: null, lastStep: null, totalSteps: null, outDir: null, backend: null, startedAt: null, endedAt: null, resultCheckpointId: null, baseCheckpointId: null };
    const status = live ? 'running' : base.status;
    return {
      ...base,
      status,
      lastStep: live?.step?.step ?? base.lastStep,
      totalSteps: live?.step?.totalSteps ?? base.totalSteps,
      live,
      word: runStatusWord(status, live?.stopping),
    };
  }

  /**
   * The readouts of a run's latest step — loss, lr, grad norm, tokens/s, elapsed — from the live
   * job, else from its stored curves: the same numbers during the run and after it.
   */
  lastStep(runId: number | null | undefined): StepEvent | null {
    if (runId === null || runId === undefined) return null;
    const live = this.live.get(runId)?.step;
    if (live) return live;
    const loss = this.curve(runId, 'loss');
    if (loss.length === 0) return null;
    const [step, value] = loss[loss.length - 1]!;
    const at = (name: string) => {
      const c = this.curve(runId, name);
      for (let i = c.length - 1; i >= 0; i--) if (c[i]![0] === step) return c[i]![1];
      return Number.NaN;
    };
    const r = this.list.find((x) => x.id === runId);
    const seconds = typeof r?.summary?.seconds === 'number' ? r.summary.seconds : Number.NaN;
    const elapsed = at('elapsed_seconds');
    return {
      step,
      totalSteps: r?.totalSteps ?? step,
      loss: value,
      lr: at('lr'),
      gradNorm: at('grad_norm'),
      tokensPerSecond: at('tokens_per_second'),
      elapsedSeconds: Number.isFinite(elapsed) ? elapsed : seconds,
      etaSeconds: Number.NaN,
      ...(Number.isFinite(at('backend_bytes')) ? { backendBytes: at('backend_bytes') } : {}),
    };
  }
}

export const runs = new RunsStore();
