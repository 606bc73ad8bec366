/**
 * One word for each state of a run, wherever the app shows it (a cell's badge, the sidebar,
 * Compare, the run page): the store says `cancelled` for a run a person stopped, the app says
 * "stopped"; a Stop or Pause still writing its checkpoint is "stopping" / "pausing".
 */

const WORDS: Record<string, string> = {
  queued: 'queued',
  running: 'running',
  completed: 'completed',
  failed: 'failed',
  cancelled: 'stopped',
  paused: 'paused',
  interrupted: 'interrupted',
};

export function runStatusWord(status: string | null | undefined, stopping?: 'stop' | 'pause' | null): string {
  if (!status) return 'unknown';
  if (status === 'running' && stopping) return stopping === 'pause' ? 'pausing' : 'stopping';
  return WORDS[status] ?? status;
}

/** Training runs in these states continue from their last checkpoint with Resume. */
export const RESUMABLE_STATUSES: readonly string[] = ['cancelled', 'paused', 'interrupted'];
