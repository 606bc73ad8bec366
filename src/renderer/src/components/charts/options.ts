/**
 * ECharts options for the cells' charts, in the HTML report's look (src/main/report/charts.ts):
 * loss curves (the Train cell's live chart and the Compare cell's overlay, with W&B-style
 * smoothing: the raw line faint behind the EMA), the per-benchmark forgetting bars with ±1
 * standard-error whiskers, and the gain-vs-forgetting trade-off scatter.
 */
import { errorBarRenderItem } from '../../../../shared/chart-style';
import type { CompareReport } from '../../../../shared/benchmarks';
import { axisStyle, BASE_COLOR, colorAt, escapeHtml, legendStyle, literal, niceExtent, tooltipStyle, type ChartOption, type ChartTheme } from '../../lib/charts';
import { smoothCurve } from '../../lib/smoothing';
import { fmtDelta, fmtLoss, fmtValue, shortPath } from './format';

export type Point = [number, number];

/** An axis tick: as few digits as the tick needs (ECharts picks round ticks). */
function fmtTick(v: number): string {
  return Math.abs(v) >= 1e5 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(1) : String(Number(v.toPrecision(6)));
}

export interface Curve {
  /** legend name; curves with the same name toggle together */
  name: string;
  color: string;
  points: Point[];
  /** validation curves: dashed, hollow markers, never smoothed */
  validation?: boolean;
}

function finitePoints(points: Point[]): Point[] {
  return points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
}

export interface CurvesOptions {
  smoothing?: number;
  yName?: string;
  /** the x axis's name (default "step") and how its ticks and the tooltip's header read */
  xName?: string;
  xFormat?: (x: number) => string;
  /** how a value reads in the tooltip (default: a loss, three decimals) */
  valueFormat?: (y: number) => string;
  /** how the y axis's ticks read (default: as few digits as each needs) */
  yFormat?: (y: number) => string;
  legend?: boolean;
  xMax?: number;
  /** a grid for a small panel: less room for the axis names */
  compact?: boolean;
}

