/**
 * The app's API: every request the renderer can make, what comes back, and the events that
 * stream from long work. One contract, two transports — Electron IPC (through the preload) and
 * the WebSocket of `blocklab serve` — and both ends validate with these schemas. The renderer
 * imports only this folder.
 */
import { z } from 'zod';
import { ExpansionRequestSchema } from './expansion.js';
import { TrainMethodSchema, type StepEvent } from './jobs.js';
import { CellsSchema, NOTEBOOK_LIMITS, type Notebook } from './notebook.js';
import type { CompareReport, EvalReport } from './benchmarks.js';
import type { PlanSummary } from './memory-plan.js';

const Path = z.string().min(1).max(4096);
const Id = z.number().int().nonnegative();

// ------------------------------------------------------------------------------------ jobs

/** Tuning settings a Train cell sends; the rest of the trainer's options take their defaults. */
export const TrainSpecSchema = z.object({
  model: Path,
  data: z.array(Path).min(1).max(64),
  out: Path.optional(),
  method: TrainMethodSchema,
  steps: z.number().int().positive().max(10_000_000),
  lr: z.number().positive().max(1),
  batch: z.number().int().positive().max(4096),
  seq: z.number().int().min(2).max(1_000_000),
  gradAccum: z.number().int().positive().max(4096).optional(),
  warmup: z.number().int().nonnegative().optional(),
  evalEvery: z.number().int().nonnegative().optional(),
  saveEvery: z.number().int().nonnegative().optional(),
  seed: z.number().int().optional(),
  name: z.string().max(200).optional(),
});
export type TrainSpec = z.infer<typeof TrainSpecSchema>;

export const ChatSettingsSchema = z.object({
  system: z.string().max(20_000).default(''),
  temperature: z.number().min(0).max(5).default(0.7),
  topP: z.number().gt(0).max(1).default(0.95),
  maxTokens: z.number().int().positive().max(8192).default(128),
  seed: z.number().int().optional(),
  /** format the conversation with the tokenizer's chat template (when it has one); off: plain text turns, for base models */
  useTemplate: z.boolean().default(true),
});
export type ChatSettings = z.output<typeof ChatSettingsSchema>;

export const ChatMessageSchema = z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string().max(200_000) });
export type ChatTurn = z.infer<typeof ChatMessageSchema>;

export const JobSpecSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('expand'), model: Path, out: Path.optional(), config: ExpansionRequestSchema, overwrite: z.boolean().optional() }),
  z.object({ kind: z.literal('train'), train: TrainSpecSchema }),
  /** resumes an interrupted, stopped or paused training run from its last checkpoint */
  z.object({ kind: z.literal('resume'), runId: Id }),
  z.object({
    kind: z.literal('eval'),
    /** with a base: forgetting and gain of the others against it; without: plain scores */
    base: Path.optional(),
    checkpoints: z.array(Path).min(1).max(32),
    benchmarks: z.array(z.string().min(1).max(4096)).min(1).max(64),
    limit: z.number().int().positive().optional(),
    shots: z.number().int().nonnegative().max(32).optional(),
  }),
  z.object({ kind: z.literal('chat'), model: Path, messages: z.array(ChatMessageSchema).min(1).max(500), settings: ChatSettingsSchema }),
  z.object({ kind: z.literal('export-checkpoint'), model: Path, format: z.enum(['hf', 'gguf']), out: Path.optional(), dtype: z.enum(['float32', 'float16', 'bfloat16']).optional() }),
  z.object({
    kind: z.literal('export-report'),
    runIds: z.array(Id).max(64),
    /** the eval job whose forgetting table goes in the report */
    compare: z.custom<CompareReport>((v) => typeof v === 'object' && v !== null).optional(),
    title: z.string().max(200).optional(),
    formats: z.array(z.enum(['html', 'md', 'pdf'])).min(1),
    out: Path.optional(),
  }),
]);
export type JobSpec = z.infer<typeof JobSpecSchema>;
export type JobKind = JobSpec['kind'];

export interface JobProgress {
  done: number;
  total: number;
  unit: string;
  message: string;
  etaSeconds: number | null;
}

