/**
 * The contract between a caller (CLI, server, Electron main) and the engine process that runs
 * long work. Both ends validate every message with these schemas.
 */
import { z } from 'zod';

/** The trainer's defaults (a Train cell or `blocklab train` overrides what it sets). */
export const TRAIN_DEFAULTS = {
  steps: 100,
  lr: 2e-4,
  batch: 4,
  seq: 128,
  gradAccum: 1,
  warmup: 10,
  minLrRatio: 0.1,
  seed: 0,
  clip: 1.0,
  saveEvery: 0,
  evalEvery: 0,
  evalBatches: 8,
  valFraction: 0.05,
  keepCheckpoints: 2,
} as const;

/** AdamW as LLaMA-style pretraining sets it (torch's formula; see engine/optimizer.ts). */
export const DEFAULT_ADAMW = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0 } as const;

const Projection = z.enum(['q', 'k', 'v', 'o', 'gate', 'up', 'down']);

export const TrainMethodSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('blocks'), layers: z.array(z.number().int().nonnegative()).optional() }),
  z.object({ kind: z.literal('full') }),
  z.object({ kind: z.literal('last'), k: z.number().int().positive() }),
  z.object({ kind: z.literal('lora'), rank: z.number().int().positive(), alpha: z.number().positive(), targets: z.array(Projection).min(1) }),
]);

/** The compute backend a job asks for (`auto`: the engine picks; see engine/backend.ts). */
export const BackendChoiceSchema = z.enum(['auto', 'tensorflow-gpu', 'webgpu', 'tensorflow-cpu', 'wasm', 'cpu']);
export type BackendChoice = z.infer<typeof BackendChoiceSchema>;

export const TrainJobSchema = z.object({
  model: z.string().min(1),
  data: z.object({
    paths: z.array(z.string().min(1)).min(1),
    include: z.array(z.string()).optional(),
    exclude: z.array(z.string()).optional(),
    /** the .jsonl field / .parquet column holding the text (default "text") */
    textColumn: z.string().min(1).max(200).optional(),
  }),
  out: z.string().min(1),
  method: TrainMethodSchema,
  steps: z.number().int().positive(),
  lr: z.number().positive(),
  batch: z.number().int().positive(),
  seq: z.number().int().min(2),
  gradAccum: z.number().int().positive(),
  warmup: z.number().int().nonnegative(),
  minLrRatio: z.number().min(0).max(1),
  seed: z.number().int(),
  adamw: z.object({ beta1: z.number().min(0).lt(1), beta2: z.number().min(0).lt(1), eps: z.number().positive(), weightDecay: z.number().min(0) }),
  clip: z.number().min(0),
  saveEvery: z.number().int().nonnegative(),
  evalEvery: z.number().int().nonnegative(),
  evalBatches: z.number().int().positive(),
  valFraction: z.number().min(0).lt(1),
  keepCheckpoints: z.number().int().nonnegative(),
  cacheDir: z.string().min(1),
  resume: z.boolean(),
  backend: BackendChoiceSchema.optional(),
  stopAfter: z.number().int().positive().optional(),
});
export type TrainJob = z.infer<typeof TrainJobSchema>;

const Backend = BackendChoiceSchema.optional();

