/**
 * The HTML report: one self-contained file — inline CSS, charts as inline SVG rendered
 * server-side, no script, no URL (a Content-Security-Policy meta tag forbids loading anything
 * as a second line of defence). Every string from the data is escaped.
 */
import type { ReportCheckpoint, ReportData, ReportForgetting, ReportRun } from '../../shared/report.js';
import { BASE_COLOR, benchmarkPanel, colorAt, lossChart, tradeoffChart } from './charts.js';
import { FAMILY_INFO, formatFamilyMean, type MetricFamily } from '../../shared/forgetting.js';
import { escapeHtml as esc, markdownToSafeHtml } from './escape.js';
import { fmtCount, fmtDate, fmtDelta, fmtInt, fmtPercent, fmtRate, fmtSeconds, fmtValue, improvement } from '../../shared/format.js';
import { REPORT_CSS } from './style.js';

export interface RenderHtmlOptions {
  /** render <details> open (for print / PDF, where a closed one would hide the configs) */
  expandDetails?: boolean;
}

/** No fetches, no scripts, no frames, no forms: styles inline only, images only as data: URIs. */
export const REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; base-uri 'none'; form-action 'none'";

function chip(index: number | 'base'): string {
  if (index === 'base') return '<span class="chip base">B</span>';
  return `<span class="chip" style="background:${colorAt(index)}">${index + 1}</span>`;
}

// ---------------------------------------------------------------------------------------------
// Lineage

/** Checkpoints as a forest (parent → children), in the order given; cycles are cut. */
export function lineageForest(checkpoints: ReportCheckpoint[]): { roots: ReportCheckpoint[]; children: Map<string, ReportCheckpoint[]> } {
  const byLabel = new Map(checkpoints.map((c) => [c.label, c]));
  const children = new Map<string, ReportCheckpoint[]>();
  const roots: ReportCheckpoint[] = [];
  for (const c of checkpoints) {
    // a parent that is unknown, itself, or an ancestor of this checkpoint makes it a root
    let isRoot = c.parent === null || !byLabel.has(c.parent) || c.parent === c.label;
    if (!isRoot) {
      const seen = new Set([c.label]);
      let p: string | null = c.parent;
      while (p !== null && byLabel.has(p)) {
        if (seen.has(p)) {
          isRoot = true;
          break;
        }
        seen.add(p);
        p = byLabel.get(p)!.parent;
      }
    }
    if (isRoot) roots.push(c);
    else {
      const list = children.get(c.parent!) ?? [];
      list.push(c);
      children.set(c.parent!, list);
    }
  }
  return { roots, children };
}

function lineageHtml(data: ReportData): string {
  if (data.checkpoints.length === 0) return '<p class="muted">No checkpoints recorded.</p>';
  const { roots, children } = lineageForest(data.checkpoints);
  const producedBy = new Map<string, ReportRun[]>();
  for (const r of data.runs) if (r.result) producedBy.set(r.result, [...(producedBy.get(r.result) ?? []), r]);
  const node = (c: ReportCheckpoint, depth: number): string => {
    const runs = producedBy.get(c.label) ?? [];
    const by = runs.length ? `<span class="sub">trained by ${runs.map((r) => esc(r.label)).join(', ')}</span>` : '';
    const kids = depth < 64 ? (children.get(c.label) ?? []) : [];
    return (
      `<li><div class="node"><span class="badge ${esc(c.madeBy)}">${esc(c.madeBy)}</span><strong>${esc(c.label)}</strong>` +
      (c.detail ? `<span class="sub">${esc(c.detail)}</span>` : '') +
      by +
      `<span class="sub mono">${esc(c.path)}</span></div>` +
      (kids.length ? `<ul>${kids.map((k) => node(k, depth + 1)).join('')}</ul>` : '') +
      '</li>'
    );
  };
  return `<ul class="tree">${roots.map((r) => node(r, 0)).join('')}</ul>`;
}

// ---------------------------------------------------------------------------------------------
// Training

