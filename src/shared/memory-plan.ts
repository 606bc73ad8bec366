/**
 * The memory plan: before anything loads, what a task needs — weights by dtype, trainable
 * parameters with their gradients and AdamW moments, activations for batch × seq, the KV cache —
 * where each group of weights will live (float32 on the backend, its stored bytes in Node
 * memory, or streamed from the file), and whether that fits the backend's memory (the 4 GiB
 * wasm heap, free RAM, a GPU's memory where known). When it does not, the plan says what would:
 * a smaller batch or sequence, block-only instead of full, another backend.
 *
 * Pure arithmetic on a checkpoint's header figures, so every process can run it: the engine
 * (which refuses a task before loading when it does not fit), `blocklab plan`, `inspect --json`
 * and the app's cells. The activation figures are estimates calibrated against tfjs's measured
 * peaks (see the constants below); weights, gradients, optimizer state and the KV cache are exact.
 */

export type PlanDType = 'F32' | 'F16' | 'BF16';
export type PlanBackendName = 'tensorflow-gpu' | 'tensorflow-cpu' | 'webgpu' | 'wasm' | 'cpu';

/**
 * Where a group of weights lives (engine/weights.ts): 'device' float32 on the backend; 'packed'
 * (WebGPU) its stored 16-bit values on the GPU, widened by a shader when it computes (a block
 * whole, the embedding the rows a batch gathers, the head a chunk of rows at a time); 'host' its
 * stored bytes in RAM; 'file' read from the file at each use.
 */
export type Residency = 'device' | 'packed' | 'host' | 'file';
/** Where a group that is not on the backend lives: RAM or the file. */
export type StreamedResidency = 'host' | 'file';

export interface ResidencyPlan {
  embed: Residency;
  /** the untied head (a tied head is the embedding) */
  head: Residency;
  blocks: Residency[];
}

/** Stored tensors of one group (the embedding, the head, the final norm, one block). */
export interface StoredGroup {
  params: number;
  bytes: number;
  /** parameters in 2-D (linear) weights: their float32 copies are what XNNPACK packs */
  linearParams: number;
}

/** The figures of a checkpoint the plan needs: its config and its tensors' sizes (headers only). */
export interface PlanModel {
  layers: number;
  hidden: number;
  intermediate: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
  tied: boolean;
  maxPositions: number;
  bytesByDtype: Partial<Record<PlanDType, number>>;
  embed: StoredGroup;
  head: StoredGroup | null;
  norm: StoredGroup;
  blocks: StoredGroup[];
}

export type PlanTask =
  | {
      kind: 'infer';
      /** what runs: score one text, evaluate benchmarks, generate/chat with a KV cache, expand (identity check) */
      what: 'score' | 'eval' | 'generate' | 'chat' | 'expand';
      /** sequences per forward pass */
      batch: number;
      /** tokens per sequence in one forward pass */
      tokens: number;
      /** KV-cache length kept (generate, chat); 0 without a cache */
      context: number;
    }
  | {
      kind: 'train';
      method: 'blocks' | 'full' | 'last' | 'lora';
      /** the blocks whose weights train (blocks, last:K, full) */
      trainableLayers: number[];
      /** LoRA: rank and the projections adapted */
      loraRank?: number;
      loraTargets?: ('q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down')[];
      batch: number;
      seq: number;
    };

export interface PlanBackend {
  name: PlanBackendName;
  /** the backend's own memory limit in bytes (wasm heap, GPU memory); null: it uses RAM */
  deviceLimit: number | null;
  /** what that memory is, in words */
  deviceName: string;
  /**
   * The largest tensor the backend can use whole (WebGPU: the adapter's
   * maxStorageBufferBindingSize); null or absent: no such limit. A frozen embedding or head larger
   * than this is kept as blocks of rows; a trained one, or a block's weight, cannot be.
   */
  maxTensorBytes?: number | null;
  /**
   * The backend keeps frozen BF16 / F16 weights (blocks, the embedding, the head) at their stored
   * precision in its own memory and widens them when they compute (WebGPU's 'packed' residency):
   * half of float32.
   */
  packedWeights?: boolean;
  /** Its memory is not the machine's RAM (a GPU's own memory): device bytes are not counted in RAM. */
  separateMemory?: boolean;
}

