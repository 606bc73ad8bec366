/**
 * What a forgetting comparison can claim. As the LLaMA Pro paper aggregates, averages are taken
 * only over benchmarks of one metric family — accuracy-type (acc, acc_norm, exact_match; in
 * points, ×100) or perplexity-type (bits per byte) — never across families, and each average
 * carries its standard error. A written conclusion names a winner only where the difference
 * exceeds the combined standard error, and says "no clear difference" otherwise.
 *
 * Standard errors, for k benchmarks of a family (each with its own standard error se):
 *   delta of one benchmark vs the base      sqrt(se_tuned² + se_base²)
 *   mean delta of a checkpoint               sqrt(Σ se_delta²) / k
 *   difference of two checkpoints' means     sqrt(Σ (se_a² + se_b²)) / k    (the base cancels)
 * treating the scores as independent (conservative: the same items are scored by every model).
 * A benchmark without a standard error makes the family's standard error unknown, and then no
 * winner is named.
 *
 * Pure logic: the report, the CLI and the app's Eval cell use the same words.
 */

export type MetricFamily = 'accuracy' | 'bits_per_byte';

export const FAMILY_INFO: Record<MetricFamily, { label: string; unit: string; scale: number; decimals: number }> = {
  accuracy: { label: 'accuracy-type', unit: 'points', scale: 100, decimals: 1 },
  bits_per_byte: { label: 'bits per byte', unit: 'bits/byte', scale: 1, decimals: 3 },
};

/** The family a headline metric belongs to; null for a metric no family averages (e.g. perplexity itself). */
export function metricFamily(metric: string): MetricFamily | null {
  if (metric === 'acc' || metric === 'acc_norm' || metric === 'exact_match' || metric.startsWith('acc,') || metric.startsWith('acc_norm,') || metric.startsWith('exact_match,')) return 'accuracy';
  if (metric === 'bits_per_byte' || metric.startsWith('bits_per_byte,')) return 'bits_per_byte';
  return null;
}

/** What the summary needs of a comparison (a CompareReport is one). */
export interface SummaryInput {
  checkpoints: string[];
  rows: {
    benchmark: string;
    metric: string;
    role: 'old' | 'new';
    base: { value: number | null; stderr: number | null };
    checkpoints: { checkpoint: string; value: number | null; stderr: number | null; delta: number | null }[];
  }[];
}

/** One checkpoint's mean over the benchmarks of one (role, family). */
export interface FamilyMean {
  checkpoint: string;
  role: 'old' | 'new';
  family: MetricFamily;
  /** mean delta in the family's unit (points, bits/byte); > 0 = gained (new) / forgot (old) */
  mean: number;
  /** its standard error, or null when a benchmark had none */
  stderr: number | null;
  benchmarks: string[];
  /** |mean| > stderr: a change beyond noise */
  clear: boolean;
}

export interface FamilyVerdict {
  role: 'old' | 'new';
  family: MetricFamily;
  /** the checkpoint with the least forgetting / most gain, named only when it beats every other by more than the combined standard error */
  winner: string | null;
  /** the best by mean and those within the combined standard error of it (when there is no winner) */
  tied: string[];
  statement: string;
}

export interface ForgettingSummary {
  means: FamilyMean[];
  verdicts: FamilyVerdict[];
  /** the unit notes and how the standard errors combine, for the reader */
  note: string;
}

const fmt = (family: MetricFamily, v: number) => {
  const d = FAMILY_INFO[family].decimals;
  const s = v.toFixed(d);
  return s === (-0).toFixed(d) ? (0).toFixed(d) : s;
};
const signed = (family: MetricFamily, v: number) => (v > 0 ? '+' : '') + fmt(family, v);

/** "+0.143 ± 0.012 bits/byte" */
export function formatFamilyMean(m: Pick<FamilyMean, 'family' | 'mean' | 'stderr'>): string {
  return `${signed(m.family, m.mean)}${m.stderr !== null ? ` ± ${fmt(m.family, m.stderr)}` : ''} ${FAMILY_INFO[m.family].unit}`;
}

interface Cell {
  delta: number;
  se: number | null; // of the tuned score alone, scaled
  baseSe: number | null;
}