/** Curves against step (or tokens, or time); `smoothing` in [0, 1) draws each training curve's smoothed line over its raw one. */
export function curvesOption(t: ChartTheme, curves: Curve[], opts: CurvesOptions = {}): ChartOption | null {
  const valueFormat = opts.valueFormat ?? fmtLoss;
  const xFormat = opts.xFormat ?? ((x: number) => String(x));
  const smoothing = opts.smoothing ?? 0;
  const series: Record<string, unknown>[] = [];
  const legend: string[] = [];
  curves.forEach((c, i) => {
    const pts = finitePoints(c.points);
    if (pts.length === 0) return;
    if (!legend.includes(c.name)) legend.push(c.name);
    if (c.validation) {
      series.push({
        id: `${i}-val`,
        type: 'line',
        name: c.name,
        data: pts,
        showSymbol: true,
        symbol: 'circle',
        symbolSize: 6,
        lineStyle: { width: 1.6, type: [5, 4], color: c.color },
        itemStyle: { color: t.surface, borderColor: c.color, borderWidth: 1.6 },
        emphasis: { disabled: true },
        z: 4,
      });
      return;
    }
    const smooth = smoothing > 0;
    // the EMA first: the legend takes its colour from the first series of a name
    series.push({
      id: `${i}-main`,
      type: 'line',
      name: c.name,
      data: smooth ? smoothCurve(pts, smoothing) : pts,
      showSymbol: pts.length === 1,
      symbolSize: 5,
      sampling: 'lttb',
      lineStyle: { width: 1.8, color: c.color },
      itemStyle: { color: c.color },
      emphasis: { disabled: true },
      z: 3,
    });
    if (smooth) {
      series.push({
        id: `${i}-raw`,
        type: 'line',
        name: c.name,
        data: pts,
        showSymbol: false,
        sampling: 'lttb',
        lineStyle: { width: 1, color: c.color, opacity: t.rawOpacity },
        itemStyle: { color: c.color, opacity: t.rawOpacity },
        emphasis: { disabled: true },
        silent: true,
        z: 1,
      });
    }
  });
  if (series.length === 0) return null;
  const raw = new Map<string, Map<number, number>>();
  if (smoothing > 0) for (const s of series) if (String(s.id).endsWith('-raw')) raw.set(String(s.id).replace('-raw', '-main'), new Map((s.data as Point[]).map(([x, y]) => [x, y])));
  const showLegend = opts.legend ?? legend.length > 1;
  return {
    grid: { left: opts.compact ? 58 : 52, right: 18, top: showLegend ? 34 : 14, bottom: opts.compact ? 36 : 40 },
    legend: showLegend ? { ...legendStyle(t), top: 2, left: 'center', data: legend } : undefined,
    tooltip: {
      ...tooltipStyle(t),
      trigger: 'axis',
      axisPointer: { type: 'line', lineStyle: { color: t.axis, width: 1 } },
      formatter: (params: unknown) => {
        const list = (Array.isArray(params) ? params : [params]) as { seriesId: string; seriesName: string; color: string; value: Point }[];
        const shown = list.filter((p) => !p.seriesId.endsWith('-raw'));
        if (shown.length === 0) return '';
        const step = shown[0].value[0];
        const rows = shown.map((p) => {
          const r = raw.get(p.seriesId)?.get(p.value[0]);
          const rawText = r !== undefined ? ` <span style="opacity:.6">(${escapeHtml(valueFormat(r))})</span>` : '';
          return `<div><span style="display:inline-block;width:9px;height:9px;border-radius:2px;margin-right:6px;background:${p.color}"></span>${escapeHtml(p.seriesName)} <b>${escapeHtml(valueFormat(p.value[1]))}</b>${rawText}</div>`;
        });
        return `<div style="font-size:11px;opacity:.7">${escapeHtml(opts.xName ?? 'step')} ${escapeHtml(xFormat(step))}</div>${rows.join('')}`;
      },
    },
    xAxis: {
      type: 'value',
      name: opts.xName ?? 'step',
      nameLocation: 'middle',
      nameGap: opts.compact ? 22 : 26,
      minInterval: 1,
      max: opts.xMax,
      ...axisStyle(t),
      axisLabel: { ...axisStyle(t).axisLabel, formatter: opts.xFormat ?? fmtTick, hideOverlap: true },
      splitLine: { show: false },
    },
    yAxis: { type: 'value', name: opts.yName ?? 'loss', nameLocation: 'middle', nameGap: opts.compact ? 44 : 38, scale: true, ...axisStyle(t), axisLabel: { ...axisStyle(t).axisLabel, formatter: opts.yFormat ?? fmtTick } },
    series,
  };
}

/** One label per checkpoint column: "1", "2", … with the legend naming them. */
export function checkpointLegend(compare: CompareReport): { label: string; name: string; color: string }[] {
  return [{ label: 'base', name: `base: ${shortPath(compare.base)}`, color: BASE_COLOR }, ...compare.checkpoints.map((c, i) => ({ label: String(i + 1), name: `${i + 1}: ${shortPath(c)}`, color: colorAt(i) }))];
}

const PANEL_H = 210;
const LEGEND_H = 30;

/** Round ticks from 0 that hold `hi` with headroom for value labels: [max, interval]. */
function barAxis(hi: number): [number, number] {
  if (!(hi > 0)) return [1, 0.25];
  const raw = (hi * 1.18) / 4;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = ([1, 2, 2.5, 5, 10].find((m) => raw / p <= m) ?? 10) * p;
  return [Number((Math.ceil((hi * 1.18) / step) * step).toPrecision(12)), step];
}

/** How many forgetting panels go in one row, and the chart height for `n` benchmarks. */
export function forgettingLayout(n: number, width: number): { cols: number; rows: number; height: number } {
  const cols = Math.max(1, Math.min(n, Math.floor(width / 230) || 1, 4));
  const rows = Math.max(1, Math.ceil(n / cols));
  return { cols, rows, height: rows * PANEL_H + LEGEND_H };
}

/**
 * One small bar panel per benchmark (each on its own axis, as metrics differ in scale): the
 * base, then each checkpoint on the headline metric, with ±1 standard-error whiskers. The
 * legend maps colours to checkpoints and toggles them in every panel.
 */