function lossRange(run: ReportRun): string {
  if (run.firstLoss === null && run.lastLoss === null) return '—';
  return `${fmtValue(run.firstLoss)} → ${fmtValue(run.lastLoss)}`;
}

function runsTableHtml(runs: ReportRun[]): string {
  const rows = runs
    .map((r, i) => {
      const lineage = r.base || r.result ? `<span class="sub">${esc(r.base ?? '?')} → ${esc(r.result ?? '(no model written)')}</span>` : '';
      const params =
        r.trainableParams !== null || r.totalParams !== null
          ? `${fmtCount(r.trainableParams)} / ${fmtCount(r.totalParams)}<span class="sub">${fmtPercent(r.trainableParams, r.totalParams)} trainable</span>`
          : '—';
      return (
        `<tr><td class="label">${chip(i)}${esc(r.label)}${lineage}</td>` +
        `<td class="method">${esc(r.method)}<span class="sub">${esc(r.status)}${r.id !== null ? ` · run ${r.id}` : ''}</span></td>` +
        `<td class="num">${fmtInt(r.steps)}</td>` +
        `<td class="num">${lossRange(r)}</td>` +
        `<td class="num">${fmtValue(r.valLoss)}</td>` +
        `<td class="num">${fmtRate(r.tokensPerSecond)}</td>` +
        `<td class="num">${params}</td>` +
        `<td class="num">${fmtSeconds(r.seconds)}</td></tr>`
      );
    })
    .join('');
  return (
    '<table class="runs"><thead><tr><th>Run</th><th>Method</th><th class="num">Steps</th><th class="num">Loss first → last</th>' +
    '<th class="num">Val loss</th><th class="num">Tokens/s</th><th class="num">Params trained / total</th><th class="num">Time</th></tr></thead>' +
    `<tbody>${rows}</tbody></table>`
  );
}

function trainingHtml(data: ReportData): string {
  if (data.runs.length === 0) return '<p class="muted">No training runs in this report.</p>';
  const chart = lossChart(data.runs);
  const hasVal = data.runs.some((r) => r.curves.some((c) => c.name === 'val_loss' && c.points.length > 0));
  const legend =
    '<ul class="legend">' +
    data.runs.map((r, i) => `<li><span class="line" style="border-color:${colorAt(i)}"></span>${esc(r.label)}</li>`).join('') +
    (hasVal ? '<li class="muted"><span class="line dashed" style="border-color:#5b6068"></span>validation loss (dashed, circles)</li>' : '') +
    '</ul>';
  const figure = chart
    ? `<figure>${chart}${legend}<figcaption>Training loss by optimizer step (solid)${hasVal ? ' and validation loss on held-out data (dashed)' : ''}; same colour, same run.</figcaption></figure>`
    : '<p class="muted">No loss curves were recorded for these runs.</p>';
  return figure + runsTableHtml(data.runs);
}

// ---------------------------------------------------------------------------------------------
// Forgetting

function deltaClass(f: ReportForgetting, benchmark: string, base: number | null, value: number | null, stderr: number | null): string {
  const bench = f.benchmarks.find((b) => b.name === benchmark);
  const imp = improvement(base, value, bench?.higherIsBetter ?? true);
  if (imp === null || imp === 0) return '';
  const weak = stderr !== null && Number.isFinite(stderr) && Math.abs(imp) < stderr ? ' weak' : '';
  return (imp > 0 ? 'good' : 'bad') + weak;
}

