/**
 * The LLaMA-family decoder (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM) in
 * TensorFlow.js ops: the whole forward pass is in this file, top to bottom, with the
 * semantics of Hugging Face transformers' eager implementation in float32:
 *
 *   h = x + o_proj(Attn(RoPE(q_proj(n)), RoPE(k_proj(n)), v_proj(n)))   n = RMSNorm(x)
 *   y = h + down_proj(silu(gate_proj(m)) * up_proj(m))                   m = RMSNorm(h)
 *   logits = lm_head(RMSNorm(y_L))
 *
 * Shapes: B batch, T new tokens, S = past + T keys, D hidden, nh/nkv query/key-value heads,
 * g = nh / nkv queries per kv head, hd head dim, F MLP width, V vocab.
 *
 * Weights come from the weight store (weights.ts), a block at a time: resident linears are kept
 * transposed, [in, out], so a projection is a plain `matMul(x, W)`; a streamed block's (and a
 * wide model's trained ones) stay [out, in] and compute (W @ xᵀ)ᵀ — the wasm backend sends only
 * non-transposed matmuls to XNNPACK, and both routes give the same bits there.
 */
import { tf } from './backend.js';
import { gradsWithin, linearOI, recordingGradients } from './autodiff.js';
import type { ModelConfig } from './config.js';
import { BlocklabError } from './errors.js';
import type { TensorInfo } from './safetensors.js';
import { attention } from './attention.js';
import { MATVEC_MAX_ROWS, packedMatVec16, type Half } from './webgpu-kernels.js';
import { WeightStore, type BlockLease, type BlockWeights, type Layout, type ResidencyPlan, type StorePurpose, type WeightReader } from './weights.js';
export type { WeightReader };

export type { BlockWeights } from './weights.js';

type Tensor = tf.Tensor;

/** Every weight as a resident float32 tensor (a model whose residency is all 'device'). */
export interface LlamaWeights {
  embed: tf.Tensor2D; // [V, D]  model.embed_tokens.weight
  blocks: BlockWeights[]; // L
  norm: tf.Tensor1D; // [D]      model.norm.weight
  lmHead: tf.Tensor2D; // [D, V]  lm_head.weight ᵀ (embed ᵀ when tied)
}

export type Projection = 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down';

/**
 * Replaceable pieces of the forward pass, for training: a linear layer with a fast backward
 * (and LoRA), an embedding lookup with a gradient. Without hooks, each is the plain op.
 */
export interface ForwardHooks {
  /** x @ w for projection `proj` of block `layer`, w laid out as `layout` says (the bias is added by the caller) */
  linear?(x: Tensor, w: Tensor, layer: number, proj: Projection, layout: Layout): Tensor;
  /** embed[ids], ids: [N] int32 → [N, D] */
  embed?(ids: Tensor): Tensor;
  /** trainable tensors block `layer` uses besides its weights (LoRA adapters): a streamed block's gradient reaches them */
  blockParams?(layer: number): tf.Variable[];
  /** final hidden states [N, D] → logits [N, V] (inference; training's head is the chunked head + cross-entropy) */
  head?(x: Tensor): Tensor;
}

/** Keys and values of the tokens seen so far, per layer, before the GQA grouping. */
export interface KVCache {
  k: tf.Tensor4D[]; // L × [B, nkv, S, hd]
  v: tf.Tensor4D[]; // L × [B, nkv, S, hd]
  length: number; // S
}

/** Up to this many tokens in a forward pass (decoding), blocks share the caller's tidy scope. */
const SMALL_STEP_TOKENS = 16;

export interface ModelLoadOptions {
  /** where each group of weights lives (default: everything resident float32) */
  residency?: ResidencyPlan;
  purpose?: StorePurpose;
  /** where resident weights' float32 values come from (default: the checkpoint's files); GGUF export passes the values as a quantized file holds them */
  read?: WeightReader;
}

/** Every group resident: the plan for a model that fits the backend. */
export function residentPlan(config: ModelConfig): ResidencyPlan {
  return { embed: 'device', head: 'device', blocks: new Array(config.numLayers).fill('device') };
}

