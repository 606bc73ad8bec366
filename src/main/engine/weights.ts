/**
 * Weight residency: where a model's weights live, and how the forward and backward passes get a
 * block's float32 tensors. The model code (model.ts, trainable.ts, head-loss.ts) reaches weights
 * only through this interface, so that a backend whose memory is smaller than the model (the
 * 4 GB wasm heap; a GPU's memory) streams the model through it, one block at a time.
 *
 * The interface (the same on every backend; on WebGPU 'device' is a float32 GPU buffer and
 * 'packed' the stored 16-bit values in one, widened by the engine's shaders — no shader-f16 needed):
 *
 *   store.block(i)              → BlockLease { weights, layout, release() }: block i's float32
 *                                 tensors on the backend. `layout` says how linears are laid out:
 *                                 'io' = [in, out] (resident, the x @ W route), 'oi' = [out, in]
 *                                 (the Hugging Face layout: streamed, computed as (W @ xᵀ)ᵀ,
 *                                 bit-identical on wasm and cpu). release() frees what the lease
 *                                 made; for a resident block it does nothing.
 *   store.block(i, { packedLinears: true })
 *                               → for a packed block, its linears as they are kept (layout
 *                                 'packed': [out, in] words of `lease.half`), for the decoding
 *                                 step's packedMatVec16; its norms and biases widened.
 *   store.embedRows(ids)        → [N, D] float32: the embedding lookup.
 *   store.logits(x)             → [N, V] float32: the LM head (inference), by vocabulary chunks
 *                                 when the head streams.
 *   store.headRows(v0, v1)      → [v1 − v0, D] float32 rows of the head, HF layout (the chunked
 *                                 head + cross-entropy of training); store.releaseHeadRows(t).
 *   store.norm                  → [D] final norm (always resident: it is tiny).
 *   store.pinBlock(i) / pinEmbed() / pinHead()
 *                               → make a group resident as float32 (training turns these into
 *                                 variables; trainable weights, their gradients and AdamW moments
 *                                 are always float32 on the backend).
 *   store.residency             → what lives where (for the memory plan and the bench).
 *   store.dispose()
 *
 * Residency of each group (the embedding, each block, the head), chosen by the memory plan
 * (src/shared/memory-plan.ts) before anything loads:
 *   'device'  float32 on the backend for the model's life (linears [in, out], as x @ W wants)
 *   'packed'  (WebGPU) its stored BF16 / F16 values in GPU memory, two to a 32-bit word — half
 *             of float32 — widened to float32 by a shader (webgpu-kernels.ts) when it computes,
 *             and freed again after; no upload from RAM at each use. A block is widened whole; the
 *             embedding gathers a batch's rows as words and widens those; the head widens a
 *             chunk of rows at a time (as a streamed head is read)
 *   'host'    the stored bytes (BF16 / F16 / F32) in Node memory, outside the backend's heap;
 *             widened to float32 when its block computes, and freed again after
 *   'file'    nothing in memory: read again from the safetensors file (the OS page cache) at each use
 *
 * Loading reads each tensor once, at disk speed, into its residency: no whole-file buffers, and
 * no float32 copy of anything that is not 'device'.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { open as openAsync } from 'node:fs/promises';
import { tf } from './backend.js';
import { linearOI, recordingGradients } from './autodiff.js';
import type { ModelConfig } from './config.js';
import { DTYPE_BYTES, widenInto, type DType } from './dtype.js';
import { BlocklabError } from './errors.js';
import { webgpuMaxBindingBytes } from './webgpu.js';
import { MATVEC_MAX_ROWS, canWidenOnBackend, gatherWiden16, packHalfWords, packedMatVec16, uploadPacked, widen16, type Half } from './webgpu-kernels.js';
import type { TensorInfo } from './safetensors.js';
import { WASM_HEAP_LIMIT, type Residency, type ResidencyPlan, type StreamedResidency } from '../../shared/memory-plan.js';

type Tensor = tf.Tensor;

export type { Residency, ResidencyPlan };

export interface BlockWeights {
  inputNorm: tf.Tensor1D; // [D]          input_layernorm.weight
  q: tf.Tensor2D; // [D, nh*hd] (io)       self_attn.q_proj.weight
  k: tf.Tensor2D; // [D, nkv*hd]           self_attn.k_proj.weight
  v: tf.Tensor2D; // [D, nkv*hd]           self_attn.v_proj.weight
  o: tf.Tensor2D; // [nh*hd, D]            self_attn.o_proj.weight
  qBias?: tf.Tensor1D; // [nh*hd]
  kBias?: tf.Tensor1D; // [nkv*hd]
  vBias?: tf.Tensor1D; // [nkv*hd]
  oBias?: tf.Tensor1D; // [D]
  postNorm: tf.Tensor1D; // [D]           post_attention_layernorm.weight
  gate: tf.Tensor2D; // [D, F]             mlp.gate_proj.weight
  up: tf.Tensor2D; // [D, F]               mlp.up_proj.weight
  down: tf.Tensor2D; // [F, D]             mlp.down_proj.weight
  gateBias?: tf.Tensor1D; // [F]
  upBias?: tf.Tensor1D; // [F]
  downBias?: tf.Tensor1D; // [D]
}

/** BlockWeights key → HF suffix, and whether it is a linear weight (HF [out, in]). */
export const BLOCK_TENSORS: [keyof BlockWeights, string, boolean][] = [
  ['inputNorm', 'input_layernorm.weight', false],
  ['q', 'self_attn.q_proj.weight', true],
  ['qBias', 'self_attn.q_proj.bias', false],
  ['k', 'self_attn.k_proj.weight', true],
  ['kBias', 'self_attn.k_proj.bias', false],
  ['v', 'self_attn.v_proj.weight', true],
  ['vBias', 'self_attn.v_proj.bias', false],
  ['o', 'self_attn.o_proj.weight', true],
  ['oBias', 'self_attn.o_proj.bias', false],
  ['postNorm', 'post_attention_layernorm.weight', false],
  ['gate', 'mlp.gate_proj.weight', true],
  ['gateBias', 'mlp.gate_proj.bias', false],
  ['up', 'mlp.up_proj.weight', true],
  ['upBias', 'mlp.up_proj.bias', false],
  ['down', 'mlp.down_proj.weight', true],
  ['downBias', 'mlp.down_proj.bias', false],
];