function forgettingTableHtml(f: ReportForgetting): string {
  const head =
    '<tr><th>Benchmark</th><th class="num">' +
    `${chip('base')}${esc(f.base)}</th>` +
    f.checkpoints.map((c, i) => `<th class="num">${chip(i)}${esc(c)}</th>`).join('') +
    '</tr>';
  const body = f.rows
    .map((row) => {
      const bench = f.benchmarks.find((b) => b.name === row.benchmark);
      const desc = bench
        ? `${esc(bench.domain)} · ${bench.role === 'new' ? 'new domain (gain)' : 'old domain (forgetting)'} · ${esc(bench.metric)} ${bench.higherIsBetter ? '↑' : '↓'}`
        : '';
      const cells = f.checkpoints
        .map((c) => {
          const v = row.values.find((x) => x.checkpoint === c);
          if (!v) return '<td class="num">—</td>';
          const cls = deltaClass(f, row.benchmark, row.base, v.value, v.stderr);
          const se = v.stderr !== null && Number.isFinite(v.stderr) ? ` <span class="se">± ${fmtValue(v.stderr)}</span>` : '';
          const delta = v.delta !== null ? `<span class="delta">Δ ${fmtDelta(v.delta)}</span>` : '';
          return `<td class="num ${cls}">${fmtValue(v.value)}${se}${delta}</td>`;
        })
        .join('');
      return `<tr><td class="label">${esc(row.benchmark)}<span class="sub">${desc}</span></td><td class="num">${fmtValue(row.base)}</td>${cells}</tr>`;
    })
    .join('');
  return `<table class="forgetting"><thead>${head}</thead><tbody>${body}</tbody></table>` + familiesHtml(f);
}

/** Means within one metric family, ± their standard error, and the conclusions they allow. */
function familiesHtml(f: ReportForgetting): string {
  const s = f.families;
  if (!s || s.means.length === 0) return '';
  const groups = [...new Set(s.means.map((m) => `${m.role}/${m.family}`))];
  const rows = groups
    .map((g) => {
      const [role, family] = g.split('/') as ['old' | 'new', MetricFamily];
      const cells = f.checkpoints
        .map((c) => {
          const m = s.means.find((x) => x.checkpoint === c && x.role === role && x.family === family);
          if (!m) return '<td class="num">—</td>';
          const good = role === 'new' ? m.mean > 0 : m.mean < 0;
          const cls = m.mean === 0 ? '' : (good ? 'good' : 'bad') + (m.clear ? '' : ' weak');
          return `<td class="num ${cls}">${esc(formatFamilyMean(m))}</td>`;
        })
        .join('');
      const n = s.means.find((x) => x.role === role && x.family === family)?.benchmarks.length ?? 0;
      return `<tr class="summary"><td>Mean ${role === 'new' ? 'gain, new domain' : 'forgetting, old domain'}<span class="sub">${esc(FAMILY_INFO[family].label)}, ${n} benchmark${n === 1 ? '' : 's'}</span></td><td class="num">—</td>${cells}</tr>`;
    })
    .join('');
  const verdicts = s.verdicts.length ? `<ul class="verdicts">${s.verdicts.map((v) => `<li>${esc(v.statement)}</li>`).join('')}</ul>` : '';
  return `<h3>Summary by metric family</h3><table class="forgetting families"><tbody>${rows}</tbody></table>${verdicts}<p class="caption">${esc(s.note)}</p>`;
}

function forgettingHtml(f: ReportForgetting | null): string {
  if (!f) {
    return '<p class="muted">No evaluation in this report: the checkpoints have not been compared with the base model on benchmarks yet (<code>blocklab compare --base …</code>).</p>';
  }
  const legend =
    '<ul class="legend">' +
    `<li><span class="box" style="background:${BASE_COLOR}"></span>B · base: ${esc(f.base)}</li>` +
    f.checkpoints.map((c, i) => `<li><span class="box" style="background:${colorAt(i)}"></span>${i + 1} · ${esc(c)}</li>`).join('') +
    '</ul>';
  const panels = f.benchmarks
    .map((b, i) => {
      const svg = benchmarkPanel(f, i);
      if (!svg) return '';
      return `<div class="panel"><h4>${esc(b.name)}</h4><span class="sub">${esc(b.metric)} (${b.higherIsBetter ? 'higher' : 'lower'} is better) · ${esc(b.domain)} · ${b.role === 'new' ? 'new domain' : 'old domain'}</span>${svg}</div>`;
    })
    .filter(Boolean)
    .join('');
  const tradeoff = tradeoffChart(f);
  return (
    `<p class="note"><strong>Sign convention.</strong> ${esc(f.deltaNote)} Cells are <span class="good">&nbsp;green&nbsp;</span> where the checkpoint is better than the base on that metric and <span class="bad">&nbsp;red&nbsp;</span> where it is worse; pale when the difference is smaller than one standard error.</p>` +
    forgettingTableHtml(f) +
    (panels ? `<h3>Per benchmark</h3><div class="panels">${panels}</div>${legend}<p class="caption">Headline metric of each benchmark: the base model (B) and each checkpoint; whiskers are ±1 standard error.</p>` : '') +
    (tradeoff
      ? `<h3>Trade-off${f.summaryFamily ? ` (${esc(FAMILY_INFO[f.summaryFamily].label)}, ${esc(FAMILY_INFO[f.summaryFamily].unit)})` : ''}</h3><figure>${tradeoff}<figcaption>Each point is a checkpoint: its mean gain and forgetting over the ${f.summaryFamily ? esc(FAMILY_INFO[f.summaryFamily].label) : ''} benchmarks only. Further right means more gain on the new domain, lower means less forgetting of the old one. The base model sits at the origin. The shaded lower-right quadrant is the ideal corner — gain without forgetting.</figcaption></figure>`
      : '')
  );
}