// ----------------------------------------------------------------------------
// Rotary position embedding (transformers' modeling_rope_utils + LlamaRotaryEmbedding)

/**
 * inv_freq[i] = 1 / theta^(2i / hd), in float32 as transformers computes it, with the
 * `llama3` frequency-dependent scaling when the config asks for it.
 */
export function ropeInverseFrequencies(config: ModelConfig): Float32Array {
  const hd = config.headDim;
  const half = hd / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    // torch: base ** (arange(0, dim, 2).float() / dim), then 1.0 / that, all float32
    const exponent = Math.fround((2 * i) / hd);
    inv[i] = Math.fround(1 / Math.fround(Math.pow(config.ropeTheta, exponent)));
  }
  const s = config.ropeScaling;
  if (!s) return inv;
  // _compute_llama3_parameters: long wavelengths are divided by `factor`, short ones kept,
  // the band between blends the two.
  const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const f = inv[i];
    const wavelen = (2 * Math.PI) / f;
    let scaled = wavelen > lowFreqWavelen ? f / s.factor : f;
    const isMedium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
    if (isMedium) {
      const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      scaled = (1 - smooth) * (scaled / s.factor) + smooth * scaled;
    }
    out[i] = Math.fround(scaled);
  }
  return out;
}

/** cos and sin tables for positions start..start+T-1: each [T, hd] (emb = cat(freqs, freqs)). */
function ropeTables(invFreq: Float32Array, start: number, T: number): { cos: Tensor; sin: Tensor } {
  const half = invFreq.length;
  const hd = half * 2;
  const cos = new Float32Array(T * hd);
  const sin = new Float32Array(T * hd);
  for (let t = 0; t < T; t++) {
    const pos = start + t;
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(invFreq[i] * pos); // float32 product, as torch computes freqs
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      cos[t * hd + i] = c;
      cos[t * hd + half + i] = c;
      sin[t * hd + i] = s;
      sin[t * hd + half + i] = s;
    }
  }
  return { cos: tf.tensor2d(cos, [T, hd]), sin: tf.tensor2d(sin, [T, hd]) };
}

/** x·cos + rotate_half(x)·sin, rotate_half(x) = cat(−x[..., hd/2:], x[..., :hd/2]). x: [B, h, T, hd]. */
function applyRope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const hd = x.shape[3]!;
  const [x1, x2] = tf.split(x, [hd / 2, hd / 2], 3);
  const rotated = tf.concat([tf.neg(x2), x1], 3);
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin));
}

// ----------------------------------------------------------------------------
// Primitives

/** LlamaRMSNorm: x / sqrt(mean(x²) + eps) · w, in float32. x: [..., D] */
export function rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
  const variance = tf.mean(tf.square(x), -1, true);
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(variance, eps))), weight);
}


/**
 * Additive attention mask [T, S]: query t (absolute position past + t) sees key s when
 * s ≤ past + t and, with a sliding window W, when (past + t) − s < W.
 */
function attentionMask(T: number, S: number, window: number | null): Tensor {
  const past = S - T;
  const mask = new Float32Array(T * S);
  for (let t = 0; t < T; t++) {
    const q = past + t;
    for (let s = 0; s < S; s++) {
      const visible = s <= q && (window === null || q - s < window);
      mask[t * S + s] = visible ? 0 : -1e30;
    }
  }
  return tf.tensor2d(mask, [T, S]);
}

// ----------------------------------------------------------------------------
// The model

export class LlamaModel {
  readonly config: ModelConfig;
  /** where the weights live, and how a block's float32 tensors are had (weights.ts) */
  readonly store: WeightStore;
  /** set by training; inference leaves it empty */
  hooks: ForwardHooks = {};
  private readonly invFreq: Float32Array;

  constructor(config: ModelConfig, store: WeightStore) {
    this.config = config;
    this.store = store;
    this.invFreq = ropeInverseFrequencies(config);
  }

  /** Reads a checkpoint's weights into the residency `opts.residency` says (default: all resident float32). */
  static async fromTensors(config: ModelConfig, tensors: Map<string, TensorInfo>, opts: ModelLoadOptions = {}): Promise<LlamaModel> {
    const store = await WeightStore.load(config, tensors, { plan: opts.residency ?? residentPlan(config), purpose: opts.purpose, read: opts.read });
    return new LlamaModel(config, store);
  }