/**
 * A block's weights kept packed on the GPU, for a store made in memory: each tensor in its HF
 * shape, `gpu` the int32 words of a BF16 / F16 tensor (webgpu-kernels.ts), or float32 for F32.
 */
export type PackedBlock = Map<keyof BlockWeights, { gpu: Tensor; shape: number[]; dtype: DType }>;

/** An embedding or head kept packed on the GPU, for a store made in memory: [V, D / 2] int32 words of its BF16 / F16 rows (HF layout). */
export interface PackedTable {
  words: tf.Tensor2D;
  dtype: Half;
}

/**
 * 'io': linears [in, out] (y = x @ W); 'oi': [out, in], the HF layout (y = (W @ xᵀ)ᵀ); 'packed':
 * [out, in] as int32 words of 16-bit values (y = packedMatVec16(x, W): a few rows, no gradient).
 */
export type Layout = 'io' | 'oi' | 'packed';

export interface BlockLease {
  readonly weights: BlockWeights;
  readonly layout: Layout;
  /** 'packed': the 16-bit format of the linears' words */
  readonly half?: Half;
  release(): void;
}

/** What the store is for: inference keeps a resident head as [D, V] (x @ W, fastest decode); training as [V, D]. */
export type StorePurpose = 'infer' | 'train';

// ---------------------------------------------------------------------------------------------
// The wasm heap: float32 tensors written in place, and allocation failures that say so

interface WasmModule {
  HEAPU8: Uint8Array;
  _malloc(n: number): number;
}
interface WasmBackendInternals {
  wasm: WasmModule;
  write(values: null, shape: number[], dtype: 'float32'): object;
  dataIdMap: { get(id: object): { memoryOffset: number } };
}

/** The wasm backend could not allocate: the message the memory plan's advice is added to. */
export class BackendOutOfMemoryError extends BlocklabError {
  readonly bytes: number;
  constructor(bytes: number) {
    super(
      `the WebAssembly backend ran out of memory allocating ${(bytes / 2 ** 20).toFixed(0)} MiB ` +
        `(its heap is limited to 4 GiB, ${(wasmHeapBytes() / 2 ** 30).toFixed(2)} GiB in use)`,
    );
    this.name = 'BackendOutOfMemoryError';
    this.bytes = bytes;
  }
}

const guarded = new WeakSet<object>();

/**
 * tfjs-wasm's _malloc returns 0 when the heap cannot grow, and tfjs then writes the tensor at
 * address 0 — a corrupt heap, or `Aborted()` later. Wrapped, an allocation that fails throws
 * BackendOutOfMemoryError instead. Idempotent; a no-op on other backends.
 */
export function guardWasmHeap(): void {
  if (tf.getBackend() !== 'wasm') return;
  const wasm = (tf.backend() as unknown as WasmBackendInternals).wasm;
  if (!wasm || guarded.has(wasm)) return;
  // Emscripten's _malloc replaces itself with the raw export on its first call: keep the raw one
  // behind an accessor, so that every call goes through the check
  let malloc = wasm._malloc;
  const checked = (n: number) => {
    // a request near 4 GiB wraps around in the 32-bit allocator and "succeeds" with a small block
    if (n >= WASM_HEAP_LIMIT) throw new BackendOutOfMemoryError(n);
    const p = malloc(n);
    if (p === 0 && n > 0) throw new BackendOutOfMemoryError(n);
    return p;
  };
  Object.defineProperty(wasm, '_malloc', {
    configurable: true,
    get: () => checked,
    set: (f: (n: number) => number) => {
      malloc = f;
    },
  });
  guarded.add(wasm);
}

/** The wasm heap's size (its high-water mark: wasm memory never shrinks), or 0 on other backends. */
export function wasmHeapBytes(): number {
  if (tf.getBackend() !== 'wasm') return 0;
  return (tf.backend() as unknown as WasmBackendInternals).wasm?.HEAPU8.length ?? 0;
}

/**
 * The backend's memory now, as the memory plan counts it ("device" bytes): the wasm heap's size;
 * WebGPU's buffers (tfjs's pool, free ones included: they stay allocated on the GPU); elsewhere
 * the bytes of live tensors.
 */
export function backendMemoryBytes(): number {
  const backend = tf.getBackend();
  if (backend === 'wasm') return wasmHeapBytes();
  const m = tf.memory() as tf.MemoryInfo & { numBytesAllocatedInGPU?: number };
  if (backend === 'webgpu' && typeof m.numBytesAllocatedInGPU === 'number') return m.numBytesAllocatedInGPU;
  return m.numBytes;
}

/**
 * A new float32 tensor whose values `fill` writes in place: on wasm straight into the heap (no
 * JavaScript copy on the way), elsewhere into the array the tensor is made from. `fill` must not
 * call tfjs (a growing heap would move the memory it writes to).
 */
