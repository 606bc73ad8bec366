/**
 * The memory plan of a checkpoint on this machine (the arithmetic is src/shared/memory-plan.ts):
 * its header figures, the backends' limits (the wasm heap, the RAM available, a GPU's memory
 * where known), and the refusal every command and job makes before loading when a task does
 * not fit — with what would. A backend that still runs out of memory is reported as that, with
 * the plan's advice, never as an internal error.
 */
import { readFileSync } from 'node:fs';
import { gpuMemory, gpuMemoryLimit, parseBytes, type GpuMemory } from './gpu-memory.js';
import { BlocklabError } from './errors.js';
import { freemem } from 'node:os';
import { backendReport, type BackendName } from './backend.js';
import type { Checkpoint } from './checkpoint.js';
import { LlamaModel } from './model.js';
import { trainableLayers, type TrainMethod } from './trainable.js';
import { BLOCK_TENSORS } from './weights.js';
import { webgpuMaxBindingBytes } from './webgpu.js';
import { TRAIN_DEFAULTS } from '../../shared/jobs.js';
import {
  WASM_HEAP_LIMIT,
  describePlan,
  formatPlanBytes,
  planMemory,
  type MemoryPlan,
  type PlanBackend,
  type PlanBackendName,
  type PlanDType,
  type PlanLimits,
  type PlanModel,
  type PlanSummary,
  type PlanTask,
  type StoredGroup,
} from '../../shared/memory-plan.js';

export type { MemoryPlan, PlanSummary, PlanTask } from '../../shared/memory-plan.js';

/** A checkpoint's figures for the plan: its config and the sizes of its stored tensors. */
export function planModelOf(ckpt: Checkpoint): PlanModel {
  const c = ckpt.config;
  const group = (names: string[]): StoredGroup => {
    const g: StoredGroup = { params: 0, bytes: 0, linearParams: 0 };
    for (const n of names) {
      const t = ckpt.tensors.get(n);
      if (!t) continue;
      const params = t.shape.reduce((a, b) => a * b, 1);
      g.params += params;
      g.bytes += t.byteLength;
      if (t.shape.length === 2) g.linearParams += params;
    }
    return g;
  };
  const bytesByDtype: Partial<Record<PlanDType, number>> = {};
  for (const t of ckpt.tensors.values()) bytesByDtype[t.dtype] = (bytesByDtype[t.dtype] ?? 0) + t.byteLength;
  return {
    layers: c.numLayers,
    hidden: c.hiddenSize,
    intermediate: c.intermediateSize,
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    vocab: c.vocabSize,
    tied: c.tieWordEmbeddings,
    maxPositions: c.maxPositionEmbeddings,
    bytesByDtype,
    embed: group(['model.embed_tokens.weight']),
    head: c.tieWordEmbeddings ? null : group(['lm_head.weight']),
    norm: group(['model.norm.weight']),
    blocks: Array.from({ length: c.numLayers }, (_, i) => group(BLOCK_TENSORS.map(([, suffix]) => `model.layers.${i}.${suffix}`))),
  };
}

/** RAM the process can still take: /proc/meminfo's MemAvailable (page cache counts as free), else os.freemem(). */
export function availableRam(): number {
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return freemem();
}

export { parseBytes };

/** The device's memory, in words and bytes, and how the plan treats it. */
function deviceOf(name: PlanBackendName): Omit<PlanBackend, 'name' | 'maxTensorBytes'> {
  switch (name) {
    case 'wasm':
      return { deviceName: 'wasm heap', deviceLimit: WASM_HEAP_LIMIT };
    case 'cpu':
      return { deviceName: 'RAM (JavaScript arrays)', deviceLimit: null };
    case 'tensorflow-cpu':
      return { deviceName: 'RAM (libtensorflow)', deviceLimit: null };
    case 'tensorflow-gpu': {
      // libtensorflow's GPU route is CUDA: an NVIDIA GPU
      const mem = gpuMemory({ vendor: 'nvidia', architecture: '', device: '', description: '', route: 'vulkan', featureLevel: 'core', maxBufferSize: 0, maxStorageBufferBindingSize: 0, shaderF16: false, software: null });
      return { deviceName: gpuMemoryName(mem), deviceLimit: gpuMemoryLimit(mem), separateMemory: true };
    }
    case 'webgpu': {
      const adapter = backendReport()?.webgpuAdapter ?? null;
      // a software adapter's buffers are RAM: planned as RAM, as wasm's heap is
      if (adapter?.software) return { deviceName: `RAM (${adapter.software})`, deviceLimit: null, packedWeights: true };
      const mem = gpuMemory(adapter);
      return { deviceName: gpuMemoryName(mem), deviceLimit: gpuMemoryLimit(mem), separateMemory: true, packedWeights: true };
    }
  }
}

