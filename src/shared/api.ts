/**
 * The app's API: every request the renderer can make, what comes back, and the events that
 * stream from long work. One contract, two transports — Electron IPC (through the preload) and
 * the WebSocket of `blocklab serve` — and both ends validate with these schemas. The renderer
 * imports only this folder.
 */
import { z } from 'zod';
import { ExpansionRequestSchema } from './expansion.js';
import { BackendChoiceSchema, TrainMethodSchema, type StepEvent } from './jobs.js';
import { TrainSpecSchema } from './train-spec.js';
import { CellsSchema, NOTEBOOK_LIMITS, type Notebook } from './notebook.js';
import type { CompareReport, EvalReport } from './benchmarks.js';
import type { GpuMemory, PlanSummary } from './memory-plan.js';
import { jsonBytes, mib } from './size.js';

/**
 * The largest API message either transport carries, in UTF-8 bytes of its JSON (what a
 * WebSocket frame holds). The server's frame limit; the client refuses to send more, with this
 * message. Every notebook the schemas accept fits (see NOTEBOOK_LIMITS).
 */
export const MAX_API_MESSAGE_BYTES = 24 * 1024 * 1024;
/** All the text of one chat request (system prompt and every turn). */
export const MAX_CHAT_BYTES = 4 * 1024 * 1024;

const Path = z.string().min(1).max(4096);
const Id = z.number().int().nonnegative();

// ------------------------------------------------------------------------------------ jobs

// Tuning settings a Train cell sends (every option of `blocklab train`): src/shared/train-spec.ts
export { TrainSpecSchema, type TrainSpec } from './train-spec.js';

export const ChatSettingsSchema = z.object({
  /** chat: the conversation is the prompt; completion: each prompt is continued on its own, as `blocklab generate --prompt` does */
  mode: z.enum(['chat', 'completion']).default('chat'),
  system: z.string().max(20_000, 'must be at most 20,000 characters').default(''),
  temperature: z.number({ error: 'must be a number' }).min(0, 'must be 0 (greedy) or more').max(5, 'must be at most 5').default(0.7),
  topP: z.number({ error: 'must be a number' }).gt(0, 'must be above 0').max(1, 'must be at most 1').default(0.95),
  /** 0: off */
  topK: z.number({ error: 'must be a number' }).int('must be a whole number').min(0, 'must be 0 (off) or more').max(100_000, 'must be at most 100,000').default(0),
  /** 1: off */
  repetitionPenalty: z.number({ error: 'must be a number' }).gt(0, 'must be above 0').max(10, 'must be at most 10').default(1),
  maxTokens: z.number({ error: 'must be a number' }).int('must be a whole number').positive('must be at least 1').max(8192, 'must be at most 8192').default(128),
  /** the sampling seed (the CLI's default too), so an answer can be written again */
  seed: z.number({ error: 'must be a number' }).int('must be a whole number').min(-(2 ** 31), 'is too small').max(2 ** 31 - 1, 'is too large').default(0),
  /** format the conversation with the tokenizer's chat template (when it has one); off: plain text turns, for base models */
  useTemplate: z.boolean().default(true),
  /** the compute backend the model runs on (default auto) */
  backend: BackendChoiceSchema.optional(),
});
export type ChatSettings = z.output<typeof ChatSettingsSchema>;

export const ChatMessageSchema = z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string().max(200_000) });
export type ChatTurn = z.infer<typeof ChatMessageSchema>;