export function newFloat32Tensor(shape: number[], fill: (out: Float32Array) => void): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (tf.getBackend() === 'wasm' && n > 0) {
    guardWasmHeap();
    const backend = tf.backend() as unknown as WasmBackendInternals;
    const dataId = backend.write(null, shape, 'float32');
    const t = tf.engine().makeTensorFromDataId(dataId, shape, 'float32', tf.backend());
    try {
      fill(new Float32Array(backend.wasm.HEAPU8.buffer, backend.dataIdMap.get(dataId).memoryOffset, n));
    } catch (e) {
      t.dispose();
      throw e;
    }
    return t;
  }
  const values = new Float32Array(n);
  fill(values);
  const t = tf.tensor(values, shape, 'float32');
  uploadNow(t);
  return t;
}

// ---------------------------------------------------------------------------------------------
// Stored tensors

interface StoredTensor {
  info: TensorInfo;
  /** the stored bytes ('host'), or null: read from the file at each use ('file') or on the GPU ('packed') */
  bytes: Uint8Array | null;
  /** 'packed': the stored values on the GPU (BF16 / F16: int32 words of two; F32: the float32 tensor) */
  gpu?: Tensor;
}

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Reads a tensor's bytes (all of it) with bounded reads, asynchronously (loading). */
async function readAll(info: TensorInfo, into: Uint8Array): Promise<void> {
  const fh = await openAsync(info.file, 'r').catch((e: unknown) => {
    throw new BlocklabError(`cannot open the file (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { file: info.file, cause: e });
  });
  try {
    let done = 0;
    while (done < into.byteLength) {
      const want = Math.min(1 << 26, into.byteLength - done);
      const { bytesRead } = await fh.read(into, done, want, info.byteOffset + done);
      if (bytesRead === 0) throw new BlocklabError(`the file ended while reading tensor ${info.name}; it looks truncated or changed: re-download or re-export it`, { file: info.file });
      done += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

/** Where a weight's float32 values come from: the checkpoint file, or (GGUF export) the values as a quantized file holds them. */
export type WeightReader = (info: TensorInfo) => Promise<Float32Array>;

export interface StoreLoadOptions {
  plan: ResidencyPlan;
  purpose?: StorePurpose;
  /** float32 values for resident weights instead of the files' (only with every group resident) */
  read?: WeightReader;
  /**
   * The largest tensor the backend can use whole, in bytes (WebGPU: the adapter's
   * maxStorageBufferBindingSize); a resident embedding or head larger than that is kept as blocks
   * of rows. Default: the active webgpu device's limit; none elsewhere.
   */
  maxTensorBytes?: number | null;
}

/** The largest tensor the active backend binds whole: WebGPU's maxStorageBufferBindingSize; null elsewhere. */
export function backendMaxTensorBytes(): number | null {
  return tf.getBackend() === 'webgpu' ? webgpuMaxBindingBytes() : null;
}

export class WeightStore {
  readonly config: ModelConfig;
  readonly purpose: StorePurpose;
  /** the final norm, [D] */
  norm: tf.Tensor1D;
  /** resident groups (float32 on the backend); null where the group streams */
  private embedDevice: tf.Tensor2D | null = null; // [V, D]
  private headDevice: tf.Tensor2D | null = null; // infer: [D, V]; train: [V, D]
  /**
   * A packed embedding or untied head, or a resident one larger than the backend's largest tensor
   * (a 32000 × 2048 head is 250 MiB; llvmpipe binds 128 MiB): blocks of rows (RowTable)
   */
  private embedParts: RowTable | null = null;
  private headParts: RowTable | null = null;
  private readonly blockDevice: (BlockWeights | null)[];
  /** how each resident block's linears are laid out: 'io' as loaded for inference, 'oi' for training */
  private readonly blockLayout: Layout[];
  /** streamed groups */
  private embedStored: StoredTensor | null = null;
  private headStored: StoredTensor | null = null;
  private readonly blockStored: (Map<keyof BlockWeights, StoredTensor> | null)[];
  private readonly fds = new Map<string, number>();
  private staging: Uint8Array = new Uint8Array(0);
  private disposed = false;

  private constructor(config: ModelConfig, purpose: StorePurpose, norm: tf.Tensor1D) {
    this.config = config;
    this.purpose = purpose;
    this.norm = norm;
    this.blockDevice = new Array(config.numLayers).fill(null);
    this.blockLayout = new Array(config.numLayers).fill('io');
    this.blockStored = new Array(config.numLayers).fill(null);
  }

  /**
   * Reads a checkpoint's weights into the residency `plan` says. The caller (openCheckpoint) has
   * checked that every tensor exists with the shape the config implies.
   */
  static async load(config: ModelConfig, tensors: Map<string, TensorInfo>, opts: StoreLoadOptions): Promise<WeightStore> {
    const plan = opts.plan;
    if (plan.blocks.length !== config.numLayers) throw new Error(`residency plan has ${plan.blocks.length} blocks for a ${config.numLayers}-layer model`);
    const read = opts.read;
    if (read && (plan.embed !== 'device' || plan.head !== 'device' || plan.blocks.some((b) => b !== 'device'))) {
      throw new Error('a weight reader replaces the files only for resident weights; this plan streams some');
    }
    const toDevice = (info: TensorInfo, transpose: boolean) => (read ? readValuesToDevice(info, transpose, read) : readToDevice(info, transpose));
    const maxBytes = opts.maxTensorBytes !== undefined ? opts.maxTensorBytes : backendMaxTensorBytes();
    const tooBig = (info: TensorInfo) => !read && maxBytes !== null && numel(info.shape) * 4 > maxBytes;
    guardWasmHeap();
    const get = (name: string): TensorInfo => {
      const info = tensors.get(name);
      if (!info) throw new BlocklabError(`tensor ${name} is missing from the checkpoint`);
      return info;
    };
    const normInfo = get('model.norm.weight');
    const store = new WeightStore(config, opts.purpose ?? 'infer', (await toDevice(normInfo, false)) as tf.Tensor1D);
    try {
      const embedInfo = get('model.embed_tokens.weight');
      if (plan.embed === 'packed') store.embedParts = await readRowTable(embedInfo, maxBytes, true);
      else if (plan.embed === 'device' && tooBig(embedInfo)) store.embedParts = await readRowTable(embedInfo, maxBytes, false);
      else if (plan.embed === 'device') store.embedDevice = (await toDevice(embedInfo, false)) as tf.Tensor2D;
      else store.embedStored = await stored(embedInfo, plan.embed as StreamedResidency);

      if (!config.tieWordEmbeddings) {
        const headInfo = get('lm_head.weight');
        if (plan.head === 'packed') store.headParts = await readRowTable(headInfo, maxBytes, true);
        else if (plan.head === 'device' && tooBig(headInfo)) store.headParts = await readRowTable(headInfo, maxBytes, false);
        else if (plan.head === 'device') store.headDevice = (await toDevice(headInfo, store.purpose === 'infer')) as tf.Tensor2D;
        else store.headStored = await stored(headInfo, plan.head as StreamedResidency);
      } else if (store.embedDevice && store.purpose === 'infer') {
        store.headDevice = tf.transpose(store.embedDevice) as tf.Tensor2D; // [D, V]
      }

      for (let i = 0; i < config.numLayers; i++) {
        const names = blockNames(tensors, i);
        if (plan.blocks[i] === 'device') {
          const block: Partial<Record<keyof BlockWeights, Tensor>> = {};
          for (const [key, info, isLinear] of names) block[key] = await toDevice(info, isLinear);
          store.blockDevice[i] = block as unknown as BlockWeights;
        } else {
          const m = new Map<keyof BlockWeights, StoredTensor>();
          store.blockStored[i] = m;
          const where = plan.blocks[i];
          for (const [key, info] of names) m.set(key, where === 'packed' ? await packedOnDevice(info) : await stored(info, where as StreamedResidency));
        }
      }
      return store;
    } catch (e) {
      store.dispose();
      throw e;
    }
  }

  /**
   * An inference store over tensors already on the backend: float32 (linears [in, out], the head
   * [D, V]) or packed (PackedBlock, PackedTable); it owns them from now on. For models made in
   * memory (scripts/gpu-measure.ts), where writing a multi-GB checkpoint first would only cost time.
   */
  static fromResident(
    config: ModelConfig,
    w: { embed: tf.Tensor2D | PackedTable; blocks: (BlockWeights | PackedBlock)[]; norm: tf.Tensor1D; lmHead: tf.Tensor2D | PackedTable },
  ): WeightStore {
    if (w.blocks.length !== config.numLayers) throw new Error(`${w.blocks.length} blocks for a ${config.numLayers}-layer model`);
    const store = new WeightStore(config, 'infer', w.norm);
    const table = (t: PackedTable): RowTable => ({ parts: [t.words], half: t.dtype, packed: true });
    if ('words' in w.embed) store.embedParts = table(w.embed);
    else store.embedDevice = w.embed;
    if ('words' in w.lmHead) store.headParts = table(w.lmHead);
    else store.headDevice = w.lmHead;
    w.blocks.forEach((b, i) => {
      if (!(b instanceof Map)) {
        store.blockDevice[i] = b;
        return;
      }
      // a block given packed (scripts/gpu-measure.ts): its tensors in the HF shape, as loading makes them
      const m = new Map<keyof BlockWeights, StoredTensor>();
      for (const [key, t] of b) {
        const byteLength = numel(t.shape) * DTYPE_BYTES[t.dtype];
        m.set(key, { info: { name: `model.layers.${i}.${key}`, dtype: t.dtype, shape: t.shape, byteOffset: 0, byteLength, file: '(in memory)' }, bytes: null, gpu: t.gpu });
      }
      store.blockStored[i] = m;
    });
    return store;
  }

  /** What lives where now (blocks pinned for training count as 'device'). */
  get residency(): ResidencyPlan {
    const of = (device: unknown, parts: RowTable | null, s: StoredTensor | null): Residency =>
      device ? 'device' : parts ? (parts.packed ? 'packed' : 'device') : s?.bytes ? 'host' : 'file';
    const ofBlock = (s: StoredTensor | undefined): Residency => (s?.gpu ? 'packed' : s?.bytes ? 'host' : 'file');
    const embed = of(this.embedDevice, this.embedParts, this.embedStored);
    return {
      embed,
      head: this.config.tieWordEmbeddings ? embed : of(this.headDevice, this.headParts, this.headStored),
      blocks: this.blockDevice.map((b, i) => (b ? 'device' : ofBlock(this.blockStored[i]?.values().next().value as StoredTensor | undefined))),
    };
  }

  isResident(i: number): boolean {
    return this.blockDevice[i] !== null;
  }

  /** The resident float32 weights of block i, or null when it streams. Training replaces them with variables. */
  deviceBlock(i: number): BlockWeights | null {
    return this.blockDevice[i];
  }

  get deviceEmbed(): tf.Tensor2D | null {
    return this.embedDevice;
  }

  /** infer: [D, V]; train: [V, D]; null when tied (train) or streamed */
  get deviceHead(): tf.Tensor2D | null {
    return this.headDevice;
  }

  /**
   * Turns an inference store into a training one: a resident head becomes [V, D] rows (the
   * chunked cross-entropy reads rows; a tied head is the embedding itself).
   */
  toTraining(): void {
    this.check();
    if (this.purpose === 'train') return;
    (this as { purpose: StorePurpose }).purpose = 'train';
    if (this.headDevice) {
      const old = this.headDevice;
      this.headDevice = this.config.tieWordEmbeddings ? null : (tf.transpose(old) as tf.Tensor2D);
      old.dispose();
    }
  }

  // ------------------------------------------------------------------------------ blocks

  /**
   * Block i's weights for one use: float32; or, with `packedLinears` and a block packed with
   * 16-bit linears, those linears' words as they are kept (layout 'packed').
   */
  block(i: number, opts: { packedLinears?: boolean } = {}): BlockLease {
    this.check();
    const device = this.blockDevice[i];
    if (device) return { weights: device, layout: this.blockLayout[i], release: () => undefined };
    const stored = this.blockStored[i]!;
    const half = opts.packedLinears ? packedLinearsHalf(stored) : null;
    const made: Tensor[] = [];
    try {
      const w: Partial<Record<keyof BlockWeights, Tensor>> = {};
      for (const [key, s] of stored) {
        if (half && s.info.shape.length === 2) {
          w[key] = s.gpu!; // the store's own: not released
          continue;
        }
        const t = this.materialize(s);
        made.push(t);
        w[key] = t;
      }
      return {
        weights: w as unknown as BlockWeights,
        layout: half ? 'packed' : 'oi',
        ...(half ? { half } : {}),
        release: () => {
          for (const t of made) t.dispose();
        },
      };
    } catch (e) {
      for (const t of made) t.dispose();
      throw e;
    }
  }

  /**
   * Makes block i resident as float32 with its linears laid out as `layout`, and drops its stored
   * copy; returns the weights. (Training pins the blocks it trains as 'oi', the checkpoint's own
   * layout, which XNNPACK never copies.)
   */
  pinBlock(i: number, layout: Layout = 'io'): BlockWeights {
    this.check();
    const device = this.blockDevice[i];
    if (device && this.blockLayout[i] === layout) return device;
    const made: Partial<Record<keyof BlockWeights, Tensor>> = {};
    try {
      if (device) {
        for (const [key, t] of Object.entries(device) as [keyof BlockWeights, Tensor][]) made[key] = t.rank === 2 ? transposeAndDispose(t) : t;
      } else {
        for (const [key, s] of this.blockStored[i]!) {
          const t = this.materialize(s); // [out, in]
          made[key] = t.rank === 2 && layout === 'io' ? transposeAndDispose(t) : t;
        }
      }
    } catch (e) {
      if (!device) for (const t of Object.values(made)) t?.dispose();
      throw e;
    }
    this.setBlock(i, made as unknown as BlockWeights, layout);
    return this.blockDevice[i]!;
  }

  /** Replaces block i's resident weights (training: with variables); the old tensors are the caller's. */
  setBlock(i: number, weights: BlockWeights, layout: Layout): void {
    this.blockDevice[i] = weights;
    this.blockLayout[i] = layout;
    disposeStored(this.blockStored[i]);
    this.blockStored[i] = null;
  }

  /** The layout of resident block i's linears. */
  deviceLayout(i: number): Layout {
    return this.blockLayout[i];
  }

  // ------------------------------------------------------------------------------ embedding

  /** Embedding rows for ids [N] → [N, D]. */
  embedRows(ids: tf.Tensor1D): tf.Tensor2D {
    this.check();
    if (this.embedDevice) return tf.gather(this.embedDevice, ids) as tf.Tensor2D;
    if (this.embedParts) return tableRows(this.embedParts, ids);
    const s = this.embedStored!;
    const D = this.config.hiddenSize;
    const V = this.config.vocabSize;
    const values = ids.dataSync();
    const rowBytes = D * DTYPE_BYTES[s.info.dtype];
    return newFloat32Tensor([values.length, D], (out) => {
      for (let n = 0; n < values.length; n++) {
        const id = values[n];
        if (!(id >= 0 && id < V)) throw new BlocklabError(`token id ${id} is outside the vocabulary (0..${V - 1})`);
        const bytes = this.rows(s, id, id + 1, rowBytes);
        widenInto(bytes, s.info.dtype, out.subarray(n * D, (n + 1) * D));
      }
    }) as tf.Tensor2D;
  }

  /** Makes the embedding resident as float32 [V, D] (full fine-tuning trains it); returns it. */
  pinEmbed(): tf.Tensor2D {
    this.check();
    if (this.embedParts) throw tableNotTrainable('embedding', this.embedParts);
    if (!this.embedDevice) {
      this.embedDevice = this.materialize(this.embedStored!) as tf.Tensor2D;
      this.embedStored = null;
    }
    return this.embedDevice;
  }

  /** Replaces the resident embedding (training: with a variable). */
  setEmbed(t: tf.Tensor2D): void {
    this.embedDevice = t;
    this.embedStored = null;
  }

  // ------------------------------------------------------------------------------ head

  /** Rows per head chunk when the head streams: about 32 MiB of float32 at a time. */
  private headChunkRows(): number {
    const D = this.config.hiddenSize;
    return Math.min(this.maxHeadRows() ?? Infinity, Math.max(256, Math.min(this.config.vocabSize, Math.floor((32 * 2 ** 20) / (4 * D)))));
  }

  /** The most head rows one tensor may hold when the head is kept in blocks of rows (else null: any). */
  maxHeadRows(): number | null {
    const parts = this.headParts ?? (this.config.tieWordEmbeddings ? this.embedParts : null);
    return parts ? parts.parts[0].shape[0] : null;
  }

  /** logits = x @ headᵀ for x [N, D] → [N, V] (inference). */
  logits(x: tf.Tensor2D): tf.Tensor2D {
    this.check();
    if (this.headDevice && this.purpose === 'infer') return tf.matMul(x, this.headDevice);
    const table = this.headParts ?? (this.config.tieWordEmbeddings ? this.embedParts : null);
    const parts: Tensor[] = [];
    if (table?.half && x.shape[0] <= MATVEC_MAX_ROWS && !recordingGradients()) {
      // decoding from a packed head: each block of rows multiplied from its words
      for (const p of table.parts) parts.push(packedMatVec16(x, p, table.half));
    } else {
      const V = this.config.vocabSize;
      const step = this.headChunkRows();
      for (let v0 = 0; v0 < V; v0 += step) {
        const rows = this.headRows(v0, Math.min(V, v0 + step));
        parts.push(linearOI(x, rows));
        this.releaseHeadRows(rows);
      }
    }
    if (parts.length === 1) return parts[0] as tf.Tensor2D;
    const out = tf.concat(parts, 1) as tf.Tensor2D;
    for (const p of parts) p.dispose();
    return out;
  }

  /** Head rows v0..v1 as float32 [v1 − v0, D] (HF layout); give them back with releaseHeadRows. */
  headRows(v0: number, v1: number): tf.Tensor2D {
    this.check();
    const parts = this.headParts ?? (this.config.tieWordEmbeddings ? this.embedParts : null);
    if (parts) return tableSlice(parts, v0, v1);
    const whole = this.purpose === 'train' ? (this.headDevice ?? (this.config.tieWordEmbeddings ? this.embedDevice : null)) : null;
    if (whole) return (v0 === 0 && v1 === whole.shape[0] ? whole : tf.slice(whole, [v0, 0], [v1 - v0, whole.shape[1]])) as tf.Tensor2D;
    if (this.headDevice) {
      // an inference store's resident head is [D, V]: the rows are its columns
      return tf.tidy(() => tf.transpose(tf.slice(this.headDevice!, [0, v0], [this.headDevice!.shape[0], v1 - v0]))) as tf.Tensor2D;
    }
    if (this.config.tieWordEmbeddings && this.embedDevice) return tf.slice(this.embedDevice, [v0, 0], [v1 - v0, this.config.hiddenSize]) as tf.Tensor2D;
    const s = (this.config.tieWordEmbeddings ? this.embedStored : this.headStored)!;
    const D = this.config.hiddenSize;
    const rowBytes = D * DTYPE_BYTES[s.info.dtype];
    return newFloat32Tensor([v1 - v0, D], (out) => widenInto(this.rows(s, v0, v1, rowBytes), s.info.dtype, out)) as tf.Tensor2D;
  }

  releaseHeadRows(t: tf.Tensor2D): void {
    if (t !== this.headDevice && t !== this.embedDevice) t.dispose();
  }

  /** Makes an untied head resident as float32 [V, D] (training purpose); returns it. */
  pinHead(): tf.Tensor2D {
    this.check();
    if (this.config.tieWordEmbeddings) throw new Error('a tied head is the embedding: pin that');
    if (this.headParts) throw tableNotTrainable('LM head', this.headParts);
    if (this.purpose !== 'train') throw new Error('pinHead is for training stores');
    if (!this.headDevice) {
      this.headDevice = this.materialize(this.headStored!) as tf.Tensor2D;
      this.headStored = null;
    }
    return this.headDevice;
  }

  setHead(t: tf.Tensor2D): void {
    this.headDevice = t;
    this.headStored = null;
  }

  // ------------------------------------------------------------------------------ internals

  /** A stored tensor as a new float32 tensor in its stored (HF) shape. */
  private materialize(s: StoredTensor): Tensor {
    const { info } = s;
    if (s.gpu) return info.dtype === 'F32' ? tf.clone(s.gpu) : widen16(s.gpu, info.shape, info.dtype);
    if (s.bytes) return newFloat32Tensor(info.shape, (out) => widenInto(s.bytes!, info.dtype, out));
    const n = numel(info.shape);
    if (info.dtype === 'F32') {
      // read straight into the tensor's memory
      return newFloat32Tensor(info.shape, (out) => this.readInto(info, info.byteOffset, new Uint8Array(out.buffer, out.byteOffset, n * 4)));
    }
    return newFloat32Tensor(info.shape, (out) => widenInto(this.rows(s, 0, 1, info.byteLength), info.dtype, out));
  }

  /** Bytes of rows r0..r1 of a stored 2-D tensor (a view of host bytes, or read into the staging buffer). */
  private rows(s: StoredTensor, r0: number, r1: number, rowBytes: number): Uint8Array {
    if (s.bytes) return s.bytes.subarray(r0 * rowBytes, r1 * rowBytes);
    const len = (r1 - r0) * rowBytes;
    if (this.staging.byteLength < len) this.staging = new Uint8Array(len);
    const view = this.staging.subarray(0, len);
    this.readInto(s.info, s.info.byteOffset + r0 * rowBytes, view);
    return view;
  }

  private readInto(info: TensorInfo, position: number, into: Uint8Array): void {
    let fd = this.fds.get(info.file);
    if (fd === undefined) {
      try {
        fd = openSync(info.file, 'r');
      } catch (e) {
        throw new BlocklabError(`cannot open the file to stream weights from (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { file: info.file, cause: e });
      }
      this.fds.set(info.file, fd);
    }
    let done = 0;
    while (done < into.byteLength) {
      const got = readSync(fd, into, done, Math.min(1 << 30, into.byteLength - done), position + done);
      if (got === 0) throw new BlocklabError(`the file ended while streaming tensor ${info.name}; it was truncated or replaced while in use`, { file: info.file });
      done += got;
    }
  }

  private check(): void {
    if (this.disposed) throw new Error('the model was disposed');
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const seen = new Set<Tensor>();
    const all: (Tensor | null | undefined)[] = [this.norm, this.embedDevice, this.headDevice, ...(this.embedParts?.parts ?? []), ...(this.headParts?.parts ?? [])];
    for (const b of this.blockDevice) if (b) all.push(...(Object.values(b) as Tensor[]));
    for (const t of all) {
      if (!t || seen.has(t)) continue;
      seen.add(t);
      t.dispose();
    }
    for (const m of this.blockStored) disposeStored(m);
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
    this.embedStored = null;
    this.headStored = null;
    this.blockStored.fill(null);
  }
}

