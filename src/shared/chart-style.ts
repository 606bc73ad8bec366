/**
 * How charts look, for the HTML report (ECharts SSR) and the app's live charts alike: one
 * colour per run or checkpoint (Tableau 10), grey for the base model, round axis extents.
 */
export const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#79706e'];
export const BASE_COLOR = '#9aa0a8';
export const colorAt = (i: number): string => PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];

/** An axis extent on round ticks that holds `values` with a margin: [min, max, step]. */
export function niceExtent(values: number[], ticks = 5): [number, number, number] {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (hi - lo < 1e-12) {
    const m = Math.max(Math.abs(hi), 1e-3) * 0.5;
    lo -= m;
    hi += m;
  }
  const pad = (hi - lo) * 0.08;
  lo -= pad;
  hi += pad;
  const raw = (hi - lo) / ticks;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const m = raw / p;
  const step = (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
  const round = (v: number) => Number(v.toPrecision(12));
  return [round(Math.floor(lo / step) * step), round(Math.ceil(hi / step) * step), step];
}

interface CustomSeriesApi {
  value(i: number): number;
  coord(v: number[]): number[];
}

/**
 * An ECharts custom-series renderItem that draws a ±stderr whisker for data [x, value, stderr]
 * (the lower end clipped at 0): the report's bar panels and the Eval cell's draw the same.
 */
export function errorBarRenderItem(color: string) {
  return (_params: unknown, api: CustomSeriesApi) => {
    const x = api.value(0);
    const v = api.value(1);
    const e = api.value(2);
    const top = api.coord([x, v + e]);
    const bottom = api.coord([x, Math.max(0, v - e)]);
    const style = { stroke: color, lineWidth: 1 };
    return {
      type: 'group',
      children: [
        { type: 'line', shape: { x1: top[0], y1: top[1], x2: bottom[0], y2: bottom[1] }, style },
        { type: 'line', shape: { x1: top[0] - 4, y1: top[1], x2: top[0] + 4, y2: top[1] }, style },
        { type: 'line', shape: { x1: bottom[0] - 4, y1: bottom[1], x2: bottom[0] + 4, y2: bottom[1] }, style },
      ],
    };
  };
}