/** Per-family means, standard errors and verdicts of a forgetting comparison. */
export function summarizeForgetting(c: SummaryInput): ForgettingSummary {
  // (role, family) → benchmark → checkpoint → cell
  const groups = new Map<string, { role: 'old' | 'new'; family: MetricFamily; rows: { benchmark: string; cells: Map<string, Cell> }[] }>();
  for (const row of c.rows) {
    const family = metricFamily(row.metric);
    if (!family) continue;
    const scale = FAMILY_INFO[family].scale;
    const key = `${row.role}/${family}`;
    if (!groups.has(key)) groups.set(key, { role: row.role, family, rows: [] });
    const cells = new Map<string, Cell>();
    for (const v of row.checkpoints) {
      if (v.delta === null || !Number.isFinite(v.delta)) continue;
      cells.set(v.checkpoint, {
        delta: v.delta * scale,
        se: v.stderr !== null && Number.isFinite(v.stderr) ? v.stderr * scale : null,
        baseSe: row.base.stderr !== null && Number.isFinite(row.base.stderr) ? row.base.stderr * scale : null,
      });
    }
    groups.get(key)!.rows.push({ benchmark: row.benchmark, cells });
  }

  const means: FamilyMean[] = [];
  const verdicts: FamilyVerdict[] = [];
  for (const g of [...groups.values()].sort((a, b) => (a.role === b.role ? (a.family < b.family ? -1 : 1) : a.role === 'new' ? -1 : 1))) {
    // only checkpoints scored on every benchmark of the group compare on the same footing
    const complete = c.checkpoints.filter((ck) => g.rows.every((r) => r.cells.has(ck)));
    const k = g.rows.length;
    const groupMeans: FamilyMean[] = complete.map((ck) => {
      const cells = g.rows.map((r) => r.cells.get(ck)!);
      const mean = cells.reduce((a, x) => a + x.delta, 0) / k;
      const known = cells.every((x) => x.se !== null && x.baseSe !== null);
      const stderr = known ? Math.sqrt(cells.reduce((a, x) => a + x.se! ** 2 + x.baseSe! ** 2, 0)) / k : null;
      return { checkpoint: ck, role: g.role, family: g.family, mean, stderr, benchmarks: g.rows.map((r) => r.benchmark), clear: stderr !== null && Math.abs(mean) > stderr };
    });
    means.push(...groupMeans);
    if (groupMeans.length < 2) continue;

    // the best: least forgetting (smallest mean) on old benchmarks, most gain (largest) on new ones
    const better = (a: FamilyMean, b: FamilyMean) => (g.role === 'old' ? a.mean < b.mean : a.mean > b.mean);
    const best = groupMeans.reduce((a, b) => (better(b, a) ? b : a));
    const pairSe = (a: string, b: string): number | null => {
      let s = 0;
      for (const r of g.rows) {
        const x = r.cells.get(a)!;
        const y = r.cells.get(b)!;
        if (x.se === null || y.se === null) return null;
        s += x.se ** 2 + y.se ** 2;
      }
      return Math.sqrt(s) / k;
    };
    const pairs = groupMeans.filter((o) => o !== best).map((o) => ({ other: o, diff: Math.abs(best.mean - o.mean), se: pairSe(best.checkpoint, o.checkpoint) }));
    const what = g.role === 'old' ? 'Least forgetting' : 'Most gain';
    const where = `${g.role === 'old' ? 'old-domain' : 'new-domain'} benchmarks, ${FAMILY_INFO[g.family].label} (${k} benchmark${k === 1 ? '' : 's'})`;
    const show = (m: FamilyMean) => `${m.checkpoint} ${formatFamilyMean(m)}`;
    let statement: string;
    let winner: string | null = null;
    let tied: string[];
    if (pairs.some((p) => p.se === null)) {
      tied = groupMeans.map((m) => m.checkpoint);
      statement = `${what} on ${where}: no clear difference can be claimed, as not every score has a standard error (${groupMeans.map(show).join('; ')}).`;
    } else {
      const known = pairs as { other: FamilyMean; diff: number; se: number }[];
      const within = known.filter((p) => p.diff <= p.se);
      if (within.length === 0) {
        winner = best.checkpoint;
        tied = [];
        const closest = known.reduce((a, b) => (b.diff - b.se < a.diff - a.se ? b : a));
        statement =
          `${what} on ${where}: ${show(best)}, ahead of every other checkpoint by more than the combined standard error ` +
          `(closest: ${closest.other.checkpoint}, difference ${fmt(g.family, closest.diff)} > ${fmt(g.family, closest.se)}).`;
      } else {
        tied = [best.checkpoint, ...within.map((p) => p.other.checkpoint)];
        const near = within.reduce((a, b) => (b.diff < a.diff ? b : a));
        statement =
          `${what} on ${where}: no clear difference between ${tied.join(' and ')} ` +
          `(${[best, ...within.map((p) => p.other)].map(show).join('; ')}; ` +
          `${best.checkpoint} vs ${near.other.checkpoint}: difference ${fmt(g.family, near.diff)}, within the combined standard error ${fmt(g.family, near.se)}).`;
      }
    }
    verdicts.push({ role: g.role, family: g.family, winner, tied, statement });
  }
  return {
    means,
    verdicts,
    note:
      'Means are taken within one metric family only: accuracy-type benchmarks (acc, acc_norm, exact_match) in points, perplexity-type ones in bits per byte; ' +
      'positive = gained on new-domain benchmarks, forgot on old-domain ones. ± is the standard error of the mean delta (the scores\' standard errors combined in quadrature); ' +
      'a checkpoint is named best only where it leads every other by more than their combined standard error.',
  };
}