function gpuMemoryName(mem: GpuMemory | null): string {
  if (!mem) return 'GPU memory (size unknown: set BLOCKLAB_GPU_MEMORY, e.g. 24GiB, to have it checked)';
  return `GPU memory (${mem.free !== null ? `${formatPlanBytes(mem.free)} free of ${formatPlanBytes(mem.total)}` : formatPlanBytes(mem.total)}, ${mem.source})`;
}

/**
 * The limits to plan against: `backend` first (the one the task runs on), then the others worth
 * comparing (wasm and cpu are always there; GPU backends when they are the active one).
 * `BLOCKLAB_DEVICE_BUDGET` caps the backend's memory below its own limit (tests use it to force
 * streaming on small models).
 */
export function planLimits(backend: BackendName, opts: { deviceBudget?: number | null } = {}): PlanLimits {
  const names: PlanBackendName[] = [backend, ...(['wasm', 'cpu'] as const).filter((b) => b !== backend)];
  const backends: PlanBackend[] = names.map((name) => ({
    name,
    ...deviceOf(name),
    // the webgpu device's binding limit, once it exists (the engine made it before planning)
    maxTensorBytes: name === 'webgpu' ? webgpuMaxBindingBytes() : null,
  }));
  return {
    ramAvailable: availableRam(),
    backends,
    deviceBudget: opts.deviceBudget !== undefined ? opts.deviceBudget : parseBytes(process.env.BLOCKLAB_DEVICE_BUDGET, 'BLOCKLAB_DEVICE_BUDGET'),
  };
}

/** The plan of `task` on `ckpt` with `backend` (and the others for comparison). */
export function planCheckpoint(ckpt: Checkpoint, task: PlanTask, backend: BackendName, opts: { deviceBudget?: number | null } = {}): MemoryPlan {
  return planMemory(planModelOf(ckpt), task, planLimits(backend, opts));
}

/** The latest plan a task was started under: its advice goes into an out-of-memory message. */
let lastPlan: MemoryPlan | null = null;

/** Refuses a task whose plan does not fit, before anything loads: why, and what would fit. */
export function requireFit(plan: MemoryPlan, dir: string): MemoryPlan {
  lastPlan = plan;
  if (plan.fits) return plan;
  const what = plan.task.kind === 'train' ? `training (${plan.task.method}, batch ${plan.task.batch} × seq ${plan.task.seq})` : plan.task.what;
  throw new BlocklabError(
    `${what} does not fit in memory on the ${plan.backend} backend: ${plan.problems.join('; ')}. ` +
      `What would: ${plan.advice.join('; or ')}. (blocklab plan ${dir} shows the figures)`,
    { file: dir },
  );
}

