/** Which stored training runs can continue, and the job that continues them (CLI and app). */
import { TrainJobSchema, type TrainJob } from '../../shared/jobs.js';
import { BlocklabError } from '../engine/errors.js';
import type { ExperimentStore } from '../store/index.js';

/** The training job that resumes run `id` from its newest checkpoint; throws why it cannot. */
export function resumableTrainJob(store: ExperimentStore, id: number): TrainJob {
  const run = store.getRun(id);
  if (!run) throw new BlocklabError(`there is no run ${id} in ${store.path}; list them with blocklab runs`);
  if (run.kind !== 'train') throw new BlocklabError(`run ${id} is a ${run.kind} run; only training runs resume`);
  if (run.status === 'completed') throw new BlocklabError(`run ${id} already completed; start a new run to train further`);
  if (run.status === 'running') throw new BlocklabError(`run ${id} is still running (pid ${run.pid}); stop it first`);
  const parsed = TrainJobSchema.safeParse(run.config);
  if (!parsed.success) throw new BlocklabError(`run ${id}'s stored configuration is not a training job this version understands`);
  // a run paused by --stop-after continues to its end: the pause was that session's
  const { stopAfter: _pausedAt, ...job } = parsed.data;
  return { ...job, resume: true };
}