/** Work the engine process does besides training: each kind is one request, one result. */
export const JobRequestSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('train'), train: TrainJobSchema }),
  z.object({
    kind: z.literal('expand'),
    model: z.string().min(1),
    out: z.string().min(1),
    /** an ExpansionRequest (validated again by the engine) */
    config: z.record(z.string(), z.unknown()),
    overwrite: z.boolean().optional(),
    backend: Backend,
  }),
  z.object({
    kind: z.literal('eval'),
    storePath: z.string().min(1),
    base: z.string().min(1).optional(),
    checkpoints: z.array(z.string().min(1)).min(1),
    benchmarks: z.array(z.string().min(1)).min(1),
    limit: z.number().int().positive().optional(),
    shots: z.number().int().nonnegative().optional(),
    name: z.string().optional(),
    backend: Backend,
  }),
  z.object({
    kind: z.literal('generate'),
    model: z.string().min(1),
    /** a conversation (chat), or one text to continue (completion: `prompt`, no template) */
    messages: z.array(z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() })).min(1).optional(),
    prompt: z.string().optional(),
    system: z.string(),
    temperature: z.number().min(0),
    topP: z.number().gt(0).max(1),
    topK: z.number().int().nonnegative().optional(),
    repetitionPenalty: z.number().positive().optional(),
    maxTokens: z.number().int().positive(),
    seed: z.number().int().optional(),
    useTemplate: z.boolean(),
    backend: Backend,
  }),
  z.object({
    kind: z.literal('export'),
    model: z.string().min(1),
    format: z.enum(['hf', 'gguf']),
    out: z.string().min(1),
    dtype: z.enum(['float32', 'float16', 'bfloat16', 'q8_0', 'q4_0', 'q4_k_m']).optional(),
    overwrite: z.boolean().optional(),
  }),
  /** what `blocklab inspect` shows about a checkpoint folder (headers only), away from the caller's event loop */
  z.object({ kind: z.literal('inspect'), model: z.string().min(1) }),
  /** a training job written out for LLaMA-Factory (blocklab export-run); the caller records it in the store */
  z.object({
    kind: z.literal('export-run'),
    train: TrainJobSchema,
    out: z.string().min(1),
    overwrite: z.boolean().optional(),
    nodes: z.number().int().min(1).optional(),
    masterAddr: z.string().min(1).optional(),
  }),
  /** a read-only query of the store, on its own connection, in a process that can be killed */
  z.object({ kind: z.literal('sql'), storePath: z.string().min(1), sql: z.string().min(1), maxRows: z.number().int().positive() }),
]);
export type JobRequest = z.infer<typeof JobRequestSchema>;

/** caller → engine process */
export const ToEngineSchema = z.discriminatedUnion('type', [
  /** `keep`: stay alive after this job for the next one (a warm chat engine keeps its model loaded) */
  z.object({ type: z.literal('start'), request: JobRequestSchema, keep: z.boolean().optional() }),
  z.object({ type: z.literal('cancel') }),
]);
export type ToEngine = z.infer<typeof ToEngineSchema>;

const StepSchema = z.object({
  step: z.number().int(),
  totalSteps: z.number().int(),
  loss: z.number(),
  lr: z.number(),
  gradNorm: z.number(),
  tokensPerSecond: z.number(),
  elapsedSeconds: z.number(),
  etaSeconds: z.number(),
  /** the backend's memory after the step (the wasm heap, WebGPU's buffers): what the memory plan's device figure predicts */
  backendBytes: z.number().optional(),
});
export type StepEvent = z.infer<typeof StepSchema>;

/** engine process → caller */
export const FromEngineSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('ready') }),
  /** the engine received a cancel and is stopping (training: after this step, with a checkpoint) */
  z.object({ type: z.literal('cancelling') }),
  z.object({ type: z.literal('log'), message: z.string() }),
  z.object({ type: z.literal('started'), info: z.record(z.string(), z.unknown()) }),
  z.object({ type: z.literal('step'), metrics: StepSchema }),
  z.object({ type: z.literal('eval'), step: z.number().int(), valLoss: z.number() }),
  z.object({ type: z.literal('checkpoint'), step: z.number().int(), dir: z.string() }),
  z.object({
    type: z.literal('progress'),
    progress: z.object({
      done: z.number(),
      total: z.number(),
      unit: z.string(),
      message: z.string(),
      etaSeconds: z.number().nullable(),
      /** the part being worked on now (an evaluation's current checkpoint × benchmark) */
      current: z.object({ label: z.string(), done: z.number(), total: z.number(), unit: z.string() }).optional(),
    }),
  }),
  z.object({ type: z.literal('token'), text: z.string() }),
  z.object({ type: z.literal('done'), result: z.record(z.string(), z.unknown()) }),
  z.object({ type: z.literal('error'), message: z.string(), userError: z.boolean(), stack: z.string().optional() }),
]);
export type FromEngine = z.infer<typeof FromEngineSchema>;
