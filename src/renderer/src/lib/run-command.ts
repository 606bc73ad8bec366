/**
 * The command that made a stored run, from the configuration the store kept for it: a training
 * run's full job, an expansion's or an export's request, an evaluation's models and benchmarks.
 */
import type { RunSummary } from '../../../shared/api';
import { evalCommand, expandCommand, exportCommand, trainCommand } from '../../../shared/commands';
import { TrainJobSchema } from '../../../shared/jobs';
import type { ExpansionRequest } from '../../../shared/expansion';

export function commandForRun(run: Pick<RunSummary, 'kind' | 'config' | 'name'>): string | null {
  const c = (run.config ?? {}) as Record<string, unknown>;
  switch (run.kind) {
    case 'train': {
      const job = TrainJobSchema.safeParse(c);
      return job.success ? trainCommand(job.data, { name: run.name }) : null;
    }
    case 'expand':
      return typeof c.model === 'string' && typeof c.out === 'string' && c.config && typeof c.config === 'object'
        ? expandCommand(c.model, c.out, c.config as ExpansionRequest, { overwrite: c.overwrite === true, backend: typeof c.backend === 'string' ? c.backend : null })
        : null;
    case 'export':
      return typeof c.model === 'string' && (c.format === 'hf' || c.format === 'gguf') ? exportCommand({ model: c.model, format: c.format, out: typeof c.out === 'string' ? c.out : null, dtype: typeof c.dtype === 'string' ? c.dtype : null }) : null;
    case 'eval': {
      const models = Array.isArray(c.models) ? c.models.map((m) => (m as { path?: unknown }).path).filter((p): p is string => typeof p === 'string') : [];
      const benches = Array.isArray(c.benchmarks) ? c.benchmarks.map((b) => (b as { spec?: unknown }).spec).filter((s): s is string => typeof s === 'string') : [];
      if (models.length === 0 || benches.length === 0) return null;
      return evalCommand({ checkpoints: models, benchmarks: benches, limit: typeof c.limit === 'number' ? c.limit : null, shots: typeof c.shots === 'number' ? c.shots : null });
    }
    default:
      return null;
  }
}
