/**
 * The Markdown report: the same content as the HTML one, as tables (charts become a pointer to
 * the HTML and a sparkline per run). Every string from the data is backslash-escaped so that
 * it cannot become HTML, a link or an image in a Markdown viewer.
 */
import { FAMILY_INFO, formatFamilyMean, type MetricFamily } from '../../shared/forgetting.js';
import type { ReportData, ReportForgetting, ReportRun } from '../../shared/report.js';
import { escapeMarkdown as md, fenceFor, neutraliseMarkdown } from './escape.js';
import { fmtCount, fmtDate, fmtDelta, fmtInt, fmtPercent, fmtRate, fmtSeconds, fmtValue, improvement, sparkline } from '../../shared/format.js';
import { lineageForest } from './html.js';

function table(head: string[], rows: string[][], numeric: boolean[] = []): string {
  const align = head.map((_, i) => (numeric[i] ? '---:' : '---'));
  return [head, align, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}

function lineage(data: ReportData): string {
  if (data.checkpoints.length === 0) return '_No checkpoints recorded._';
  const { roots, children } = lineageForest(data.checkpoints);
  const lines: string[] = [];
  const walk = (label: string, depth: number) => {
    const c = data.checkpoints.find((x) => x.label === label)!;
    const detail = c.detail ? ` — ${md(c.detail)}` : '';
    lines.push(`${'  '.repeat(depth)}- **${md(c.label)}** (${md(c.madeBy)})${detail}: \`${c.path.replace(/`/g, "'").replace(/[\r\n]+/g, ' ')}\``);
    if (depth < 64) for (const k of children.get(label) ?? []) walk(k.label, depth + 1);
  };
  for (const r of roots) walk(r.label, 0);
  return lines.join('\n');
}

function runs(data: ReportData): string {
  if (data.runs.length === 0) return '_No training runs in this report._';
  const rows = data.runs.map((r, i) => [
    `${i + 1}. ${md(r.label)}`,
    md(r.method),
    md(r.status),
    fmtInt(r.steps),
    r.firstLoss === null && r.lastLoss === null ? '—' : `${fmtValue(r.firstLoss)} → ${fmtValue(r.lastLoss)}`,
    fmtValue(r.valLoss),
    fmtRate(r.tokensPerSecond),
    r.trainableParams !== null || r.totalParams !== null ? `${fmtCount(r.trainableParams)} / ${fmtCount(r.totalParams)} (${fmtPercent(r.trainableParams, r.totalParams)})` : '—',
    fmtSeconds(r.seconds),
    `${md(r.base ?? '?')} → ${md(r.result ?? '(none)')}`,
  ]);
  const t = table(
    ['Run', 'Method', 'Status', 'Steps', 'Loss first → last', 'Val loss', 'Tokens/s', 'Trainable / total params', 'Time', 'Base → result'],
    rows,
    [false, false, false, true, true, true, true, true, true, false],
  );
  const curves = data.runs
    .map((r, i) => {
      const loss = r.curves.find((c) => c.name === 'loss')?.points.map((p) => p[1]) ?? [];
      const val = r.curves.find((c) => c.name === 'val_loss')?.points.map((p) => p[1]) ?? [];
      if (loss.length === 0 && val.length === 0) return null;
      const parts = [loss.length ? `loss \`${sparkline(loss)}\`` : '', val.length ? `val_loss \`${sparkline(val, 16)}\`` : ''].filter(Boolean);
      return `- ${i + 1}\\. ${md(r.label)}: ${parts.join(' · ')}`;
    })
    .filter((x): x is string => x !== null);
  return (
    (curves.length ? `Loss curves (the charts are in report.html; sparklines here, each scaled to its own range):\n\n${curves.join('\n')}\n\n` : '') + t
  );
}