export type ResidencyMode = 'resident' | 'packed' | 'streamed';

export interface PlanLimits {
  /** RAM the process can still use (MemAvailable) */
  ramAvailable: number;
  /** the backend the task would run on, then the others to compare against */
  backends: PlanBackend[];
  /** a smaller device budget than the backend's own limit, for the backend the task runs on (tests force streaming with it) */
  deviceBudget?: number | null;
}

export interface BackendFit {
  backend: PlanBackendName;
  fits: boolean;
  residency: ResidencyMode;
  device_bytes: number;
  device_limit: number | null;
  device_name: string;
  ram_bytes: number;
}

export interface MemoryPlan {
  task: PlanTask;
  backend: PlanBackendName;
  model: {
    params: number;
    stored_bytes: number;
    bytes_by_dtype: Partial<Record<PlanDType, number>>;
    /** every weight as float32 */
    float32_bytes: number;
  };
  trainable: null | {
    params: number;
    /** float32 weights, gradients (and their clipped copies), AdamW's two moments */
    weights_bytes: number;
    grads_bytes: number;
    adamw_bytes: number;
  };
  activations_bytes: number;
  kv_cache: { bytes: number; context: number };
  /**
   * resident: every weight float32 on the backend; packed: frozen blocks (some or all) kept at
   * their stored precision on the GPU, the rest streamed; streamed: frozen blocks leave the
   * backend between uses
   */
  residency: {
    mode: ResidencyMode;
    plan: ResidencyPlan;
    device_blocks: number;
    /** frozen blocks kept at stored precision on the GPU (WebGPU) */
    packed_blocks: number;
    host_blocks: number;
    file_blocks: number;
  };
  device: { name: string; limit: number | null; need: number; fits: boolean };
  ram: { available: number; need: number; fits: boolean };
  /** expected peak resident memory of the process */
  peak_rss_estimate: number;
  fits: boolean;
  problems: string[];
  advice: string[];
  /** the same task against each backend's limit */
  backends: BackendFit[];
}

/** What `blocklab plan`, `inspect --json` and the app's cells show for a checkpoint. */
export interface PlanSummary {
  path: string;
  backend: PlanBackendName;
  ram_available: number;
  /** chatting: a prompt of up to 512 tokens, the KV cache at the model's full context */
  inference: MemoryPlan;
  /** scoring and evaluation: one sequence of up to 1024 tokens at a time, no KV cache (score, eval, the GGUF export's NLL check) */
  scoring: MemoryPlan;
  /** the training asked for, or block-only tuning of an expanded checkpoint's new blocks; null otherwise */
  training: MemoryPlan | null;
}

// ---------------------------------------------------------------------------------------------
// Constants (bytes)

export const WASM_HEAP_LIMIT = 4294901760; // tfjs-backend-wasm's wasm32 memory maximum (4 GiB − 64 KiB)
/** what the plan lets the backend's memory fill up to */
const DEVICE_USABLE = 0.9;
/** what the plan lets the process take of the RAM available */
const RAM_USABLE = 0.85;
/**
 * wasm heap high-water mark over the bytes live at the peak: large tensors of varying sizes
 * fragment the allocator, and wasm memory never shrinks (measured 1.3–1.5 on the bench shapes)
 */
const HEAP_FRAGMENTATION = 1.4;
/** Node, tfjs, the tokenizer, the code: resident before any weight */
const PROCESS_BASE = 300 * 2 ** 20;
/** one float32 head chunk when the head streams (weights.ts headChunkRows) */
const HEAD_CHUNK = 32 * 2 ** 20;
/**
 * training: the cross-entropy's vocabulary chunk is about this many float32 logits (head-loss.ts):
 * 64 MiB, so that a 32000-token vocabulary at batch 4 × 128 is one chunk (slicing the head costs time)
 */
export const LOSS_CHUNK_ELEMENTS = 16 * 2 ** 20;
/** inference: scores and logits are made about this many float32 values at a time (attention.ts, model.ts) */
const CHUNK_ELEMENTS = 4 * 2 ** 20;

const F = 4; // float32

