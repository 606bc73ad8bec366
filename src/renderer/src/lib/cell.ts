/**
 * What every cell view shares with the notebook around it. A cell component
 * (`cells/<Kind>Cell.svelte`) takes `CellProps` and exports `run()`; the notebook calls it on
 * Shift+Enter or the cell's Run button, shows the status, and autosaves what `onchange` reports.
 */
import type { Cell, CellKind } from '../../../shared/notebook';

export type CellPhase = 'idle' | 'running' | 'done' | 'failed';

export interface CellStatus {
  phase: CellPhase;
  /** the error when failed; a short line while running or when done */
  message?: string;
  progress?: { done: number; total: number; unit: string; etaSeconds?: number | null; current?: { label: string; done: number; total: number; unit: string } };
  /** what the badge says instead of the phase (a training run that ended 'paused' or 'stopped') */
  badge?: string;
}

export interface CellProps {
  cell: Cell;
  /** report an edit: the notebook merges it into the cell and autosaves */
  onchange: (patch: { source?: string; state?: Record<string, unknown> }) => void;
  /** report progress or a result line while running (the notebook sets running/done/failed around run()) */
  setstatus: (s: CellStatus) => void;
}

/** The exported function every cell component has: runs the cell; throws to fail it. */
export interface CellHandle {
  run(): Promise<void>;
  /** stops long work (training, eval, chat); optional */
  stop?(): Promise<void>;
}

export const CELL_TITLES: Record<CellKind, string> = {
  markdown: 'Markdown',
  model: 'Model',
  expansion: 'Expansion',
  train: 'Train',
  eval: 'Eval',
  chat: 'Chat',
  compare: 'Compare',
  sql: 'SQL',
};

/**
 * What a cell's run depends on, as one short fingerprint: its source and the state keys that
 * are settings, not what a run left behind (results, job and run ids, how the last run ended).
 * When it differs from the one recorded with the last run, that run's output is stale. Null for
 * cells whose output is never stale (Markdown renders as it is typed; Compare follows the store).
 */
const OUTPUT_KEYS: Record<CellKind, readonly string[] | null> = {
  markdown: null,
  compare: null,
  model: ['lastRun'],
  expansion: ['lastRun', 'result'],
  train: ['lastRun', 'runId', 'jobId', 'resultModel', 'xAxis', 'smoothing'],
  eval: ['lastRun', 'jobId', 'evalRunId', 'report', 'compare', 'exportTitle', 'exportFormats', 'exportFiles'],
  // a chat's answers belong to the models that wrote them; sampling settings apply to the next one
  chat: null,
  sql: ['lastRun'],
};

function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${stableJson(x)}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** FNV-1a, 32 bits, as hex: enough to tell two settings apart in one cell's history. */
function hash(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

export function inputsFingerprint(cell: Pick<Cell, 'kind' | 'source' | 'state'>): string | null {
  if (cell.kind === 'chat') return hash(stableJson({ models: cell.state.models ?? null }));
  const outputs = OUTPUT_KEYS[cell.kind];
  if (!outputs) return null;
  const inputs = Object.fromEntries(Object.entries(cell.state).filter(([k]) => !outputs.includes(k)));
  return hash(stableJson({ source: cell.source, state: inputs }));
}

/** Reads a typed setting from a cell's state, with a default. */
export function setting<T>(cell: Cell, key: string, fallback: T): T {
  const v = cell.state[key];
  return v === undefined || v === null ? fallback : (v as T);
}

// ---------------------------------------------------------------------------------------------
// The state each kind keeps (cell.state). The demo notebook (resources/demo/notebook.blocklab.json)
// is written in these shapes; every field is optional when read (old or hand-written files).

import type { ChatSettings, ChatTurn, ExpandResultInfo } from '../../../shared/api';
import type { CompareReport, EvalReport } from '../../../shared/benchmarks';
import type { BackendChoice } from '../../../shared/jobs';

/** model: a checkpoint folder */
export interface ModelCellState { path?: string }

/** expansion: cell.source is the ExpansionRequest as JSON */
export interface ExpansionCellState { model?: string; out?: string; result?: ExpandResultInfo }

/** train: every option of `blocklab train` (left out: the trainer's default) */
export interface TrainCellState {
  model?: string;
  data?: string[];
  /** the .jsonl field / .parquet column holding the text (default "text") */
  textColumn?: string;
  /** for data folders: globs of files to read / leave out, one per line */
  include?: string[];
  exclude?: string[];
  method?: 'blocks' | 'full' | 'last' | 'lora';
  /** blocks: train these layers instead of the expansion record's new ones ("2, 5") */
  layers?: string;
  k?: number;
  rank?: number;
  alpha?: number;
  targets?: ('q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down')[];
  steps?: number;
  lr?: number;
  batch?: number;
  seq?: number;
  gradAccum?: number;
  warmup?: number;
  minLrRatio?: number;
  seed?: number;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  clip?: number;
  saveEvery?: number;
  evalEvery?: number;
  evalBatches?: number;
  valFraction?: number;
  keepCheckpoints?: number;
  /** pause after this step (a checkpoint; Resume continues) */
  stopAfter?: number;
  name?: string;
  /** the charts' x axis and smoothing */
  xAxis?: 'step' | 'tokens' | 'time';
  smoothing?: number;
  /** where the run writes its checkpoints (default: a new folder under the Blocklab data folder) */
  out?: string;
  /** the compute backend (default auto) */
  backend?: BackendChoice;
  /** the run this cell last started (its curves come from the store after a reload) */
  runId?: number;
  /** the job while it runs */
  jobId?: string;
  /** the trained checkpoint folder */
  resultModel?: string;
}

/** eval */
export interface EvalCellState {
  base?: string;
  checkpoints?: string[];
  benchmarks?: string[];
  limit?: number;
  /** the compute backend (default auto) */
  backend?: BackendChoice;
  /** the evaluation job while it runs (a reloaded page follows it again) */
  jobId?: string;
  evalRunId?: number;
  report?: EvalReport;
  compare?: CompareReport | null;
}

/** chat: one transcript per side (one or two models) */
export interface ChatCellState {
  models?: string[];
  settings?: Partial<ChatSettings>;
  transcripts?: (ChatTurn & { stats?: { tokensPerSecond: number; tokens: number; finishReason: string; templated?: boolean; loadSeconds?: number; backend?: string } })[][];
}

/** compare */
export interface CompareCellState { runIds?: number[]; smoothing?: number; xAxis?: 'step' | 'tokens' | 'time'; /** (before the panels: the one metric shown) */ metric?: string }

/** sql: cell.source is the query */
export type SqlCellState = Record<string, never>;
