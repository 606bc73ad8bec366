/**
 * Long work from the renderer: start a job, follow its events, wait for its end. The backend
 * runs it in an engine process; this only listens.
 */
import type { ApiParams, JobEvent, JobResult } from '../../../shared/api';

/** A job as the renderer sends it (defaults not yet filled in). */
type JobSpec = ApiParams<'jobs.start'>['job'];
import { api, ApiError, onPush } from './api';

/**
 * Starts a job; when its output folder already holds an output Blocklab wrote, asks the user
 * — naming the folder — whether to replace it, and only then sends the job again with
 * `overwrite`. Nothing is ever replaced without that answer.
 */
async function startConfirmingOverwrite(job: JobSpec): Promise<{ jobId: string; runId: number | null }> {
  try {
    return await api('jobs.start', { job });
  } catch (e) {
    const replaceable = job.kind === 'expand' || job.kind === 'export-checkpoint' || job.kind === 'export-report';
    if (!(e instanceof ApiError) || e.code !== 'confirm-overwrite' || !replaceable || job.overwrite) throw e;
    const ok = window.confirm(`${e.path ?? 'The output folder'} already holds what Blocklab wrote there earlier.\n\nReplace it? Everything Blocklab wrote in that folder will be deleted.`);
    if (!ok) throw new Error(`not replaced: ${e.path ?? 'the output folder'} was left as it was; choose another folder`);
    return api('jobs.start', { job: { ...job, overwrite: true } });
  }
}

export interface RunningJob {
  jobId: string;
  runId: number | null;
  /** resolves with the result when the job completes, is stopped or paused; rejects with its error */
  done: Promise<{ status: 'completed' | 'cancelled' | 'paused'; result: JobResult }>;
  cancel(): Promise<void>;
  pause(): Promise<void>;
}

/** Follows the events of a job already running (e.g. after a page reload). */
export function followJob(jobId: string, runId: number | null, onEvent: (e: JobEvent) => void): RunningJob {
  let off = () => {};
  const done = new Promise<{ status: 'completed' | 'cancelled' | 'paused'; result: JobResult }>((resolve, reject) => {
    off = onPush((p) => {
      if (p.type !== 'job' || p.jobId !== jobId) return;
      onEvent(p.event);
      if (p.event.kind === 'done') {
        off();
        resolve({ status: p.event.status, result: p.event.result });
      } else if (p.event.kind === 'error') {
        off();
        reject(new Error(p.event.message));
      }
    });
  });
  return {
    jobId,
    runId,
    done,
    cancel: async () => void (await api('jobs.cancel', { jobId })),
    pause: async () => void (await api('jobs.pause', { jobId })),
  };
}

/**
 * Starts a job and follows it. Events that arrive between the start and the subscription are
 * not lost: the subscription is made first, and filtered by job id once it is known.
 */
export async function startJob(job: JobSpec, onEvent: (e: JobEvent) => void): Promise<RunningJob> {
  const early: { jobId: string; event: JobEvent }[] = [];
  const offEarly = onPush((p) => {
    if (p.type === 'job') early.push({ jobId: p.jobId, event: p.event });
  });
  let started: { jobId: string; runId: number | null };
  try {
    started = await startConfirmingOverwrite(job);
  } finally {
    offEarly();
  }
  const missed = early.filter((x) => x.jobId === started.jobId).map((x) => x.event);
  const terminal = missed.find((e): e is Extract<JobEvent, { kind: 'done' | 'error' }> => e.kind === 'done' || e.kind === 'error');
  if (terminal) {
    // a fast job ended before the subscription: replay it, and follow nothing
    for (const e of missed) onEvent(e);
    const cancelled = async () => {};
    return {
      jobId: started.jobId,
      runId: started.runId,
      done: terminal.kind === 'done' ? Promise.resolve({ status: terminal.status, result: terminal.result }) : Promise.reject(new Error(terminal.message)),
      cancel: cancelled,
      pause: cancelled,
    };
  }
  const handle = followJob(started.jobId, started.runId, onEvent);
  for (const e of missed) onEvent(e);
  return handle;
}