// Activations, in float32 values per token (calibrated against tfjs's memory at the peak).
/** inference: one block's intermediates per token (q, k, v, rope, residuals: ~12 × D; the MLP: ~5 × F) */
const INFER_D = 12;
const INFER_F = 5;
/** training: what the tape keeps per token of a recorded block */
const TRAIN_D = 16;
const TRAIN_F = 6;

const GiB = 2 ** 30;

export function formatPlanBytes(n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(n >= 10 * GiB ? 1 : 2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(0)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(0)} KiB`;
  return `${Math.round(n)} B`;
}

/** 1.10 B, 88.1 M, 370 K parameters */
export function formatParams(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} M`;
  return `${(n / 1e3).toFixed(0)} K`;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

function allParams(m: PlanModel): number {
  return m.embed.params + (m.head?.params ?? 0) + m.norm.params + sum(m.blocks.map((b) => b.params));
}

// ---------------------------------------------------------------------------------------------
// What a task needs on the device, by component

interface Needs {
  trainable: MemoryPlan['trainable'];
  trainableBlocks: Set<number>;
  trainEmbed: boolean;
  trainHead: boolean;
  kv: number;
  kvContext: number;
  /** trainable weights, gradients, AdamW moments (training) */
  state: number;
  /** temporaries of the largest tensor at a time: AdamW's update, a transposed weight */
  transient: number;
  /** logits (inference), the head chunk (training) */
  head: number;
  /** one block's intermediates (inference), what one recorded block keeps (training) */
  block: number;
  /** training: what a streamed (checkpointed) block keeps: its input */
  checkpoint: number;
}

/**
 * Attention scores: wasm computes them one (sequence, kv head) slice at a time — for inference a
 * chunk of query rows at a time (attention.ts) — other backends all at once.
 */
function attentionScores(m: PlanModel, batch: number, t: number, s: number, perSlice: boolean, rowChunks: boolean): number {
  const g = m.heads / m.kvHeads;
  if (!perSlice) return batch * m.heads * t * s * F * 3;
  const rows = rowChunks ? Math.min(g * t, Math.max(1, Math.floor(CHUNK_ELEMENTS / s))) : g * t;
  return rows * s * F * 3;
}

function taskNeeds(m: PlanModel, task: PlanTask, backend: PlanBackendName): Needs {
  const D = m.hidden;
  const FF = m.intermediate;
  const V = m.vocab;
  const perSlice = backend === 'wasm';
  const none = { trainable: null, trainableBlocks: new Set<number>(), trainEmbed: false, trainHead: false, state: 0, transient: 0, checkpoint: 0 };
  if (task.kind === 'infer') {
    const N = task.batch * task.tokens;
    const S = Math.max(task.tokens, task.context);
    const kv = 2 * m.layers * task.batch * m.kvHeads * m.headDim * task.context * F;
    const block = N * (INFER_D * D + INFER_F * FF) * F + attentionScores(m, task.batch, task.tokens, S, perSlice, true);
    // scoring: the final hidden states, then the head a chunk of positions at a time (logits,
    // log-softmax); the identity check: two models' logits; generating: the last position's
    const head =
      task.what === 'score' || task.what === 'eval'
        ? N * D * F + 3 * Math.min(N * V, CHUNK_ELEMENTS) * F
        : task.what === 'expand'
          ? 3 * N * V * F
          : 2 * task.batch * V * F;
    return { ...none, kv, kvContext: task.context, block, head };
  }

  const N = task.batch * task.seq;
  const trainableBlocks = new Set(task.method === 'lora' ? [] : task.method === 'full' ? m.blocks.map((_, i) => i) : task.trainableLayers);
  const full = task.method === 'full';
  let params = 0;
  let largest = 0;
  for (const i of trainableBlocks) {
    params += m.blocks[i].params;
    largest = Math.max(largest, m.blocks[i].linearParams / 3); // the MLP's three matrices are the largest
  }
  if (full) {
    params += m.embed.params + m.norm.params + (m.head?.params ?? 0);
    largest = Math.max(largest, m.embed.params, m.head?.params ?? 0);
  }
  if (task.method === 'lora') {
    const r = task.loraRank ?? 8;
    const dims: Record<string, [number, number]> = {
      q: [D, m.heads * m.headDim],
      k: [D, m.kvHeads * m.headDim],
      v: [D, m.kvHeads * m.headDim],
      o: [m.heads * m.headDim, D],
      gate: [D, FF],
      up: [D, FF],
      down: [FF, D],
    };
    for (const t of task.loraTargets ?? ['q', 'v']) params += m.layers * r * (dims[t][0] + dims[t][1]);
    largest = Math.max(largest, Math.max(...m.blocks.map((b) => b.linearParams / 3)));
  }
  const trainable = { params, weights_bytes: params * F, grads_bytes: params * F, adamw_bytes: 2 * params * F };
  // AdamW's update makes ~5 temporaries of the tensor it updates; a backward transposes one weight
  const transient = 6 * largest * F;
  const block = N * (TRAIN_D * D + TRAIN_F * FF) * F + task.batch * m.heads * task.seq * task.seq * F * 2;
  const chunkRows = Math.min(V, Math.max(1, Math.floor(LOSS_CHUNK_ELEMENTS / Math.max(1, N))));
  const head = chunkRows * N * F * 4 + (full ? N * V * F : 0); // + the trainable embedding's one-hot gradient
  return {
    trainable,
    trainableBlocks,
    trainEmbed: full,
    trainHead: full && !m.tied,
    kv: 0,
    kvContext: 0,
    state: trainable.weights_bytes + trainable.grads_bytes + trainable.adamw_bytes,
    transient,
    head,
    block,
    checkpoint: N * D * F,
  };
}

// ---------------------------------------------------------------------------------------------
// Residency, for one backend

interface Placement {
  mode: ResidencyMode;
  plan: ResidencyPlan;
  /** live bytes on the device at the peak, and the heap that takes */
  live: number;
  device: number;
  ram: number;
  activations: number;
}

/** Float32 bytes of a resident frozen group: on wasm XNNPACK keeps a packed copy of each linear it multiplies by. */
function residentBytes(g: StoredGroup, backend: PlanBackendName): number {
  return g.params * F + (backend === 'wasm' ? g.linearParams * F : 0);
}

function place(m: PlanModel, task: PlanTask, needs: Needs, backend: PlanBackend, limits: PlanLimits): Placement {
  const train = task.kind === 'train';
  const wasm = backend.name === 'wasm';
  const deviceLimit = effectiveDeviceLimit(backend, limits);
  const ramLimit = limits.ramAvailable * RAM_USABLE;
  const heapOf = (live: number) => (wasm ? live * HEAP_FRAGMENTATION : live);
  const frozen = m.blocks.map((_, i) => i).filter((i) => !needs.trainableBlocks.has(i));
  // what the device's bytes cost in RAM: all of them where the backend's memory is RAM; on a GPU
  // one tensor at a time on its way there (loading uploads each tensor as it is read)
  const largestTensor = Math.max(m.embed.bytes, m.head?.bytes ?? 0, ...m.blocks.map((b) => b.bytes / 3));
  const ramOf = (device: number) => PROCESS_BASE + (backend.separateMemory ? largestTensor : device);

  // resident: every frozen weight float32 on the device (the fastest, when it fits); training
  // records every block's activations
  {
    let weights = m.norm.params * F;
    if (!needs.trainEmbed) weights += m.embed.params * F;
    if (m.head && !needs.trainHead) weights += train ? m.head.params * F : residentBytes(m.head, backend.name);
    if (m.tied && !train) weights += m.embed.params * F * (wasm ? 2 : 1); // the transposed copy the head multiplies by
    for (const i of frozen) weights += residentBytes(m.blocks[i], backend.name);
    const activations = train ? needs.block * m.layers + needs.head : needs.block + needs.head;
    const live = weights + needs.state + needs.transient + activations + needs.kv;
    const device = heapOf(live);
    const ram = ramOf(device);
    if ((deviceLimit === null || device <= deviceLimit) && ram <= ramLimit) {
      const blocks = m.blocks.map((): Residency => 'device');
      return { mode: 'resident', plan: { embed: 'device', head: 'device', blocks }, live, device, ram, activations };
    }
  }

  // a frozen block not resident is leased as float32 when it computes (and its weights
  // transposed, one at a time, in a backward pass); in training it keeps only its input
  const largestBlock = Math.max(0, ...frozen.map((i) => m.blocks[i].params));
  const lease = largestBlock * F + (train ? (largestBlock / 7) * F : 0);
  const activations = train
    ? needs.block * (needs.trainableBlocks.size + 1) + needs.checkpoint * frozen.length + needs.head
    : needs.block + needs.head;

  // packed (WebGPU): a frozen embedding and head kept on the GPU at their stored precision (rows
  // are packed two values to a word, so an odd hidden size keeps them float32), and as many
  // frozen blocks as fit kept there likewise (widened by a shader when leased); the others stream
  // from RAM or the file as below
  if (backend.packedWeights && frozen.length > 0) {
    const packTables = m.hidden % 2 === 0;
    const table = (trained: boolean): Residency => (trained || !packTables ? 'device' : 'packed');
    let weights = m.norm.params * F;
    if (!needs.trainEmbed) weights += packTables ? m.embed.bytes : m.embed.params * F;
    if (m.head && !needs.trainHead) weights += packTables ? m.head.bytes : m.head.params * F;
    if (m.tied && !train && !packTables) weights += m.embed.params * F; // the transposed copy the head multiplies by
    const fixed = weights + lease + needs.state + needs.transient + activations + needs.kv;
    // room on the device, and (where the device's memory is RAM, as llvmpipe's) in RAM
    let room = Math.min(deviceLimit === null ? Infinity : deviceLimit - fixed, backend.separateMemory ? Infinity : ramLimit - ramOf(fixed));
    const packed = new Set<number>();
    for (const i of frozen) {
      if (m.blocks[i].bytes > room) break;
      room -= m.blocks[i].bytes;
      packed.add(i);
    }
    if (packed.size > 0) {
      const packedBytes = sum([...packed].map((i) => m.blocks[i].bytes));
      const live = fixed + packedBytes;
      const rest = frozen.filter((i) => !packed.has(i));
      const restBytes = sum(rest.map((i) => m.blocks[i].bytes));
      const ramHost = ramOf(live) + restBytes;
      const where: StreamedResidency = ramHost <= ramLimit ? 'host' : 'file';
      const ram = where === 'host' ? ramHost : ramOf(live) + Math.max(0, ...rest.map((i) => m.blocks[i].bytes / 3));
      const blocks = m.blocks.map((_, i): Residency => (needs.trainableBlocks.has(i) ? 'device' : packed.has(i) ? 'packed' : where));
      return { mode: 'packed', plan: { embed: table(needs.trainEmbed), head: table(needs.trainHead), blocks }, live, device: live, ram, activations };
    }
  }

  // streamed: frozen blocks (and a frozen embedding and head) leave the device between uses
  let weights = m.norm.params * F + Math.min(HEAD_CHUNK, m.vocab * m.hidden * F);
  if (needs.trainEmbed) weights += 0; // counted in the trainable state
  const live = weights + lease + needs.state + needs.transient + activations + needs.kv;
  const device = heapOf(live);
  let frozenStored = 0;
  if (!needs.trainEmbed) frozenStored += m.embed.bytes;
  if (m.head && !needs.trainHead) frozenStored += m.head.bytes;
  for (const i of frozen) frozenStored += m.blocks[i].bytes;
  const hostRam = ramOf(device) + frozenStored;
  const where: StreamedResidency = hostRam <= ramLimit ? 'host' : 'file';
  const staging = Math.max(0, ...frozen.map((i) => m.blocks[i].bytes / 3)); // one tensor read at a time
  const ram = where === 'host' ? hostRam : ramOf(device) + staging;
  const plan: ResidencyPlan = {
    embed: needs.trainEmbed ? 'device' : where,
    head: needs.trainHead ? 'device' : where,
    blocks: m.blocks.map((_, i) => (needs.trainableBlocks.has(i) ? 'device' : where)),
  };
  return { mode: 'streamed', plan, live, device, ram, activations };
}

/** What a backend's memory can be filled to; a device budget caps the backend the task runs on (the first). */
function effectiveDeviceLimit(backend: PlanBackend, limits: PlanLimits): number | null {
  const own = backend.deviceLimit === null ? null : backend.deviceLimit * DEVICE_USABLE;
  const budget = backend === limits.backends[0] ? (limits.deviceBudget ?? null) : null;
  if (budget === null) return own;
  return own === null ? budget : Math.min(own, budget);
}

// ---------------------------------------------------------------------------------------------
// The plan

/** What cannot be split to fit a backend's largest tensor: a trained embedding or head, a block's weight. */
function tensorLimitProblems(m: PlanModel, needs: Needs, backend: PlanBackend): string[] {
  const bind = backend.maxTensorBytes ?? null;
  if (bind === null) return [];
  const out: string[] = [];
  const table = m.vocab * m.hidden * F;
  if (table > bind && (needs.trainEmbed || needs.trainHead)) {
    const what = needs.trainHead && !m.tied ? 'LM head' : 'embedding';
    out.push(`the ${what} (${formatPlanBytes(table)} as float32) would train as one tensor, more than the ${formatPlanBytes(bind)} this GPU can use whole; tune the new blocks, LoRA or the last blocks instead`);
  }
  const blockTensor = Math.max(m.hidden * m.intermediate, m.heads * m.headDim * m.hidden) * F;
  if (blockTensor > bind) out.push(`a block's largest weight (${formatPlanBytes(blockTensor)} as float32) is more than the ${formatPlanBytes(bind)} this GPU can use as one tensor`);
  return out;
}

export function planMemory(m: PlanModel, task: PlanTask, limits: PlanLimits, withAdvice = true): MemoryPlan {
  if (limits.backends.length === 0) throw new Error('planMemory needs at least one backend');
  const fits = limits.backends.map((b) => {
    const needs = taskNeeds(m, task, b.name);
    const p = place(m, task, needs, b, limits);
    const deviceLimit = effectiveDeviceLimit(b, limits);
    const deviceOk = deviceLimit === null || p.device <= deviceLimit;
    const ramOk = p.ram <= limits.ramAvailable * RAM_USABLE;
    const tensorProblems = tensorLimitProblems(m, needs, b);
    return { backend: b, needs, placement: p, deviceLimit, deviceOk: deviceOk && tensorProblems.length === 0, ramOk, tensorProblems, deviceFits: deviceOk };
  });
  const chosen = fits[0];
  const { needs, placement } = chosen;
  const params = allParams(m);
  const blocksBy = (r: Residency) => placement.plan.blocks.filter((x) => x === r).length;
  const problems: string[] = [];
  const deviceName = chosen.backend.deviceName;
  problems.push(...chosen.tensorProblems);
  if (!chosen.deviceFits) {
    problems.push(
      `needs ${formatPlanBytes(placement.device)} of ${deviceName}, ` +
        `more than the ${formatPlanBytes(chosen.deviceLimit ?? 0)} it can use` +
        (placement.mode !== 'resident' ? ' even with the frozen weights streamed one block at a time' : ''),
    );
  }
  if (!chosen.ramOk) {
    problems.push(`needs ${formatPlanBytes(placement.ram)} of RAM, more than the ${formatPlanBytes(limits.ramAvailable * RAM_USABLE)} of the ${formatPlanBytes(limits.ramAvailable)} available it can use`);
  }
  const ok = chosen.deviceOk && chosen.ramOk;
  return {
    task,
    backend: chosen.backend.name,
    model: { params, stored_bytes: sum(Object.values(m.bytesByDtype).map((x) => x ?? 0)), bytes_by_dtype: m.bytesByDtype, float32_bytes: params * F },
    trainable: needs.trainable,
    activations_bytes: placement.activations,
    kv_cache: { bytes: needs.kv, context: needs.kvContext },
    residency: { mode: placement.mode, plan: placement.plan, device_blocks: blocksBy('device'), packed_blocks: blocksBy('packed'), host_blocks: blocksBy('host'), file_blocks: blocksBy('file') },
    device: { name: deviceName, limit: chosen.deviceLimit, need: placement.device, fits: chosen.deviceOk },
    ram: { available: limits.ramAvailable, need: placement.ram, fits: chosen.ramOk },
    peak_rss_estimate: placement.ram,
    fits: ok,
    problems,
    advice: ok || !withAdvice ? [] : advise(m, task, limits, fits.slice(1).filter((f) => f.deviceOk && f.ramOk).map((f) => f.backend.name)),
    backends: fits.map((f) => ({
      backend: f.backend.name,
      fits: f.deviceOk && f.ramOk,
      residency: f.placement.mode,
      device_bytes: f.placement.device,
      device_limit: f.deviceLimit,
      device_name: f.backend.deviceName,
      ram_bytes: f.placement.ram,
    })),
  };
}

/** What would fit instead: smaller batch or sequence, block-only instead of full, another backend. */
function advise(m: PlanModel, task: PlanTask, limits: PlanLimits, otherBackends: PlanBackendName[]): string[] {
  const advice: string[] = [];
  const chosenOnly: PlanLimits = { ...limits, backends: [limits.backends[0]] };
  const fitsWith = (t: PlanTask) => planMemory(m, t, chosenOnly, false).fits;
  if (task.kind === 'train') {
    if (task.method === 'full') {
      // full fine-tuning keeps four float32 copies of every weight (weights, gradients, two AdamW moments)
      let k = Math.max(1, Math.round(m.layers / 8));
      while (k > 1 && !fitsWith({ ...task, method: 'blocks', trainableLayers: m.blocks.map((_, i) => i).slice(-k) })) k = Math.floor(k / 2);
      if (fitsWith({ ...task, method: 'blocks', trainableLayers: m.blocks.map((_, i) => i).slice(-k) })) {
        advice.push(`train only the new blocks (--method blocks, LLaMA Pro) or a few blocks (--method last:${k} fits) instead of full fine-tuning`);
      } else advice.push('train only some blocks (--method blocks or last:K) instead of every weight (full fine-tuning keeps four float32 copies of each)');
    }
    for (let b = task.batch; b >= 1; b = Math.floor(b / 2)) {
      if (b < task.batch && fitsWith({ ...task, batch: b })) {
        advice.push(`lower the batch: --batch ${b} fits (with --grad-accum ${Math.ceil(task.batch / b)} for the same tokens per step)`);
        break;
      }
      if (b === 1) break;
    }
    for (let s = task.seq; s >= 16; s = Math.floor(s / 2)) {
      if (s < task.seq && fitsWith({ ...task, seq: s })) {
        advice.push(`shorten the sequences: --seq ${s} fits`);
        break;
      }
    }
    if (task.method === 'blocks' && task.trainableLayers.length > 1) {
      for (let k = task.trainableLayers.length - 1; k >= 1; k--) {
        const fewer = { ...task, trainableLayers: task.trainableLayers.slice(0, k) };
        if (fitsWith(fewer)) {
          advice.push(`train fewer blocks at a time: ${k} of the ${task.trainableLayers.length} new blocks fit (--trainable-layers ${fewer.trainableLayers.join(',')})`);
          break;
        }
      }
    }
  } else {
    if (task.batch > 1) {
      for (let b = Math.floor(task.batch / 2); b >= 1; b = Math.floor(b / 2)) {
        if (fitsWith({ ...task, batch: b })) {
          advice.push(`lower the batch: --batch ${b} fits`);
          break;
        }
        if (b === 1) break;
      }
    }
    const long = Math.max(task.tokens, task.context);
    for (let t = Math.floor(long / 2); t >= 64; t = Math.floor(t / 2)) {
      if (fitsWith({ ...task, tokens: Math.min(task.tokens, t), context: Math.min(task.context, t) })) {
        advice.push(task.what === 'eval' ? `shorten the inputs: --max-length ${t} fits` : `use a shorter context: ${t} tokens fit`);
        break;
      }
    }
  }
  const backendWords = (b: PlanBackendName) => (b === 'cpu' ? '--backend cpu (plain JavaScript: no 4 GiB heap limit, but several times slower)' : `--backend ${b}`);
  for (const b of otherBackends) advice.push(`use ${backendWords(b)}`);
  if (advice.length === 0 && task.kind === 'train' && task.method === 'blocks' && task.trainableLayers.length > 1) {
    // nothing fits here: fewer blocks at a time on a backend without the heap limit?
    for (const b of limits.backends.slice(1)) {
      const there: PlanLimits = { ...limits, backends: [b], deviceBudget: null };
      for (let k = task.trainableLayers.length - 1; k >= 1; k--) {
        const fewer = { ...task, trainableLayers: task.trainableLayers.slice(0, k) };
        if (planMemory(m, fewer, there, false).fits) {
          advice.push(`use ${backendWords(b.name)} and train ${k} of the ${task.trainableLayers.length} new blocks at a time (--trainable-layers ${fewer.trainableLayers.join(',')})`);
          break;
        }
      }
    }
  }
  if (advice.length === 0) advice.push('free memory (close other programs) or use a machine with more memory; `blocklab plan` shows the figures');
  return advice;
}

/** A GPU's memory as the driver reports it (engine/gpu-memory.ts). */
export interface GpuMemory {
  /** bytes the GPU has */
  total: number;
  /** bytes free now (total − used), or null where the source gives only the total */
  free: number | null;
  /** where the figures come from, in words */
  source: string;
}

/** The GPU's memory in words, for doctor and the app's Doctor page. */
export function gpuMemoryWords(software: boolean, mem: GpuMemory | null): string {
  if (software) return 'RAM (a software adapter): the memory plan counts its buffers as RAM';
  if (!mem) return 'unknown (no nvidia-smi or amdgpu counters): set BLOCKLAB_GPU_MEMORY=24GiB, say, for the memory plan to check it';
  return `${mem.free !== null ? `${formatPlanBytes(mem.free)} free of ` : ''}${formatPlanBytes(mem.total)} (${mem.source})`;
}

/** Where the weights live, in words (the CLI, the app's memory-plan box). */
export function residencyWords(r: MemoryPlan['residency']): string {
  if (r.mode === 'resident') return 'every weight float32 on the backend';
  const n = (k: number) => `${k} block${k === 1 ? '' : 's'}`;
  const parts: string[] = [];
  if (r.device_blocks) parts.push(`${n(r.device_blocks)} float32 on the backend${r.mode === 'packed' || r.host_blocks || r.file_blocks ? ' (trained)' : ''}`);
  const tables = [r.plan.embed === 'packed' ? 'the embedding' : null, r.plan.head === 'packed' ? 'the LM head' : null].filter((x) => x !== null);
  const packed = [...tables, ...(r.packed_blocks ? [n(r.packed_blocks)] : [])];
  if (packed.length) parts.push(`${packed.join(', ').replace(/, ([^,]*)$/, ' and $1')} at stored precision on the GPU, widened when they compute`);
  if (r.host_blocks) parts.push(`${n(r.host_blocks)} at stored precision in RAM`);
  if (r.file_blocks) parts.push(`${n(r.file_blocks)} read from the file at each use`);
  return `${r.mode === 'packed' ? 'packed' : 'streamed a block at a time'} — ${parts.join(', ')}`;
}

/** The plan in a few lines, for the CLI and error messages. */
export function describePlan(p: MemoryPlan): string[] {
  const lines: string[] = [];
  const dt = Object.entries(p.model.bytes_by_dtype)
    .map(([k, v]) => `${k} ${formatPlanBytes(v ?? 0)}`)
    .join(', ');
  lines.push(`weights: ${formatParams(p.model.params)} parameters, ${dt} stored (${formatPlanBytes(p.model.float32_bytes)} as float32)`);
  if (p.trainable) {
    lines.push(
      `trainable: ${formatParams(p.trainable.params)} parameters — float32 ${formatPlanBytes(p.trainable.weights_bytes)}, ` +
        `gradients ${formatPlanBytes(p.trainable.grads_bytes)}, AdamW state ${formatPlanBytes(p.trainable.adamw_bytes)}`,
    );
  }
  lines.push(`activations: ${formatPlanBytes(p.activations_bytes)}` + (p.kv_cache.bytes ? `; KV cache ${formatPlanBytes(p.kv_cache.bytes)} at ${p.kv_cache.context} tokens` : ''));
  const r = p.residency;
  lines.push(`residency: ${residencyWords(r)}`);
  lines.push(
    `${p.backend}: ${p.device.name} ${formatPlanBytes(p.device.need)}${p.device.limit !== null ? ` of ${formatPlanBytes(p.device.limit)}` : ''}; ` +
      `RAM ${formatPlanBytes(p.ram.need)} of ${formatPlanBytes(p.ram.available)} available — ${p.fits ? 'fits' : 'does not fit'}`,
  );
  return lines;
}