// ---------------------------------------------------------------------------------------------
// Configs, environment, notes

function configsHtml(runs: ReportRun[], open: boolean): string {
  if (runs.length === 0) return '<p class="muted">No configurations.</p>';
  return runs
    .map(
      (r, i) =>
        `<details${open ? ' open' : ''}><summary>${chip(i)}${esc(r.label)} <span class="muted">· ${esc(r.method)}${r.id !== null ? ` · run ${r.id}` : ''}</span></summary>` +
        `<pre><code>${esc(JSON.stringify(r.config, null, 2) ?? 'null')}</code></pre></details>`,
    )
    .join('');
}

function environmentHtml(env: Record<string, string>): string {
  const entries = Object.entries(env);
  if (entries.length === 0) return '<p class="muted">Not recorded.</p>';
  return `<dl class="env">${entries.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl>`;
}

function notesHtml(notes: string[]): string {
  return `<div class="notes">${notes.map((n) => markdownToSafeHtml(n)).join('\n')}</div>`;
}

// ---------------------------------------------------------------------------------------------

export function renderHtml(data: ReportData, opts: RenderHtmlOptions = {}): string {
  const benchCount = data.forgetting?.benchmarks.length ?? 0;
  const meta = [
    `Generated ${esc(fmtDate(data.createdAt))}`,
    `${data.runs.length} run${data.runs.length === 1 ? '' : 's'}`,
    `${data.checkpoints.length} checkpoint${data.checkpoints.length === 1 ? '' : 's'}`,
    benchCount ? `${benchCount} benchmark${benchCount === 1 ? '' : 's'}` : 'no evaluation',
  ].join(' · ');
  const sections: [string, string, string][] = [
    ['lineage', 'Lineage', lineageHtml(data)],
    ['training', 'Training', trainingHtml(data)],
    ['forgetting', 'Forgetting and gain', forgettingHtml(data.forgetting)],
  ];
  if (data.notes.length) sections.push(['notes', 'Notes', notesHtml(data.notes)]);
  sections.push(['configs', 'Configurations', configsHtml(data.runs, opts.expandDetails ?? false)]);
  sections.push(['environment', 'Environment and backend', environmentHtml(data.environment)]);

  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="${REPORT_CSP}">
<meta name="generator" content="Blocklab">
<title>${esc(data.title)}</title>
<style>${REPORT_CSS}</style>
</head>
<body>
<main>
<header>
<h1>${esc(data.title)}</h1>
<p class="meta">${meta}</p>
</header>
<nav class="toc">${sections.map(([id, title]) => `<a href="#${id}">${title}</a>`).join('')}</nav>
${sections.map(([id, title, body]) => `<section id="${id}">\n<h2>${title}</h2>\n${body}\n</section>`).join('\n')}
<footer>Made with Blocklab. This file is self-contained: it loads nothing from the network and runs no script.</footer>
</main>
</body>
</html>
`;
}
