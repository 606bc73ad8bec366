/**
 * The report's charts, rendered server-side by ECharts to SVG strings (no DOM, no canvas, no
 * script in the output). Text inside the SVG is escaped by ECharts; legends are drawn in HTML
 * by the caller (they wrap long, untrusted names better than an SVG legend can).
 */
import * as echarts from 'echarts/core';
import { BarChart, CustomChart, LineChart, ScatterChart } from 'echarts/charts';
import { GraphicComponent, GridComponent, MarkAreaComponent, MarkLineComponent } from 'echarts/components';
import { SVGRenderer } from 'echarts/renderers';
import type { ReportForgetting, ReportRun } from '../../shared/report.js';
import { escapeHtml } from './escape.js';
import { fmtValue } from '../../shared/format.js';
import { BASE_COLOR, colorAt, errorBarRenderItem, niceExtent } from '../../shared/chart-style.js';

echarts.use([LineChart, BarChart, ScatterChart, CustomChart, GridComponent, MarkLineComponent, MarkAreaComponent, GraphicComponent, SVGRenderer]);

/** Series colours (Tableau 10), in run / checkpoint order; the base model is grey. */
export { PALETTE, BASE_COLOR, colorAt, niceExtent } from '../../shared/chart-style.js';

// No quotes: ECharts' SSR writes the family into a double-quoted style attribute unescaped.
const FONT = 'Helvetica, Arial, Liberation Sans, DejaVu Sans, sans-serif';
const AXIS_TEXT = '#4a4f57';
const GRID_LINE = '#e3e6ea';

const axisCommon = {
  axisLine: { lineStyle: { color: '#9aa0a8' } },
  axisTick: { lineStyle: { color: '#9aa0a8' } },
  axisLabel: { color: AXIS_TEXT, fontSize: 11 },
  splitLine: { lineStyle: { color: GRID_LINE } },
  nameTextStyle: { color: AXIS_TEXT, fontSize: 11 },
};

let chartCounter = 0;

/**
 * Renders one option to an SVG string for inlining in HTML: ECharts' hover-only <style> is
 * dropped (the report is static), the namespace attributes are dropped (HTML does not need
 * them, and the report then holds no URL at all), and ECharts' process-wide element ids
 * (zr0-, zr1-, …) are replaced by ids unique to this chart and stable from run to run.
 */
export function renderSvg(option: Record<string, unknown>, width: number, height: number, label: string, idPrefix?: string): string {
  const chart = echarts.init(null, null, { renderer: 'svg', ssr: true, width, height });
  let svg: string;
  try {
    chart.setOption({ animation: false, textStyle: { fontFamily: FONT }, ...option });
    svg = chart.renderToSVGString();
  } finally {
    chart.dispose();
  }
  const prefix = idPrefix ?? `chart${++chartCounter}`;
  return svg
    .replace(/<style[\s\S]*?<\/style>/g, '')
    .replace(/\s+xmlns(:\w+)?="[^"]*"/g, '')
    .replace(/\bzr\d+-/g, `${prefix}-`)
    .replace(/\s+class="[^"]*-cls-\d+"/g, '')
    .replace(/^<svg /, `<svg role="img" aria-label="${escapeHtml(label)}" `);
}

/** At most `max` points, evenly spaced, always keeping the first and last. */
export function downsample<T>(points: T[], max: number): T[] {
  if (points.length <= max) return points;
  const out: T[] = [];
  const stride = (points.length - 1) / (max - 1);
  for (let i = 0; i < max; i++) out.push(points[Math.round(i * stride)]);
  return out;
}

function finitePoints(points: [number, number][]): [number, number][] {
  return points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
}