function forgetting(f: ReportForgetting | null): string {
  if (!f) return '_No evaluation in this report: the checkpoints have not been compared with the base model on benchmarks yet (`blocklab compare --base …`)._';
  const out: string[] = [];
  out.push(`**Sign convention.** ${md(f.deltaNote)}`);
  out.push('');
  out.push('▲ better than the base on that metric, ▼ worse (the HTML report colours them green and red); ≈ marks a difference smaller than one standard error.');
  out.push('');
  const head = ['Benchmark', 'Domain', 'Metric', `Base: ${md(f.base)}`, ...f.checkpoints.map((c, i) => `${i + 1}. ${md(c)}`)];
  const rows = f.rows.map((row) => {
    const bench = f.benchmarks.find((b) => b.name === row.benchmark);
    const hib = bench?.higherIsBetter ?? true;
    return [
      md(row.benchmark),
      bench ? `${md(bench.domain)} (${bench.role === 'new' ? 'new: gain' : 'old: forgetting'})` : '',
      bench ? `${md(bench.metric)} ${hib ? '↑' : '↓'}` : '',
      fmtValue(row.base),
      ...f.checkpoints.map((c) => {
        const v = row.values.find((x) => x.checkpoint === c);
        if (!v) return '—';
        const imp = improvement(row.base, v.value, hib);
        const mark = imp === null || imp === 0 ? '' : v.stderr !== null && Number.isFinite(v.stderr) && Math.abs(imp) < v.stderr ? ' ≈' : imp > 0 ? ' ▲' : ' ▼';
        const se = v.stderr !== null && Number.isFinite(v.stderr) ? ` ± ${fmtValue(v.stderr)}` : '';
        const delta = v.delta !== null ? ` (Δ ${fmtDelta(v.delta)}${mark})` : mark;
        return `${fmtValue(v.value)}${se}${delta}`;
      }),
    ];
  });
  out.push(table(head, rows, [false, false, false, true, ...f.checkpoints.map(() => true)]));
  out.push('');
  const s = f.families;
  if (s && s.means.length) {
    out.push('### Summary by metric family');
    out.push('');
    const groups = [...new Set(s.means.map((m) => `${m.role}/${m.family}`))];
    out.push(
      table(
        ['Mean', ...f.checkpoints.map((c, i) => `${i + 1}. ${md(c)}`)],
        groups.map((g) => {
          const [role, family] = g.split('/') as ['old' | 'new', MetricFamily];
          const n = s.means.find((x) => x.role === role && x.family === family)?.benchmarks.length ?? 0;
          return [
            `${role === 'new' ? 'gain, new domain' : 'forgetting, old domain'} (${FAMILY_INFO[family].label}, ${n})`,
            ...f.checkpoints.map((c) => {
              const m = s.means.find((x) => x.checkpoint === c && x.role === role && x.family === family);
              return m ? formatFamilyMean(m) + (m.clear ? '' : ' ≈') : '—';
            }),
          ];
        }),
        [false, ...f.checkpoints.map(() => true)],
      ),
    );
    out.push('');
    for (const v of s.verdicts) out.push(`- ${md(v.statement)}`);
    if (s.verdicts.length) out.push('');
    out.push(`_${md(s.note)}_`);
    out.push('');
  }
  out.push(`### Trade-off${f.summaryFamily ? ` (${FAMILY_INFO[f.summaryFamily].label})` : ''}`);
  out.push('');
  out.push('The scatter chart is in report.html. Ideal: more gain on the new domain (x) with no forgetting of the old one (y ≤ 0).');
  out.push('');
  out.push(
    table(
      ['Checkpoint', `Mean gain, new domain (x)${f.summaryFamily ? `, ${FAMILY_INFO[f.summaryFamily].unit}` : ''}`, `Mean forgetting, old domain (y)${f.summaryFamily ? `, ${FAMILY_INFO[f.summaryFamily].unit}` : ''}`],
      f.summary.map((s) => [md(s.checkpoint), fmtDelta(s.meanGain), fmtDelta(s.meanForgetting)]),
      [false, true, true],
    ),
  );
  return out.join('\n');
}

function configs(rs: ReportRun[]): string {
  if (rs.length === 0) return '_No configurations._';
  return rs
    .map((r, i) => {
      const json = JSON.stringify(r.config, null, 2) ?? 'null';
      const fence = fenceFor(json);
      return `**${i + 1}. ${md(r.label)}** (${md(r.method)}${r.id !== null ? `, run ${r.id}` : ''})\n\n${fence}json\n${json}\n${fence}`;
    })
    .join('\n\n');
}

export function renderMarkdown(data: ReportData): string {
  const benchCount = data.forgetting?.benchmarks.length ?? 0;
  const parts: string[] = [];
  parts.push(`# ${md(data.title)}`);
  parts.push(
    `Generated ${md(fmtDate(data.createdAt))} · ${data.runs.length} run${data.runs.length === 1 ? '' : 's'} · ${data.checkpoints.length} checkpoint${data.checkpoints.length === 1 ? '' : 's'} · ${benchCount ? `${benchCount} benchmark${benchCount === 1 ? '' : 's'}` : 'no evaluation'}`,
  );
  parts.push('## Lineage', lineage(data));
  parts.push('## Training', runs(data));
  parts.push('## Forgetting and gain', forgetting(data.forgetting));
  if (data.notes.length) parts.push('## Notes', data.notes.map(neutraliseMarkdown).join('\n\n'));
  parts.push('## Configurations', configs(data.runs));
  const env = Object.entries(data.environment);
  parts.push('## Environment and backend', env.length ? table(['Item', 'Value'], env.map(([k, v]) => [md(k), md(v)])) : '_Not recorded._');
  return parts.join('\n\n') + '\n';
}