/** What streams from a running job. */
export type JobEvent =
  | { kind: 'log'; message: string }
  | { kind: 'progress'; progress: JobProgress }
  | { kind: 'started'; info: Record<string, unknown> }
  | { kind: 'step'; metrics: StepEvent }
  | { kind: 'eval'; step: number; valLoss: number }
  | { kind: 'checkpoint'; step: number; dir: string }
  | { kind: 'token'; text: string }
  | { kind: 'done'; status: 'completed' | 'cancelled' | 'paused'; result: JobResult }
  | { kind: 'error'; message: string };

export interface ExpandResultInfo {
  out: string;
  placement: string;
  originalLayers: number;
  totalLayers: number;
  newLayers: number[];
  sources: number[];
  identity: { maxAbsLogitDiff: number; maxAbsLogit: number; tolerance: number; probeTokens: number; passed: boolean };
  bytes: number;
  checkpointId: number | null;
}

export interface ChatResultInfo {
  text: string;
  finishReason: string;
  promptTokens: number;
  generatedTokens: number;
  decodeTokensPerSecond: number;
  prefillTokensPerSecond: number;
  templated: boolean;
  /** seconds spent loading the model for this answer: 0 when its chat engine already held it */
  loadSeconds: number;
}

export type JobResult =
  | ({ kind: 'expand' } & ExpandResultInfo)
  | { kind: 'train'; runId: number | null; model: string | null; steps: number; summary: Record<string, unknown> }
  | { kind: 'eval'; runId: number; report: EvalReport; compare: CompareReport | null }
  | ({ kind: 'chat' } & ChatResultInfo)
  | { kind: 'export-checkpoint'; out: string; format: 'hf' | 'gguf'; bytes: number }
  | { kind: 'export-report'; files: { format: string; path: string; bytes: number }[]; html: string };

export interface JobInfo {
  jobId: string;
  kind: JobKind;
  runId: number | null;
  startedAt: string;
  /** the latest step/progress, so a reloaded page can show where a job is */
  last: JobEvent | null;
}

// ------------------------------------------------------------------------------- requests

export const API_METHODS = {
  'app.info': z.object({}),
  'notebooks.list': z.object({}),
  'notebooks.get': z.object({ id: Id }),
  'notebooks.create': z.object({ name: z.string().min(1).max(NOTEBOOK_LIMITS.nameChars), cells: CellsSchema.optional() }),
  /** `baseUpdatedAt`: the version this window started from; a newer one saved elsewhere is not overwritten */
  'notebooks.save': z.object({ id: Id, name: z.string().min(1).max(NOTEBOOK_LIMITS.nameChars), cells: CellsSchema, baseUpdatedAt: z.string().max(64).optional() }),
  'notebooks.delete': z.object({ id: Id }),
  'notebooks.import': z.object({ text: z.string().max(NOTEBOOK_LIMITS.fileBytes), fileName: z.string().max(500).optional() }),
  'notebooks.export': z.object({ id: Id }),
  /** the demo notebook on the bundled files (created on first call, then reopened) */
  'notebooks.demo': z.object({ fresh: z.boolean().optional() }),
  'files.list': z.object({ dir: Path.optional() }),
  'checkpoints.list': z.object({}),
  'checkpoints.inspect': z.object({ path: Path }),
  /** the memory plan of a checkpoint: chat, and training with these settings (blocks for an expanded one) */
  'checkpoints.plan': z.object({
    path: Path,
    method: TrainMethodSchema.optional(),
    batch: z.number().int().positive().max(4096).optional(),
    seq: z.number().int().min(2).max(1_000_000).optional(),
  }),
  'benchmarks.list': z.object({}),
  'runs.list': z.object({ kind: z.enum(['train', 'eval', 'expand', 'export', 'import']).optional(), limit: z.number().int().positive().max(10_000).optional() }),
  'runs.get': z.object({ ids: z.array(Id).min(1).max(64), metrics: z.array(z.string().max(100)).max(32).optional() }),
  'sql.query': z.object({ sql: z.string().min(1).max(100_000), maxRows: z.number().int().positive().max(10_000).optional() }),
  'jobs.start': z.object({ job: JobSpecSchema }),
  'jobs.cancel': z.object({ jobId: z.string().min(1).max(64) }),
  /** stop after the next step with a checkpoint, resumable (training only) */
  'jobs.pause': z.object({ jobId: z.string().min(1).max(64) }),
  'jobs.list': z.object({}),
} as const;

export type ApiMethod = keyof typeof API_METHODS;
export type ApiParams<M extends ApiMethod> = z.input<(typeof API_METHODS)[M]>;