/** Training loss (solid) and validation loss (dashed, with markers) of every run, overlaid. */
export function lossChart(runs: ReportRun[], width = 760, height = 340): string | null {
  const series: Record<string, unknown>[] = [];
  let any = false;
  runs.forEach((run, i) => {
    const color = colorAt(i);
    const loss = finitePoints(run.curves.find((c) => c.name === 'loss')?.points ?? []);
    const val = finitePoints(run.curves.find((c) => c.name === 'val_loss')?.points ?? []);
    if (loss.length) {
      any = true;
      series.push({
        type: 'line',
        name: `${run.label} loss`,
        data: downsample(loss, 800),
        showSymbol: loss.length === 1,
        symbolSize: 4,
        lineStyle: { width: 1.6, color },
        itemStyle: { color },
        silent: true,
        z: 2,
      });
    }
    if (val.length) {
      any = true;
      series.push({
        type: 'line',
        name: `${run.label} val_loss`,
        data: downsample(val, 200),
        showSymbol: true,
        symbol: 'circle',
        symbolSize: 6,
        lineStyle: { width: 1.6, type: [5, 4], color },
        itemStyle: { color: '#fff', borderColor: color, borderWidth: 1.6 },
        silent: true,
        z: 3,
      });
    }
  });
  if (!any) return null;
  return renderSvg(
    {
      grid: { left: 56, right: 20, top: 20, bottom: 46 },
      xAxis: { type: 'value', name: 'step', nameLocation: 'middle', nameGap: 28, minInterval: 1, ...axisCommon, splitLine: { show: false } },
      yAxis: { type: 'value', name: 'loss', nameLocation: 'middle', nameGap: 42, scale: true, ...axisCommon },
      series,
    },
    width,
    height,
    'Training and validation loss by step',
    'loss',
  );
}

/**
 * One small bar chart per benchmark: base, then each checkpoint, on the headline metric, with
 * ±1 standard error whiskers where known. x labels are 'base', 1, 2, … (the legend maps them).
 */
export function benchmarkPanel(f: ReportForgetting, benchmarkIndex: number, width = 340, height = 210): string | null {
  const bench = f.benchmarks[benchmarkIndex];
  const row = f.rows.find((r) => r.benchmark === bench.name);
  if (!row) return null;
  const cats = ['base', ...f.checkpoints.map((_, i) => String(i + 1))];
  const values = [row.base, ...f.checkpoints.map((c) => row.values.find((v) => v.checkpoint === c)?.value ?? null)];
  const errs = [null, ...f.checkpoints.map((c) => row.values.find((v) => v.checkpoint === c)?.stderr ?? null)];
  if (values.every((v) => v === null || !Number.isFinite(v))) return null;
  const whiskers = errs
    .map((e, i) => (e !== null && Number.isFinite(e) && e > 0 && values[i] !== null && Number.isFinite(values[i]) ? [i, values[i] as number, e] : null))
    .filter((x): x is number[] => x !== null);
  let hi = 0;
  values.forEach((v, i) => {
    if (v !== null && Number.isFinite(v)) hi = Math.max(hi, v + (errs[i] ?? 0));
  });
  const yMax = hi > 0 ? niceMax(hi * 1.15) : 1;
  const grid = { left: 48, right: 10, top: 22, bottom: 26 };
  const plotHeight = height - grid.top - grid.bottom;
  // Value labels sit above the whisker, not on it.
  const data = values.map((v, i) => {
    const e = errs[i];
    const lift = e !== null && Number.isFinite(e) && e > 0 ? (e / yMax) * plotHeight : 0;
    return {
      value: v !== null && Number.isFinite(v) ? v : null,
      itemStyle: { color: i === 0 ? BASE_COLOR : colorAt(i - 1) },
      label: { distance: 3 + lift },
    };
  });
  const series: Record<string, unknown>[] = [
    {
      type: 'bar',
      data,
      barMaxWidth: 38,
      silent: true,
      label: { show: true, position: 'top', fontSize: 10, color: '#30343a', formatter: (p: { value: number }) => fmtValue(p.value) },
    },
  ];
  if (whiskers.length) {
    series.push({
      type: 'custom',
      silent: true,
      data: whiskers,
      z: 10,
      renderItem: errorBarRenderItem('#30343a'),
    });
  }
  return renderSvg(
    {
      grid,
      xAxis: { type: 'category', data: cats, ...axisCommon, axisTick: { show: false } },
      yAxis: { type: 'value', min: 0, max: yMax, ...axisCommon },
      series,
    },
    width,
    height,
    `${bench.name}: ${bench.metric}, base and each checkpoint`,
    `bench${benchmarkIndex}`,
  );
}

function niceMax(v: number): number {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  const m = v / p;
  const step = m <= 1 ? 1 : m <= 1.2 ? 1.2 : m <= 1.5 ? 1.5 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 3 ? 3 : m <= 4 ? 4 : m <= 5 ? 5 : m <= 6 ? 6 : m <= 8 ? 8 : 10;
  return step * p;
}

/**
 * A label formatter that shows `text` as it is: a string formatter would expand ECharts
 * templates such as {b} or {c} found in (untrusted) names.
 */
function literal(text: string): () => string {
  return () => text;
}

