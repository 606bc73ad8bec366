import type { ForgettingSummary, MetricFamily } from './forgetting.js';

/**
 * What a report shows, independent of how it is rendered (HTML with SVG charts, Markdown,
 * PDF) and of where the numbers came from (the store, a demo run).
 */

export interface ReportCurve {
  name: string; // e.g. 'loss', 'val_loss'
  points: [number, number][]; // [step, value]
}

export interface ReportRun {
  id: number | null;
  label: string; // e.g. 'blocks (interleave +2)'
  method: string;
  status: string;
  config: Record<string, unknown>;
  steps: number | null;
  firstLoss: number | null;
  lastLoss: number | null;
  valLoss: number | null;
  tokensPerSecond: number | null;
  trainableParams: number | null;
  totalParams: number | null;
  seconds: number | null;
  /** checkpoint label of the model it trained */
  base: string | null;
  /** checkpoint label of what it produced */
  result: string | null;
  curves: ReportCurve[];
}

export interface ReportCheckpoint {
  label: string;
  path: string;
  madeBy: string; // import | expand | train | export
  parent: string | null; // label of the parent checkpoint
  detail?: string; // e.g. 'interleave: 4 → 6 layers, new 2←1, 5←3'
}

export interface ReportBenchmark {
  name: string;
  kind: string; // multiple_choice | perplexity | generation
  domain: string;
  role: 'old' | 'new';
  metric: string; // the headline metric shown
  higherIsBetter: boolean;
}

export interface ReportForgettingRow {
  benchmark: string;
  base: number | null;
  values: { checkpoint: string; value: number | null; stderr: number | null; delta: number | null; flag: 'gain' | 'forgetting' }[];
}

export interface ReportForgetting {
  base: string; // checkpoint label
  checkpoints: string[]; // labels, in display order
  benchmarks: ReportBenchmark[];
  rows: ReportForgettingRow[];
  /** per checkpoint: mean gain over new-domain benchmarks (x), mean forgetting over old-domain ones (y), within `summaryFamily` only */
  summary: { checkpoint: string; meanGain: number | null; meanForgetting: number | null }[];
  /** the one metric family the scatter's means are over (null: none) */
  summaryFamily?: MetricFamily | null;
  /** per-family means with standard errors and the conclusions they allow (src/shared/forgetting.ts) */
  families?: ForgettingSummary;
  /** how delta is defined, for the reader */
  deltaNote: string;
}

export interface ReportData {
  title: string;
  createdAt: string; // ISO
  environment: Record<string, string>;
  checkpoints: ReportCheckpoint[];
  runs: ReportRun[];
  forgetting: ReportForgetting | null;
  /** Markdown paragraphs: findings, caveats */
  notes: string[];
}