/** The tensors of block i: [BlockWeights key, info, is a linear weight]. */
function blockNames(tensors: Map<string, TensorInfo>, i: number): [keyof BlockWeights, TensorInfo, boolean][] {
  const out: [keyof BlockWeights, TensorInfo, boolean][] = [];
  for (const [key, suffix, isLinear] of BLOCK_TENSORS) {
    const info = tensors.get(`model.layers.${i}.${suffix}`);
    if (info) out.push([key, info, isLinear]);
  }
  return out;
}

function transposeAndDispose(t: Tensor): Tensor {
  const tt = tf.transpose(t);
  t.dispose();
  return tt;
}

/**
 * An embedding or untied head kept on the backend as consecutive blocks of rows, in order, each
 * within the backend's largest tensor: float32 [rows, D] (a 'device' table too large to bind
 * whole), or a 'packed' table's stored values — BF16 / F16 as int32 words [rows, D / 2] (a row is
 * whole words), F32 as float32 [rows, D].
 */
interface RowTable {
  parts: tf.Tensor2D[];
  /** the 16-bit format the parts' words hold; null: float32 rows */
  half: Half | null;
  packed: boolean;
}

/** Reads a [V, D] tensor into a RowTable: packed (its stored values), or float32. */
async function readRowTable(info: TensorInfo, maxBytes: number | null, packed: boolean): Promise<RowTable> {
  const [V, D] = info.shape;
  const half = packed && info.dtype !== 'F32' ? (info.dtype as Half) : null;
  if (half) requireWidenOnBackend();
  if (half && D % 2 !== 0) throw new Error(`${info.name}: a packed table needs rows of whole 32-bit words; its rows have ${D} values (the plan keeps it float32)`);
  const valueBytes = half ? 2 : 4;
  const rowsPer = maxBytes === null ? V : Math.max(1, Math.floor(maxBytes / (valueBytes * D)));
  const count = Math.ceil(V / rowsPer);
  const per = Math.ceil(V / count); // even blocks
  const bytes = new Uint8Array(info.byteLength);
  await readAll(info, bytes);
  const rowBytes = D * DTYPE_BYTES[info.dtype];
  const parts: tf.Tensor2D[] = [];
  try {
    for (let r0 = 0; r0 < V; r0 += per) {
      const r1 = Math.min(V, r0 + per);
      const rows = bytes.subarray(r0 * rowBytes, r1 * rowBytes);
      const t = half ? tf.tensor2d(packHalfWords(rows), [r1 - r0, D / 2], 'int32') : (newFloat32Tensor([r1 - r0, D], (out) => widenInto(rows, info.dtype, out)) as tf.Tensor2D);
      uploadNow(t);
      parts.push(t);
    }
  } catch (e) {
    for (const p of parts) p.dispose();
    throw e;
  }
  return { parts, half, packed };
}