/** True for the ways a backend reports running out of memory (tfjs-wasm aborts, a failed allocation). */
export function isOutOfMemory(e: unknown): boolean {
  const text = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return /BackendOutOfMemoryError|Aborted\(|out of memory|Cannot enlarge memory|Array buffer allocation failed|offset is out of bounds|memory access out of bounds/i.test(text);
}

/**
 * An out-of-memory from the backend as a person-readable error with the plan's advice; any other
 * error unchanged.
 */
export function explainOutOfMemory(e: unknown): unknown {
  if (!isOutOfMemory(e)) return e;
  const first = (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 200);
  const base = /BackendOutOfMemoryError|WebAssembly backend ran out/.test(first) ? first : `the compute backend ran out of memory (${first.replace(/\s+Build with -sASSERTIONS.*$/, '')})`;
  const p = lastPlan;
  const advice = p
    ? ` The plan expected ${formatPlanBytes(p.device.need)} of ${p.device.name}${p.device.limit !== null ? ` of ${formatPlanBytes(p.device.limit)}` : ''}` +
      ` and ${formatPlanBytes(p.ram.need)} of RAM; to need less: ${(p.advice.length ? p.advice : fallbackAdvice(p)).join('; or ')}.`
    : ' Lower --batch or --seq, use a smaller model, or --backend cpu (no 4 GiB heap limit); `blocklab plan MODEL` shows what fits.';
  return new BlocklabError(`${base}.${advice}`, { cause: e });
}

function fallbackAdvice(p: MemoryPlan): string[] {
  const out: string[] = [];
  if (p.task.kind === 'train') out.push(`a smaller --batch (now ${p.task.batch}) or --seq (now ${p.task.seq})`);
  else out.push('shorter inputs or a smaller --batch');
  if (p.backend === 'wasm') out.push('--backend cpu (no 4 GiB heap limit, slower)');
  return out;
}

export { describePlan };

// ---------------------------------------------------------------------------------------------
// Tasks, and loading under a plan

/** Scoring one sequence of `tokens` tokens. */
export function scoreTask(tokens: number): PlanTask {
  return { kind: 'infer', what: 'score', batch: 1, tokens: Math.max(1, tokens), context: 0 };
}

/** Generating: a prompt of `promptTokens` (prefilled at once), then up to `maxTokens` more with a KV cache. */
export function generateTask(promptTokens: number, maxTokens: number, maxPositions: number, what: 'generate' | 'chat' = 'generate'): PlanTask {
  const tokens = Math.max(1, Math.min(promptTokens, maxPositions));
  return { kind: 'infer', what, batch: 1, tokens, context: Math.min(maxPositions, tokens + maxTokens) };
}

/** Loads a checkpoint's weights where `plan` says (after requireFit). */
export async function loadPlanned(ckpt: Checkpoint, plan: MemoryPlan, purpose: 'infer' | 'train' = 'infer'): Promise<LlamaModel> {
  return LlamaModel.fromTensors(ckpt.config, ckpt.tensors, { residency: plan.residency.plan, purpose });
}

/** Training `method` on `ckpt` with batches of batch × seq tokens. */
export function trainTask(ckpt: Checkpoint, method: TrainMethod, batch: number, seq: number): PlanTask {
  return {
    kind: 'train',
    method: method.kind,
    trainableLayers: trainableLayers(method, ckpt),
    loraRank: method.kind === 'lora' ? method.rank : undefined,
    loraTargets: method.kind === 'lora' ? method.targets : undefined,
    batch,
    seq,
  };
}

/** The active backend's name (initBackend has run before anything is planned for loading). */
export function activeBackend(): BackendName {
  return backendReport()?.active ?? 'wasm';
}

/**
 * What `blocklab plan`, `inspect --json` and the app show: the chat plan, and a training plan
 * (the method asked for; else block-only tuning when the checkpoint has new blocks).
 */
export function planSummary(
  ckpt: Checkpoint,
  opts: { backend?: BackendName; method?: TrainMethod; batch?: number; seq?: number; deviceBudget?: number | null } = {},
): PlanSummary {
  const backend = opts.backend ?? activeBackend();
  const ctx = ckpt.config.maxPositionEmbeddings;
  const chat = generateTask(Math.min(512, ctx), ctx, ctx, 'chat');
  const inference = planCheckpoint(ckpt, chat, backend, opts);
  const scoring = planCheckpoint(ckpt, scoreTask(Math.min(1024, ctx)), backend, opts);
  let training: MemoryPlan | null = null;
  const method = opts.method ?? (ckpt.expansion ? ({ kind: 'blocks' } as const) : null);
  if (method) {
    const seq = Math.min(opts.seq ?? TRAIN_DEFAULTS.seq, ctx);
    training = planCheckpoint(ckpt, trainTask(ckpt, method, opts.batch ?? TRAIN_DEFAULTS.batch, seq), backend, opts);
  }
  return { path: ckpt.dir, backend, ram_available: inference.ram.available, inference, scoring, training };
}

/**
 * Most tokens one evaluation forward pass may hold: `batch` sequences of `length` tokens, or as
 * many as the memory plan allows (at least one sequence).
 */
export function evalTokenBudget(ckpt: Checkpoint, batch: number, length: number): number {
  for (let b = batch; b > 1; b = Math.floor(b / 2)) {
    if (planCheckpoint(ckpt, { kind: 'infer', what: 'eval', batch: b, tokens: length, context: 0 }, activeBackend()).fits) return b * length;
  }
  return length;
}
