/** The eval engine's comparison (blocklab compare) as the report's forgetting section. */
import type { CompareReport } from '../../shared/benchmarks.js';
import type { ReportForgetting } from '../../shared/report.js';
import { summarizeForgetting } from '../../shared/forgetting.js';

/** `label` maps a checkpoint as the comparison names it (a path) to the label the report shows. */
export function forgettingFromCompare(c: CompareReport, label: (checkpoint: string) => string = (s) => s): ReportForgetting {
  return {
    base: label(c.base),
    checkpoints: c.checkpoints.map(label),
    deltaNote: c.delta_note,
    benchmarks: c.rows.map((r) => ({ name: r.benchmark, kind: r.kind, domain: r.domain, role: r.role, metric: r.metric, higherIsBetter: r.higher_is_better })),
    rows: c.rows.map((r) => ({
      benchmark: r.benchmark,
      base: r.base.value,
      values: r.checkpoints.map((v) => ({ checkpoint: label(v.checkpoint), value: v.value, stderr: v.stderr, delta: v.delta, flag: r.flag })),
    })),
    summary: c.summary.map((s) => ({ checkpoint: label(s.checkpoint), meanGain: s.mean_gain, meanForgetting: s.mean_forgetting })),
    summaryFamily: c.summary_family ?? null,
    // recomputed under the report's labels: the conclusions name checkpoints
    families: summarizeForgetting({
      checkpoints: c.checkpoints.map(label),
      rows: c.rows.map((r) => ({ ...r, checkpoints: r.checkpoints.map((v) => ({ ...v, checkpoint: label(v.checkpoint) })) })),
    }),
  };
}