/** The rows of a table for ids [N], as float32 [N, D] (packed words: by the engine's own kernel, which alone reads them exactly). */
function tableRows(table: RowTable, ids: tf.Tensor1D): tf.Tensor2D {
  return table.half ? gatherWiden16(table.parts, ids, table.half) : gatherFromParts(table.parts, ids);
}

/** Rows v0..v1 of a table as one new float32 [v1 − v0, D] tensor. */
function tableSlice(table: RowTable, v0: number, v1: number): tf.Tensor2D {
  if (!table.half) return rowsOfParts(table.parts, v0, v1);
  const ids = tf.range(v0, v1, 1, 'int32') as tf.Tensor1D;
  try {
    return gatherWiden16(table.parts, ids, table.half);
  } finally {
    ids.dispose();
  }
}

/**
 * table[ids] for a float32 table kept in blocks of rows: each block gathers the ids that fall in
 * it (the others read its row 0), and a select keeps each id's row from its own block — exactly
 * the rows a single gather gives (nothing is computed on them).
 */
function gatherFromParts(parts: tf.Tensor2D[], ids: tf.Tensor1D): tf.Tensor2D {
  if (parts.length === 1) return tf.gather(parts[0], ids);
  return tf.tidy(() => {
    let acc: tf.Tensor2D | null = null;
    let offset = 0;
    for (const p of parts) {
      const n = p.shape[0];
      const local = tf.sub(ids, tf.scalar(offset, 'int32'));
      const rows = tf.gather(p, tf.clipByValue(local, 0, n - 1));
      if (acc) {
        const inside = tf.expandDims(tf.logicalAnd(tf.greaterEqual(local, tf.scalar(0, 'int32')), tf.less(local, tf.scalar(n, 'int32'))), 1);
        acc = tf.where(inside, rows, acc);
      } else {
        acc = rows;
      }
      offset += n;
    }
    return acc!;
  });
}

