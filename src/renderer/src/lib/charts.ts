/**
 * ECharts in the notebook: one tree-shaken build, the palette the HTML report uses, theme
 * colours for light and dark, and a small wrapper that owns an instance on a div (resizes with
 * it, re-themes when the shell flips `<html data-theme>`, disposes on destroy, and reports when
 * a render has finished). Chart components build options with `ChartTheme` and `axisStyle`.
 */
import * as echarts from 'echarts/core';
import { BarChart, CustomChart, LineChart, ScatterChart } from 'echarts/charts';
import { GridComponent, LegendComponent, MarkAreaComponent, MarkLineComponent, TitleComponent, TooltipComponent } from 'echarts/components';
import { SVGRenderer } from 'echarts/renderers';
import type { EChartsCoreOption } from 'echarts/core';

echarts.use([LineChart, BarChart, ScatterChart, CustomChart, GridComponent, LegendComponent, TitleComponent, TooltipComponent, MarkLineComponent, MarkAreaComponent, SVGRenderer]);

export type ChartOption = EChartsCoreOption;

// Series colours, the base model's grey and round axis extents: the same as the exported report's.
export { PALETTE, BASE_COLOR, colorAt, niceExtent } from '../../../shared/chart-style';

export const CHART_FONT = '-apple-system, "Segoe UI", Roboto, "Helvetica Neue", Helvetica, Arial, "Liberation Sans", "DejaVu Sans", sans-serif';

export interface ChartTheme {
  dark: boolean;
  text: string;
  muted: string;
  axis: string;
  grid: string;
  tooltipBg: string;
  tooltipBorder: string;
  /** the fill of hollow markers (the page background, near enough) */
  surface: string;
  good: string;
  goodArea: string;
  /** the opacity of a smoothed curve's raw line behind it: higher on the dark background, where faint lines vanish */
  rawOpacity: number;
}

const LIGHT: ChartTheme = {
  dark: false,
  text: '#30343a',
  muted: '#5b6068',
  axis: '#9aa0a8',
  grid: '#e6e9ed',
  tooltipBg: 'rgba(255,255,255,0.97)',
  tooltipBorder: '#d8dce1',
  surface: '#ffffff',
  good: '#2e7d32',
  goodArea: 'rgba(46, 160, 67, 0.10)',
  rawOpacity: 0.3,
};

const DARK: ChartTheme = {
  dark: true,
  text: '#d5d9de',
  muted: '#a0a6ae',
  axis: '#6b717a',
  grid: '#30353c',
  tooltipBg: 'rgba(30,33,38,0.97)',
  tooltipBorder: '#454b53',
  surface: '#1d2026',
  good: '#56c271',
  goodArea: 'rgba(86, 194, 113, 0.12)',
  rawOpacity: 0.5,
};

/** The shell's theme: `<html data-theme="light|dark">`, else the system preference. */
export function currentTheme(): ChartTheme {
  const t = document.documentElement.dataset.theme;
  if (t === 'dark') return DARK;
  if (t === 'light') return LIGHT;
  return window.matchMedia?.('(prefers-color-scheme: dark)').matches ? DARK : LIGHT;
}

/** Calls `listener` whenever the theme changes; returns the unsubscribe. */
export function watchTheme(listener: (t: ChartTheme) => void): () => void {
  const observer = new MutationObserver(() => listener(currentTheme()));
  observer.observe(document.documentElement, { attributes: true, attributeFilter: ['data-theme'] });
  const media = window.matchMedia?.('(prefers-color-scheme: dark)');
  const onMedia = () => listener(currentTheme());
  media?.addEventListener('change', onMedia);
  return () => {
    observer.disconnect();
    media?.removeEventListener('change', onMedia);
  };
}

/** Axis styling shared by every chart (value and category axes). */
export function axisStyle(t: ChartTheme) {
  return {
    axisLine: { lineStyle: { color: t.axis } },
    axisTick: { lineStyle: { color: t.axis } },
    axisLabel: { color: t.muted, fontSize: 11 },
    splitLine: { lineStyle: { color: t.grid } },
    nameTextStyle: { color: t.muted, fontSize: 11 },
  };
}

/** Tooltip styling for the theme. */
export function tooltipStyle(t: ChartTheme) {
  return {
    backgroundColor: t.tooltipBg,
    borderColor: t.tooltipBorder,
    textStyle: { color: t.text, fontSize: 12 },
    confine: true,
  };
}

/** Legend styling for the theme. */
export function legendStyle(t: ChartTheme) {
  return { textStyle: { color: t.text, fontSize: 12 }, inactiveColor: t.axis, icon: 'roundRect', itemWidth: 14, itemHeight: 8, type: 'scroll' as const, pageTextStyle: { color: t.muted } };
}

/** Text for a label or tooltip taken as it is: a string formatter would expand {b}/{c} found in names. */
export function literal(text: string): () => string {
  return () => text;
}

/** HTML-escapes untrusted text for tooltip formatters (ECharts puts their return value in the DOM). */
export { escapeHtml } from '../../../shared/html';

export interface ChartHandle {
  /** replaces the option (not merged), or clears the chart for null */
  set(option: ChartOption | null): void;
  dispose(): void;
}

/**
 * An ECharts instance on `el`: follows the element's size, and calls `onRendered` each time a
 * render finishes (the listener is attached before the first setOption, so none is missed).
 */
export function mountChart(el: HTMLElement, onRendered?: () => void): ChartHandle {
  const chart = echarts.init(el, null, { renderer: 'svg' });
  if (onRendered) chart.on('finished', onRendered);
  // what the chart draws, as ECharts holds it (series, their data): the browser tests read the
  // values on screen from here, e.g. `el.chartOption().series[0].data`
  Object.defineProperty(el, 'chartOption', { configurable: true, value: () => (chart.isDisposed() ? null : chart.getOption()) });
  let frame = 0;
  const resize = new ResizeObserver(() => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => {
      if (!chart.isDisposed()) chart.resize();
    });
  });
  resize.observe(el);
  return {
    set(option) {
      if (chart.isDisposed()) return;
      if (option === null) chart.clear();
      else chart.setOption({ animation: false, textStyle: { fontFamily: CHART_FONT }, ...option }, { notMerge: true, lazyUpdate: false });
    },
    dispose() {
      cancelAnimationFrame(frame);
      resize.disconnect();
      chart.dispose();
    },
  };
}