export const JobSpecSchema = z.discriminatedUnion('kind', [
  /** `overwrite`: replace the Blocklab output already at `out`; the app sends it only after the user confirmed, naming the folder */
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
    backend: BackendChoiceSchema.optional(),
  }),
  z.object({
    kind: z.literal('chat'),
    model: Path,
    messages: z
      .array(ChatMessageSchema)
      .min(1)
      .max(500)
      .refine((m) => jsonBytes(m) <= MAX_CHAT_BYTES, `the conversation is longer than ${mib(MAX_CHAT_BYTES)}; start a new chat`),
    settings: ChatSettingsSchema,
  }),
  /** a Train cell's run handed to LLaMA-Factory for a GPU cluster (blocklab export-run) */
  z.object({
    kind: z.literal('export-run'),
    train: TrainSpecSchema,
    to: z.literal('llamafactory'),
    out: Path.optional(),
    overwrite: z.boolean().optional(),
    nodes: z.number().int().min(1).max(4096).optional(),
    masterAddr: z.string().min(1).max(255).regex(/^[A-Za-z0-9._:\-\[\]]+$/, 'must be a host name or address').optional(),
  }),
  z.object({
    kind: z.literal('export-checkpoint'),
    model: Path,
    format: z.enum(['hf', 'gguf']),
    out: Path.optional(),
    /** hf: float32, float16, bfloat16; gguf: float32, float16, q8_0, q4_0, q4_k_m (default: the source's precision) */
    dtype: z.enum(['float32', 'float16', 'bfloat16', 'q8_0', 'q4_0', 'q4_k_m']).optional(),
    overwrite: z.boolean().optional(),
  }),
  z.object({
    kind: z.literal('export-report'),
    runIds: z.array(Id).max(64),
    /** the eval job whose forgetting table goes in the report */
    compare: z.custom<CompareReport>((v) => typeof v === 'object' && v !== null).optional(),
    title: z.string().max(200).optional(),
    formats: z.array(z.enum(['html', 'md', 'pdf'])).min(1),
    out: Path.optional(),
    overwrite: z.boolean().optional(),
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
  /** the part being worked on now: an evaluation's current checkpoint × benchmark and its items */
  current?: { label: string; done: number; total: number; unit: string };
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

export interface ExportRunInfo {
  out: string;
  method: string;
  finetuningType: 'freeze' | 'full' | 'lora';
  /** by LLaMA-Factory's rule applied to the train.yaml written */
  trainableLayers: number[];
  expressedAs: string;
  files: string[];
  documents: number;
  commands: { singleNode: string; multiNode: string[] };
  runId: number | null;
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
  /** the backend that computed it (wasm, webgpu, …) */
  backend: string;
  /** where the weights were (the memory plan's mode): resident, packed or streamed; '' if unknown */
  residency: string;
}

/** What a GGUF export's rounding costs: mean next-token NLL of a probe text with the checkpoint's weights and with the file's. */
export interface GgufNllChange {
  /** what was scored */
  text: string;
  /** scored positions */
  tokens: number;
  /** mean NLL in nats per token with the checkpoint's weights */
  checkpoint: number;
  /** the same with the GGUF file's weights (dequantized) */
  gguf: number;
  /** gguf − checkpoint */
  delta: number;
}

export type JobResult =
  | ({ kind: 'expand' } & ExpandResultInfo)
  | { kind: 'train'; runId: number | null; model: string | null; steps: number; summary: Record<string, unknown> }
  | { kind: 'eval'; runId: number; report: EvalReport; compare: CompareReport | null }
  | ({ kind: 'chat' } & ChatResultInfo)
  | { kind: 'export-checkpoint'; out: string; format: 'hf' | 'gguf'; bytes: number; dtype: string; nll: GgufNllChange | null; warnings: string[] }
  | ({ kind: 'export-run' } & ExportRunInfo)
  | { kind: 'export-report'; files: { format: string; path: string; bytes: number }[]; html: string };

export interface JobInfo {
  jobId: string;
  kind: JobKind;
  runId: number | null;
  startedAt: string;
  /** the latest step/progress, so a reloaded page can show where a job is */
  last: JobEvent | null;
  /** the latest training step (its readouts: loss, lr, grad norm, tokens/s, elapsed) */
  step: StepEvent | null;
  /** a Stop or Pause was asked for and the job is writing its checkpoint */
  stopping: 'stop' | 'pause' | null;
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
  /** one run with everything its page shows: curves, status history, checkpoints, lineage */
  'runs.page': z.object({ id: Id }),
  /** the checkpoints made from the one in `path` (a re-run writing there would orphan them), and a free folder next to it */
  'checkpoints.descendants': z.object({ path: Path }),
  'sql.query': z.object({ sql: z.string().min(1).max(100_000), maxRows: z.number().int().positive().max(10_000).optional() }),
  /** the store's tables and their columns (the SQL cell completes them) */
  'sql.schema': z.object({}),
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

/** The WebGPU adapter Dawn found (engine/webgpu.ts): what Doctor shows. */
export interface WebgpuAdapterInfo {
  vendor: string;
  architecture: string;
  /** the device's name (Dawn: the GPU model, or the renderer string on OpenGL ES) */
  device: string;
  /** Dawn's description: the driver and its version (e.g. "NVIDIA: 550.54.14", "OpenGL ES 3.2 Mesa 22.3.6") */
  description: string;
  /** the native API Dawn drives it through */
  route: 'vulkan' | 'metal' | 'd3d12' | 'opengles';
  featureLevel: 'core' | 'compatibility';
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  /** the adapter can run WGSL with f16 (`shader-f16`) */
  shaderF16: boolean;
  /** why this is a software (CPU) adapter, or null for a real GPU */
  software: string | null;
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
    /** the WebGPU adapter found (a software one included), or null */
    webgpuAdapter: WebgpuAdapterInfo | null;
    /** a real adapter's memory, where the driver reports it (or BLOCKLAB_GPU_MEMORY says it) */
    gpuMemory: GpuMemory | null;
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

export interface RunEvent {
  at: string;
  status: string;
  step: number | null;
  note: string | null;
}

/** What a run's page shows (W&B's run overview). */
export interface RunPage {
  run: RunDetail;
  /** status history, oldest first */
  events: RunEvent[];
  /** the checkpoints this run wrote (a trainer's periodic saves, its final model, an expansion's output) */
  checkpoints: CheckpointSummary[];
  /** where it started from: the base checkpoint and what that was made from, newest first */
  lineage: CheckpointSummary[];
  /** checkpoints made from this run's result since (what a re-run over it would orphan) */
  descendants: CheckpointSummary[];
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

export interface SqlTable {
  name: string;
  columns: { name: string; type: string }[];
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
  'runs.page': RunPage;
  'checkpoints.descendants': { checkpoint: CheckpointSummary | null; descendants: CheckpointSummary[]; freePath: string };
  'sql.query': { columns: string[]; rows: unknown[][]; truncated: boolean; ms: number };
  'sql.schema': { tables: SqlTable[] };
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

/**
 * `code` "confirm-overwrite": the request would replace an output Blocklab wrote earlier at
 * `path`; the app asks the user (naming it) and sends the request again with `overwrite`.
 */
export type ApiResponse = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string; code?: 'confirm-overwrite'; path?: string };

/** Pushed by the backend: job events, and "something in the store changed" hints. */
export type ApiPush = { type: 'job'; jobId: string; runId?: number | null; event: JobEvent } | { type: 'changed'; what: 'runs' | 'checkpoints' | 'notebooks' };

/** Why a request is too large to send, or null: the client checks before sending. */
export function oversizeRequest(request: { method: string; params?: unknown }, encodedBytes = jsonBytes(request)): string | null {
  if (encodedBytes <= MAX_API_MESSAGE_BYTES) return null;
  return `${request.method}: the request is ${mib(encodedBytes)}, more than the ${mib(MAX_API_MESSAGE_BYTES)} the app sends in one message`;
}

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