/** Rows v0..v1 of a float32 table kept in blocks of rows, as one new [v1 − v0, D] tensor. */
function rowsOfParts(parts: tf.Tensor2D[], v0: number, v1: number): tf.Tensor2D {
  return tf.tidy(() => {
    const pieces: tf.Tensor2D[] = [];
    let offset = 0;
    for (const p of parts) {
      const n = p.shape[0];
      const a = Math.max(v0, offset);
      const b = Math.min(v1, offset + n);
      if (a < b) pieces.push(tf.slice(p, [a - offset, 0], [b - a, p.shape[1]]));
      offset += n;
    }
    return (pieces.length === 1 ? pieces[0] : tf.concat(pieces, 0)) as tf.Tensor2D;
  });
}

/** Why a table kept in blocks of rows cannot be made a trainable float32 tensor. */
function tableNotTrainable(what: string, table: RowTable): Error {
  if (table.packed) return new Error(`the ${what} was loaded packed (frozen); a trained ${what} is planned float32 on the backend`);
  const rows = table.parts.reduce((a, p) => a + p.shape[0], 0);
  const D = table.parts[0].shape[1];
  const mib = (rows * D * 4) / 2 ** 20;
  return new BlocklabError(
    `the ${what} (${mib.toFixed(0)} MiB as float32) is larger than the biggest tensor this GPU can use (${((table.parts[0].shape[0] * D * 4) / 2 ** 20).toFixed(0)} MiB per block of rows), so it cannot be trained whole here; tune the new blocks (--method blocks), LoRA or the last blocks instead, or use --backend wasm`,
  );
}