  /** Every weight as resident float32 tensors: only for a model whose weights are all resident. */
  get weights(): LlamaWeights {
    const s = this.store;
    const blocks = Array.from({ length: this.config.numLayers }, (_, i) => s.deviceBlock(i));
    const embed = s.deviceEmbed;
    const lmHead = s.deviceHead;
    if (!embed || !lmHead || s.purpose !== 'infer' || blocks.some((b) => !b)) {
      throw new Error('this model does not hold every weight resident; reach them through model.store');
    }
    return { embed, blocks: blocks as BlockWeights[], norm: s.norm, lmHead };
  }

  dispose(): void {
    this.store.dispose();
  }

  /**
   * One decoder block with weights `w` (linears laid out as `layout`). x: [B, T, D] → [B, T, D].
   * `past` holds this layer's cached keys and values; the returned k, v include the new tokens.
   */
  private block(
    i: number,
    x: Tensor,
    cos: Tensor,
    sin: Tensor,
    mask: Tensor,
    pastK: Tensor | null,
    pastV: Tensor | null,
    w: BlockWeights,
    layout: Layout,
    half?: Half,
  ): { y: Tensor; k: Tensor; v: Tensor } {
    const c = this.config;
    const [B, T, D] = x.shape as [number, number, number];
    const { numHeads: nh, numKvHeads: nkv, headDim: hd } = c;
    const g = nh / nkv;
    /** x @ W (+ b), x: [N, in], W: [in, out] ('io'), [out, in] ('oi') or packed [out, in] words ('packed') */
    const linear = (x: Tensor, w: Tensor, b: Tensor | undefined, proj: Projection): Tensor => {
      const y = this.hooks.linear
        ? this.hooks.linear(x, w, i, proj, layout)
        : layout === 'io'
          ? tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D)
          : layout === 'packed'
            ? packedMatVec16(x as tf.Tensor2D, w, half!)
            : linearOI(x, w);
      return b ? tf.add(y, b) : y;
    };

    // --- attention
    const n = tf.reshape(rmsNorm(x, w.inputNorm, c.rmsNormEps), [B * T, D]);
    let q = tf.transpose(tf.reshape(linear(n, w.q, w.qBias, 'q'), [B, T, nh, hd]), [0, 2, 1, 3]); // [B, nh, T, hd]
    let k = tf.transpose(tf.reshape(linear(n, w.k, w.kBias, 'k'), [B, T, nkv, hd]), [0, 2, 1, 3]); // [B, nkv, T, hd]
    const vNew = tf.transpose(tf.reshape(linear(n, w.v, w.vBias, 'v'), [B, T, nkv, hd]), [0, 2, 1, 3]); // [B, nkv, T, hd]
    q = applyRope(q, cos, sin);
    k = applyRope(k, cos, sin);
    const kAll = pastK ? tf.concat([pastK, k], 2) : k; // [B, nkv, S, hd]
    const vAll = pastV ? tf.concat([pastV, vNew], 2) : vNew; // [B, nkv, S, hd]

    // GQA without copying keys: the g query heads that share a kv head are stacked along T.
    // HF's repeat_kv maps query head h to kv head floor(h / g): the same grouping.
    const qg = tf.reshape(q, [B, nkv, g * T, hd]); // [B, nkv, g·T, hd]
    const maskG = g === 1 ? mask : tf.tile(mask, [g, 1]); // [g·T, S]
    const ctx = attention(qg, kAll, vAll, maskG); // [B, nkv, g·T, hd]
    const merged = tf.reshape(tf.transpose(tf.reshape(ctx, [B, nh, T, hd]), [0, 2, 1, 3]), [B * T, nh * hd]);
    const attnOut = linear(merged, w.o, w.oBias, 'o'); // [B·T, D]
    const h = tf.add(x, tf.reshape(attnOut, [B, T, D]));