export function forgettingOption(t: ChartTheme, compare: CompareReport, cols: number): ChartOption | null {
  const rows = compare.rows;
  if (rows.length === 0) return null;
  const legend = checkpointLegend(compare);
  const grids: Record<string, unknown>[] = [];
  const xAxes: Record<string, unknown>[] = [];
  const yAxes: Record<string, unknown>[] = [];
  const titles: Record<string, unknown>[] = [];
  const series: Record<string, unknown>[] = [];
  const cellW = 100 / cols;
  rows.forEach((row, b) => {
    const col = b % cols;
    const line = Math.floor(b / cols);
    const panelTop = LEGEND_H + line * PANEL_H;
    const gridTop = panelTop + 46;
    const plotH = PANEL_H - 46 - 26;
    grids.push({ left: `${col * cellW + 4.5}%`, width: `${cellW - 7}%`, top: gridTop, height: plotH, containLabel: false });
    titles.push({
      text: row.benchmark,
      subtext: `${row.metric} ${row.higher_is_better ? '↑' : '↓'} · ${row.role === 'new' ? 'new domain' : 'old skill'}`,
      left: `${col * cellW + cellW / 2}%`,
      textAlign: 'center',
      top: panelTop + 4,
      itemGap: 3,
      textStyle: { fontSize: 12, fontWeight: 600, color: t.text, lineHeight: 15 },
      subtextStyle: { fontSize: 10.5, color: t.muted, lineHeight: 13 },
    });
    const values = [row.base.value, ...row.checkpoints.map((c) => c.value)];
    const errs = [row.base.stderr, ...row.checkpoints.map((c) => c.stderr)];
    let hi = 0;
    values.forEach((v, i) => {
      if (v !== null && Number.isFinite(v)) hi = Math.max(hi, v + (errs[i] ?? 0));
    });
    xAxes.push({ type: 'category', gridIndex: b, data: legend.map((l) => l.label), ...axisStyle(t), axisTick: { show: false } });
    const [yMax, yStep] = barAxis(hi);
    yAxes.push({ type: 'value', gridIndex: b, min: 0, max: yMax, interval: yStep, ...axisStyle(t), axisLabel: { ...axisStyle(t).axisLabel, formatter: fmtTick } });
    legend.forEach((l, i) => {
      const v = values[i];
      const ck = i === 0 ? null : row.checkpoints[i - 1];
      series.push({
        type: 'bar',
        name: l.name,
        xAxisIndex: b,
        yAxisIndex: b,
        barGap: '-100%',
        barMaxWidth: 34,
        data: legend.map((_, j) => (j === i ? (v !== null && Number.isFinite(v) ? v : null) : null)),
        itemStyle: { color: l.color, borderRadius: [2, 2, 0, 0] },
        // the value sits above the whisker, not on it
        label: { show: true, position: 'top', fontSize: 10, color: t.text, distance: 3 + (errs[i] && errs[i]! > 0 ? (errs[i]! / yMax) * plotH : 0), formatter: literal(fmtValue(v)) },
        tooltip: {
          formatter: literal(
            `<b>${escapeHtml(row.benchmark)}</b> · ${escapeHtml(row.metric)}<br>${escapeHtml(l.name)}: <b>${fmtValue(v)}</b>` +
              (errs[i] !== null && errs[i] !== undefined ? ` ± ${fmtValue(errs[i])}` : '') +
              (ck && ck.delta !== null ? `<br>${row.flag} ${fmtDelta(ck.delta)}` : ''),
          ),
        },
      });
    });
    const whiskers = values
      .map((v, i) => (v !== null && Number.isFinite(v) && errs[i] !== null && Number.isFinite(errs[i]) && (errs[i] as number) > 0 ? [i, v, errs[i] as number] : null))
      .filter((x): x is number[] => x !== null);
    if (whiskers.length) {
      series.push({
        type: 'custom',
        xAxisIndex: b,
        yAxisIndex: b,
        silent: true,
        z: 10,
        data: whiskers,
        renderItem: errorBarRenderItem(t.text),
      });
    }
  });
  return {
    title: titles,
    legend: { ...legendStyle(t), top: 0, left: 'center', data: legend.map((l) => l.name) },
    tooltip: { ...tooltipStyle(t), trigger: 'item' },
    grid: grids,
    xAxis: xAxes,
    yAxis: yAxes,
    series,
  };
}

/**
 * The trade-off: x = mean gain on new-domain benchmarks, y = mean forgetting on old-domain
 * ones (as compare signs them), one labelled point per checkpoint, the base at the origin,
 * the ideal quadrant (gain ≥ 0, forgetting ≤ 0) shaded.
 */