/** Reads a tensor for 'device' residency: float32 on the backend, linears transposed to [in, out]. */
async function readToDevice(info: TensorInfo, transpose: boolean): Promise<Tensor> {
  const bytes = new Uint8Array(info.byteLength);
  await readAll(info, bytes);
  const t = newFloat32Tensor(info.shape, (out) => widenInto(bytes, info.dtype, out));
  return transpose ? transposeAndDispose(t) : t;
}

/** The same, from a reader's float32 values. */
async function readValuesToDevice(info: TensorInfo, transpose: boolean, read: WeightReader): Promise<Tensor> {
  const t = tf.tensor(await read(info), info.shape, 'float32');
  uploadNow(t);
  return transpose ? transposeAndDispose(t) : t;
}

/** The 16-bit format of a packed block whose linears are all kept as words; else null. */
function packedLinearsHalf(stored: Map<keyof BlockWeights, StoredTensor>): Half | null {
  let half: Half | null = null;
  for (const s of stored.values()) {
    if (s.info.shape.length !== 2) continue;
    if (!s.gpu || s.info.dtype === 'F32' || (half !== null && s.info.dtype !== half)) return null;
    half = s.info.dtype;
  }
  return half;
}

/** The 'packed' residency needs the engine's kernels (webgpu); a plan that packs elsewhere is a bug. */
function requireWidenOnBackend(): void {
  if (!canWidenOnBackend()) throw new Error(`the 'packed' residency needs the webgpu backend's Widen16 kernels; the active backend is ${tf.getBackend()}`);
}