    // --- SwiGLU MLP
    const m = tf.reshape(rmsNorm(h, w.postNorm, c.rmsNormEps), [B * T, D]);
    const gate = linear(m, w.gate, w.gateBias, 'gate');
    const act = tf.mul(tf.mul(gate, tf.sigmoid(gate)), linear(m, w.up, w.upBias, 'up')); // silu(gate) · up, [B·T, F]
    const mlpOut = linear(act, w.down, w.downBias, 'down'); // [B·T, D]
    const y = tf.add(h, tf.reshape(mlpOut, [B, T, D]));
    return { y, k: kAll, v: vAll };
  }

  /**
   * A block whose weights stream, while gradients are recorded: one custom-gradient op whose
   * forward leases the weights, computes and releases them (nothing recorded), and whose
   * backward leases them again and recomputes the block to take its gradient (activation
   * checkpointing). Only the block's input is kept in between. The gradient reaches x and the
   * trainable tensors the block uses besides its weights (LoRA adapters).
   */
  private checkpointedBlock(i: number, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor): Tensor {
    const params = this.hooks.blockParams?.(i) ?? [];
    const compute = (xIn: Tensor, c: Tensor, s: Tensor, m: Tensor, lease: BlockLease) => this.block(i, xIn, c, s, m, null, null, lease.weights, lease.layout).y;
    const withLease = <T>(f: (lease: BlockLease) => T): T => {
      const lease = this.store.block(i);
      try {
        return f(lease);
      } finally {
        lease.release();
      }
    };
    const op = tf.customGrad(((...args: unknown[]) => {
      const save = args[args.length - 1] as tf.GradSaveFunc;
      const xIn = args[0] as Tensor;
      // the backward pass reads only what is saved: the rest made in the forward is freed after it
      save([xIn, cos, sin, mask]);
      return {
        value: withLease((lease) => compute(xIn, cos, sin, mask, lease)),
        gradFunc: (dy: Tensor, saved: Tensor[]) => {
          const [xS, cosS, sinS, maskS] = saved;
          return withLease((lease) => gradsWithin((...xs: Tensor[]) => compute(xs[0], cosS, sinS, maskS, lease), [xS, ...params], dy));
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0]);
    return (op as unknown as (...xs: Tensor[]) => Tensor)(x, ...params);
  }

  /**
   * Runs the decoder on ids [B, T] (every row the same length) after `cache.length` cached
   * positions. Returns logits [B, T, V] (or only the last position's, [B, 1, V], with
   * `lastOnly`). With a cache, its tensors are replaced by ones that include the new tokens
   * and the old ones are disposed.
   */
  forward(ids: number[][] | tf.Tensor2D, options: { cache?: KVCache; lastOnly?: boolean } = {}): tf.Tensor3D {
    const c = this.config;
    const cache = options.cache;
    const idsTensor = Array.isArray(ids) ? null : ids;
    const B = idsTensor ? idsTensor.shape[0] : (ids as number[][]).length;
    const T = idsTensor ? idsTensor.shape[1] : (ids as number[][])[0]?.length ?? 0;
    if (B === 0 || T === 0) throw new BlocklabError('forward pass needs at least one token');
    const past = cache?.length ?? 0;
    if (past + T > c.maxPositionEmbeddings) {
      throw new BlocklabError(
        `${past + T} tokens exceed the model's max_position_embeddings (${c.maxPositionEmbeddings}); shorten the input`,
      );
    }
    if (!idsTensor) {
      for (const row of ids as number[][]) {
        if (row.length !== T) throw new BlocklabError('every row of a batch must have the same length');
        for (const id of row) {
          if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) {
            throw new BlocklabError(`token id ${id} is outside the vocabulary (0..${c.vocabSize - 1})`);
          }
        }
      }
    }

    const result = tf.tidy(() => {
      const idT = idsTensor ?? tf.tensor2d((ids as number[][]).flat(), [B, T], 'int32');
      const out = this.run(idT, cache ?? null, options.lastOnly ?? false);
      return { logits: out.logits, ks: cache ? out.ks : [], vs: cache ? out.vs : [] };
    });

    if (cache) {
      for (const t of cache.k) t.dispose();
      for (const t of cache.v) t.dispose();
      cache.k = result.ks as tf.Tensor4D[];
      cache.v = result.vs as tf.Tensor4D[];
      cache.length = past + T;
    }
    return result.logits;
  }

  /**
   * The forward pass proper, without tidy (training records it for gradients). ids: [B, T]
   * int32 → logits [B, T, V] (or [B, 1, V] with lastOnly), and every layer's keys and values
   * when there is a cache.
   */
  /** logits = x @ headᵀ for x [N, D] → [N, V], through the head hook when one is set */
  headLogits(x: tf.Tensor2D): tf.Tensor2D {
    return (this.hooks.head ? this.hooks.head(x) : this.store.logits(x)) as tf.Tensor2D;
  }

  run(idT: tf.Tensor2D, cache: KVCache | null, lastOnly: boolean): { logits: tf.Tensor3D; ks: tf.Tensor4D[]; vs: tf.Tensor4D[] } {
    const [B] = idT.shape;
    const { hidden, ks, vs } = this.hidden(idT, cache, lastOnly);
    const Tout = hidden.shape[1];
    const logits = this.headLogits(tf.reshape(hidden, [B * Tout, this.config.hiddenSize]) as tf.Tensor2D);
    return { logits: tf.reshape(logits, [B, Tout, this.config.vocabSize]) as tf.Tensor3D, ks, vs };
  }

  /**
   * The decoder up to and including the final norm: ids [B, T] int32 → hidden states [B, T, D]
   * (or [B, 1, D] with lastOnly), and each layer's keys and values when there is a cache.
   * Without gradients being recorded, each block runs in its own tidy scope, so that only one
   * block's intermediates (and one streamed block's weights) are alive at a time.
   */
  hidden(idT: tf.Tensor2D, cache: KVCache | null, lastOnly: boolean): { hidden: tf.Tensor3D; ks: tf.Tensor4D[]; vs: tf.Tensor4D[] } {
    const c = this.config;
    const [B, T] = idT.shape;
    const D = c.hiddenSize;
    const past = cache?.length ?? 0;
    const recording = recordingGradients();
    const flatIds = tf.reshape(idT, [B * T]) as tf.Tensor1D;
    const embedded = this.hooks.embed ? this.hooks.embed(flatIds) : this.store.embedRows(flatIds);
    let x: Tensor = tf.reshape(embedded, [B, T, D]);
    const { cos, sin } = ropeTables(this.invFreq, past, T);
    const S = past + T;
    const fullMask = attentionMask(T, S, null);
    const windowMask = c.slidingWindow !== null ? attentionMask(T, S, c.slidingWindow) : fullMask;
    const ks: tf.Tensor4D[] = [];
    const vs: tf.Tensor4D[] = [];
    // a few tokens (decoding) from a packed block: its linears multiplied from their 16-bit words,
    // without widening them (packedMatVec16 has no gradient, and the hooks are training's)
    const packedLinears = B * T <= MATVEC_MAX_ROWS && !this.hooks.linear && !recordingGradients();
    for (let i = 0; i < c.numLayers; i++) {
      const mask = c.slidingWindow !== null && i >= c.slidingWindowFromLayer ? windowMask : fullMask;
      const pastK = cache?.k[i] ?? null;
      const pastV = cache?.v[i] ?? null;
      if (recording) {
        if (!this.store.isResident(i)) {
          x = this.checkpointedBlock(i, x, cos, sin, mask);
          continue;
        }
        const w = this.store.deviceBlock(i)!;
        const out = this.block(i, x, cos, sin, mask, pastK, pastV, w, this.store.deviceLayout(i));
        x = out.y;
        if (cache) {
          ks.push(out.k as tf.Tensor4D);
          vs.push(out.v as tf.Tensor4D);
        }
        continue;
      }
      const xIn = x;
      const run = () => {
        const lease = this.store.block(i, { packedLinears });
        try {
          const o = this.block(i, xIn, cos, sin, mask, pastK, pastV, lease.weights, lease.layout, lease.half);
          return cache ? [o.y, o.k, o.v] : [o.y];
        } finally {
          lease.release();
        }
      };
      // a scope of its own frees the block's intermediates at once; for a few tokens (decoding)
      // they are small, and the scope's bookkeeping would cost more than it saves
      const scoped = B * T > SMALL_STEP_TOKENS;
      const out = scoped ? tf.tidy(run) : run();
      if (scoped && xIn !== embedded) xIn.dispose(); // the previous block's output: only this block needed it
      x = out[0];
      if (cache) {
        ks.push(out[1] as tf.Tensor4D);
        vs.push(out[2] as tf.Tensor4D);
      }
    }
    if (lastOnly) x = tf.slice(x, [0, T - 1, 0], [B, 1, D]);
    const hidden = rmsNorm(x, this.store.norm, c.rmsNormEps) as tf.Tensor3D;
    return { hidden, ks, vs };
  }

  newCache(): KVCache {
    return { k: [], v: [], length: 0 };
  }
}

export function disposeCache(cache: KVCache): void {
  for (const t of cache.k) t.dispose();
  for (const t of cache.v) t.dispose();
  cache.k = [];
  cache.v = [];
  cache.length = 0;
}

/** Positions whose logits are made at once when scoring: about this many float32 logits per chunk. */
const LOGIT_CHUNK_ELEMENTS = 4 * 2 ** 20;

/**
 * For positions `rows` of a batch ids [B, T] (flat indices b·T + t), log p(targets[k] | the tokens
 * up to rows[k]) and the argmax token there. The decoder runs once; the head is applied to a chunk
 * of rows at a time, so the [B·T, V] logits (and their log-softmax) never sit in memory whole.
 */
export async function targetLogProbs(model: LlamaModel, idT: tf.Tensor2D, rows: ArrayLike<number>, targets: ArrayLike<number>): Promise<{ logp: Float32Array; argmax: Int32Array }> {
  const [B, T] = idT.shape;
  const c = model.config;
  if (T > c.maxPositionEmbeddings) {
    throw new BlocklabError(`${T} tokens exceed the model's max_position_embeddings (${c.maxPositionEmbeddings}); shorten the input`);
  }
  const V = c.vocabSize;
  const hidden = tf.tidy(() => tf.reshape(model.hidden(idT, null, false).hidden, [B * T, c.hiddenSize]) as tf.Tensor2D);
  const logp = new Float32Array(targets.length);
  const argmax = new Int32Array(targets.length);
  const per = Math.max(1, Math.floor(LOGIT_CHUNK_ELEMENTS / V));
  try {
    for (let r0 = 0; r0 < targets.length; r0 += per) {
      const n = Math.min(per, targets.length - r0);
      const [lpT, amT] = tf.tidy(() => {
        const logits = model.headLogits(tf.gather(hidden, tf.tensor1d(Int32Array.from({ length: n }, (_, k) => rows[r0 + k]), 'int32')) as tf.Tensor2D); // [n, V]
        const lsm = tf.logSoftmax(logits);
        // lsm[k, targets[k]] through a flat gather (the wasm backend's gather with batchDims is broken)
        const flat = Int32Array.from({ length: n }, (_, k) => k * V + targets[r0 + k]);
        return [tf.gather(tf.reshape(lsm, [n * V]), tf.tensor1d(flat, 'int32')), tf.argMax(logits, 1)];
      });
      logp.set((await lpT.data()) as Float32Array, r0);
      argmax.set((await amT.data()) as Int32Array, r0);
      lpT.dispose();
      amT.dispose();
    }
  } finally {
    hidden.dispose();
  }
  return { logp, argmax };
}

/**
 * Per-token negative log-likelihood: nll[i] = −log p(ids[i+1] | ids[0..i]), from a forward
 * pass over all of ids (log-softmax in float32).
 */
export async function tokenNll(model: LlamaModel, ids: number[]): Promise<Float32Array> {
  if (ids.length < 2) throw new BlocklabError('scoring needs at least two tokens (a context and a next token)');
  const V = model.config.vocabSize;
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new BlocklabError(`token id ${id} is outside the vocabulary (0..${V - 1})`);
  }
  const T = ids.length - 1;
  const idT = tf.tensor2d(ids, [1, ids.length], 'int32');
  try {
    const { logp } = await targetLogProbs(model, idT, Int32Array.from({ length: T }, (_, t) => t), ids.slice(1));
    return logp.map((x) => -x);
  } finally {
    idT.dispose();
  }
}
