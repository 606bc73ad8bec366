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
  progress?: { done: number; total: number; unit: string; etaSeconds?: number | null };
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

/** train */
export interface TrainCellState {
  model?: string;
  data?: string[];
  /** the .jsonl field / .parquet column holding the text (default "text") */
  textColumn?: string;
  method?: 'blocks' | 'full' | 'last' | 'lora';
  k?: number;
  rank?: number;
  alpha?: number;
  targets?: ('q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down')[];
  steps?: number;
  lr?: number;
  batch?: number;
  seq?: number;
  evalEvery?: number;
  name?: string;
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
export interface CompareCellState { runIds?: number[]; smoothing?: number; metric?: string }

/** sql: cell.source is the query */
export type SqlCellState = Record<string, never>;