function shortLabel(s: string, max = 26): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/**
 * The trade-off: x = mean gain on new-domain benchmarks, y = mean forgetting on old-domain
 * ones (both as the eval engine signs them: more gain is better, more forgetting is worse),
 * one labelled point per checkpoint, the base at the origin, and the ideal quadrant
 * (gain ≥ 0, forgetting ≤ 0) shaded.
 */
export function tradeoffChart(f: ReportForgetting, width = 760, height = 380): string | null {
  const pts = f.summary
    .map((s) => ({ ...s, index: f.checkpoints.indexOf(s.checkpoint) }))
    .filter((s) => s.meanGain !== null && s.meanForgetting !== null && Number.isFinite(s.meanGain) && Number.isFinite(s.meanForgetting));
  if (pts.length === 0) return null;
  const all = [
    { x: 0, y: 0, color: BASE_COLOR, symbol: 'diamond', text: `B. base: ${shortLabel(f.base, 20)}` },
    ...pts.map((p) => ({
      x: p.meanGain as number,
      y: p.meanForgetting as number,
      color: colorAt(p.index < 0 ? 0 : p.index),
      symbol: 'circle',
      text: shortLabel(`${p.index + 1}. ${p.checkpoint}`),
    })),
  ];
  const [x0, x1, xStep] = niceExtent(all.map((p) => p.x));
  const [y0, y1, yStep] = niceExtent(all.map((p) => p.y));
  // Points that (nearly) coincide share one label, one line per point, on the first of them.
  const labelOf = new Map<number, string[]>();
  all.forEach((p, i) => {
    const twin = all.findIndex((q, j) => j < i && Math.abs(q.x - p.x) <= (x1 - x0) * 0.01 && Math.abs(q.y - p.y) <= (y1 - y0) * 0.025);
    const owner = twin >= 0 ? [...labelOf.keys()].find((k) => k === twin) ?? twin : i;
    labelOf.set(owner, [...(labelOf.get(owner) ?? []), p.text]);
  });
  // Labels of points in the right part of the chart go on their left, so they are not cut off.
  const side = (x: number) => ((x - x0) / (x1 - x0) > 0.6 ? 'left' : 'right');
  const data = all.map((p, i) => ({
    value: [p.x, p.y],
    symbol: p.symbol,
    // the base is an outline, drawn larger, so that a checkpoint at the origin shows inside it
    ...(i === 0 ? { symbolSize: 20, z: 1 } : {}),
    itemStyle: i === 0 ? { color: 'rgba(0,0,0,0)', borderColor: p.color, borderWidth: 2 } : { color: p.color },
    label: labelOf.has(i) ? { show: true, position: side(p.x), formatter: literal(labelOf.get(i)!.join('\n')), lineHeight: 14 } : { show: false },
  }));
  const valueAxis = { type: 'value', nameLocation: 'middle', ...axisCommon, axisLine: { onZero: false, lineStyle: { color: '#9aa0a8' } } };
  return renderSvg(
    {
      grid: { left: 64, right: 24, top: 18, bottom: 50 },
      xAxis: { ...valueAxis, min: x0, max: x1, interval: xStep, name: 'mean gain on new-domain benchmarks (further right is better)', nameGap: 30 },
      yAxis: { ...valueAxis, min: y0, max: y1, interval: yStep, name: 'mean forgetting on old-domain benchmarks (lower is better)', nameGap: 46 },
      series: [
        {
          type: 'scatter',
          silent: true,
          symbolSize: 12,
          data,
          label: { fontSize: 11, color: '#30343a', distance: 6 },
          labelLayout: { moveOverlap: 'shiftY' },
          markArea: {
            silent: true,
            itemStyle: { color: 'rgba(46, 160, 67, 0.10)' },
            label: { show: true, position: 'insideBottomRight', color: '#2e7d32', fontSize: 11, formatter: 'ideal: gain without forgetting' },
            data: [[{ coord: [Math.max(0, x0), y0] }, { coord: [x1, Math.min(0, y1)] }]],
          },
          markLine: {
            silent: true,
            symbol: 'none',
            label: { show: false },
            lineStyle: { color: '#9aa0a8', type: 'dashed', width: 1 },
            data: [{ xAxis: 0 }, { yAxis: 0 }],
          },
        },
      ],
    },
    width,
    height,
    'Trade-off: mean new-domain gain against mean old-domain forgetting, per checkpoint',
    'tradeoff',
  );
}