export function tradeoffOption(t: ChartTheme, compare: CompareReport): ChartOption | null {
  const pts = compare.summary
    .map((s) => ({ ...s, index: compare.checkpoints.indexOf(s.checkpoint) }))
    .filter((s) => s.mean_gain !== null && s.mean_forgetting !== null && Number.isFinite(s.mean_gain) && Number.isFinite(s.mean_forgetting));
  if (pts.length === 0) return null;
  const all = [
    { x: 0, y: 0, color: BASE_COLOR, base: true, text: `base: ${shortPath(compare.base)}`, tip: `base: ${compare.base}` },
    ...pts.map((p) => ({
      x: p.mean_gain as number,
      y: p.mean_forgetting as number,
      color: colorAt(p.index < 0 ? 0 : p.index),
      base: false,
      text: `${p.index + 1}: ${shortPath(p.checkpoint)}`,
      tip: `${p.index + 1}: ${p.checkpoint}<br>mean gain ${fmtDelta(p.mean_gain)} (${p.new_benchmarks} new-domain)<br>mean forgetting ${fmtDelta(p.mean_forgetting)} (${p.old_benchmarks} old-domain)`,
    })),
  ];
  const [x0, x1, xStep] = niceExtent(all.map((p) => p.x));
  const [y0, y1, yStep] = niceExtent(all.map((p) => p.y));
  const side = (x: number) => ((x - x0) / (x1 - x0) > 0.6 ? 'left' : 'right');
  // points that (nearly) coincide share one label, a line per point, on the first of them
  const labels = new Map<number, string[]>();
  all.forEach((p, i) => {
    const twin = all.findIndex((q, j) => j < i && Math.abs(q.x - p.x) <= (x1 - x0) * 0.01 && Math.abs(q.y - p.y) <= (y1 - y0) * 0.025);
    const owner = twin >= 0 ? [...labels.keys()].find((k) => labels.get(k)!.includes(all[twin].text)) ?? twin : i;
    labels.set(owner, [...(labels.get(owner) ?? []), p.text]);
  });
  const data = all.map((p, i) => ({
    value: [p.x, p.y],
    symbol: p.base ? 'diamond' : 'circle',
    symbolSize: p.base ? 18 : 12,
    z: p.base ? 1 : 2,
    itemStyle: p.base ? { color: 'rgba(0,0,0,0)', borderColor: p.color, borderWidth: 2 } : { color: p.color },
    label: labels.has(i) ? { show: true, position: side(p.x), formatter: literal(labels.get(i)!.join('\n')), lineHeight: 14 } : { show: false },
    tooltip: { formatter: literal(escapeHtml(p.tip).replace(/&lt;br&gt;/g, '<br>')) },
  }));
  const valueAxis = { type: 'value', nameLocation: 'middle', ...axisStyle(t), axisLine: { onZero: false, lineStyle: { color: t.axis } } };
  return {
    grid: { left: 62, right: 22, top: 14, bottom: 48 },
    tooltip: { ...tooltipStyle(t), trigger: 'item' },
    xAxis: { ...valueAxis, min: x0, max: x1, interval: xStep, name: 'mean gain on new-domain benchmarks (right is better)', nameGap: 28, axisLabel: { ...axisStyle(t).axisLabel, formatter: fmtTick } },
    yAxis: { ...valueAxis, min: y0, max: y1, interval: yStep, name: 'mean forgetting on old-domain (lower is better)', nameGap: 44, axisLabel: { ...axisStyle(t).axisLabel, formatter: fmtTick } },
    series: [
      {
        type: 'scatter',
        data,
        label: { fontSize: 11, color: t.text, distance: 7 },
        labelLayout: { moveOverlap: 'shiftY' },
        emphasis: { scale: 1.2 },
        markArea: {
          silent: true,
          itemStyle: { color: t.goodArea },
          label: { show: true, position: 'insideBottomRight', color: t.good, fontSize: 11, formatter: 'ideal: gain without forgetting' },
          data: [[{ coord: [Math.max(0, x0), y0] }, { coord: [x1, Math.min(0, y1)] }]],
        },
        markLine: { silent: true, symbol: 'none', label: { show: false }, lineStyle: { color: t.axis, type: 'dashed', width: 1 }, data: [{ xAxis: 0 }, { yAxis: 0 }] },
      },
    ],
  };
}