export interface NotebookSummary {
  id: number;
  name: string;
  cells: number;
  updatedAt: string;
}

export interface AppInfo {
  version: string;
  mode: 'electron' | 'server';
  storePath: string;
  demoDir: string;
  userDataDir: string;
  node: string;
  platform: string;
  backend: {
    active: string | null;
    candidates: { name: string; available: boolean; reason?: string; install?: string }[];
    note: string | null;
  };
  gpu: { available: boolean; detail: string; missing: string[] };
  chromium: string | null;
}

export interface FileEntry {
  name: string;
  path: string;
  isDir: boolean;
  /** a folder with config.json and safetensors weights */
  isCheckpoint: boolean;
}

export interface CheckpointSummary {
  id: number;
  path: string;
  label: string;
  madeBy: string;
  parentId: number | null;
  runId: number | null;
  createdAt: string;
  exists: boolean;
  /** a trainer's periodic checkpoint (…/checkpoint-000040), kept for resuming */
  intermediate: boolean;
}

export interface RunSummary {
  id: number;
  kind: string;
  name: string | null;
  method: string | null;
  status: string;
  config: Record<string, unknown> | null;
  summary: Record<string, unknown> | null;
  error: string | null;
  lastStep: number | null;
  totalSteps: number | null;
  outDir: string | null;
  backend: string | null;
  startedAt: string | null;
  endedAt: string | null;
  resultCheckpointId: number | null;
  baseCheckpointId: number | null;
}

export interface RunDetail extends RunSummary {
  curves: Record<string, [number, number][]>;
}

export interface BenchmarkChoice {
  /** what an eval job takes: builtin:NAME or a file path */
  ref: string;
  name: string;
  kind: string;
  domain: string;
  role: string;
  items: number | null;
}

export interface InspectInfo {
  path: string;
  info: Record<string, unknown>;
  lineage: CheckpointSummary[];
}

export interface ApiResults {
  'app.info': AppInfo;
  'notebooks.list': NotebookSummary[];
  'notebooks.get': Notebook;
  'notebooks.create': Notebook;
  'notebooks.save': { updatedAt: string };
  'notebooks.delete': { deleted: boolean };
  'notebooks.import': Notebook;
  'notebooks.export': { fileName: string; text: string };
  'notebooks.demo': Notebook;
  'files.list': { dir: string; parent: string | null; entries: FileEntry[]; roots: { label: string; path: string }[] };
  'checkpoints.list': CheckpointSummary[];
  'checkpoints.inspect': InspectInfo;
  'checkpoints.plan': PlanSummary;
  'benchmarks.list': BenchmarkChoice[];
  'runs.list': RunSummary[];
  'runs.get': RunDetail[];
  'sql.query': { columns: string[]; rows: unknown[][]; truncated: boolean; ms: number };
  'jobs.start': { jobId: string; runId: number | null };
  'jobs.cancel': { cancelled: boolean };
  'jobs.pause': { paused: boolean };
  'jobs.list': JobInfo[];
}

// ------------------------------------------------------------------------------- envelope

export const ApiRequestSchema = z.object({
  id: z.number().int().nonnegative(),
  method: z.enum(Object.keys(API_METHODS) as [ApiMethod, ...ApiMethod[]]),
  params: z.unknown().optional(),
});
export type ApiRequest = z.infer<typeof ApiRequestSchema>;

export type ApiResponse = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

/** Pushed by the backend: job events, and "something in the store changed" hints. */
export type ApiPush = { type: 'job'; jobId: string; event: JobEvent } | { type: 'changed'; what: 'runs' | 'checkpoints' | 'notebooks' };

/** Validates a method's params, with a message a person can act on. */
export function parseParams<M extends ApiMethod>(method: M, params: unknown): z.output<(typeof API_METHODS)[M]> {
  const parsed = API_METHODS[method].safeParse(params ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length ? ` (at ${issue.path.join('.')})` : '';
    throw new Error(`invalid request to ${method}${where}: ${issue.message}`);
  }
  return parsed.data as z.output<(typeof API_METHODS)[M]>;
}

/** What the preload exposes as `window.blocklab` (and the WebSocket client implements). */
export interface BlocklabBridge {
  call(request: { method: ApiMethod; params?: unknown }): Promise<ApiResponse>;
  onPush(listener: (push: ApiPush) => void): () => void;
}