/** Frees a streamed block's GPU copies ('packed'). */
function disposeStored(m: Map<keyof BlockWeights, StoredTensor> | null): void {
  if (m) for (const s of m.values()) s.gpu?.dispose();
}

/**
 * Reads a tensor for 'packed' residency: its stored BF16 / F16 values uploaded as they are (two to
 * an int32 word), an F32 tensor as float32 — in the stored (HF) shape, on the GPU now, so that
 * nothing of it stays in RAM.
 */
async function packedOnDevice(info: TensorInfo): Promise<StoredTensor> {
  requireWidenOnBackend();
  const bytes = new Uint8Array(info.byteLength);
  await readAll(info, bytes);
  const gpu = info.dtype === 'F32' ? newFloat32Tensor(info.shape, (out) => widenInto(bytes, 'F32', out)) : uploadPacked(bytes);
  uploadNow(gpu);
  return { info, bytes: null, gpu };
}

/**
 * tfjs-webgpu keeps a new tensor's values in RAM until a kernel first reads it: weights loaded to
 * stay on the GPU are sent now, so that RAM holds one tensor at a time while a model loads.
 */
export function uploadNow(t: Tensor): void {
  if (tf.getBackend() !== 'webgpu') return;
  (tf.backend() as unknown as { uploadToGPU(dataId: object): void }).uploadToGPU(t.dataId);
}

/** Reads a tensor for 'host' residency (its stored bytes), or notes where it is for 'file'. */
async function stored(info: TensorInfo, residency: StreamedResidency): Promise<StoredTensor> {
  if (residency === 'file') return { info, bytes: null };
  const bytes = new Uint8Array(info.byteLength);
  await readAll(info, bytes);
  return { info, bytes };
}
