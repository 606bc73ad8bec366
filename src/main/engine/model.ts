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
 * Linear weights are kept transposed, [in, out], so every projection is a plain
 * `matMul(x, W)` (the wasm backend sends only non-transposed matmuls to XNNPACK).
 */
import { tf } from './backend.js';
import type { ModelConfig } from './config.js';
import { BlocklabError } from './errors.js';
import { readTensorFloat32, type TensorInfo } from './safetensors.js';
import { attention } from './attention.js';

type Tensor = tf.Tensor;

export interface BlockWeights {
  inputNorm: tf.Tensor1D; // [D]          input_layernorm.weight
  q: tf.Tensor2D; // [D, nh*hd]            self_attn.q_proj.weight ᵀ
  k: tf.Tensor2D; // [D, nkv*hd]           self_attn.k_proj.weight ᵀ
  v: tf.Tensor2D; // [D, nkv*hd]           self_attn.v_proj.weight ᵀ
  o: tf.Tensor2D; // [nh*hd, D]            self_attn.o_proj.weight ᵀ
  qBias?: tf.Tensor1D; // [nh*hd]
  kBias?: tf.Tensor1D; // [nkv*hd]
  vBias?: tf.Tensor1D; // [nkv*hd]
  oBias?: tf.Tensor1D; // [D]
  postNorm: tf.Tensor1D; // [D]           post_attention_layernorm.weight
  gate: tf.Tensor2D; // [D, F]             mlp.gate_proj.weight ᵀ
  up: tf.Tensor2D; // [D, F]               mlp.up_proj.weight ᵀ
  down: tf.Tensor2D; // [F, D]             mlp.down_proj.weight ᵀ
  gateBias?: tf.Tensor1D; // [F]
  upBias?: tf.Tensor1D; // [F]
  downBias?: tf.Tensor1D; // [D]
}

export interface LlamaWeights {
  embed: tf.Tensor2D; // [V, D]  model.embed_tokens.weight
  blocks: BlockWeights[]; // L
  norm: tf.Tensor1D; // [D]      model.norm.weight
  lmHead: tf.Tensor2D; // [D, V]  lm_head.weight ᵀ (embed ᵀ when tied)
}

export type Projection = 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down';

/**
 * Replaceable pieces of the forward pass, for training: a linear layer with a fast backward
 * (and LoRA), an embedding lookup with a gradient, a head tied to a training embedding.
 * Without hooks, each is the plain op.
 */
export interface ForwardHooks {
  /** x @ w for projection `proj` of block `layer` (the bias is added by the caller) */
  linear?(x: Tensor, w: Tensor, layer: number, proj: Projection): Tensor;
  /** embed[ids], ids: [N] int32 → [N, D] */
  embed?(ids: Tensor): Tensor;
  /** final hidden states [N, D] → logits [N, V] */
  head?(x: Tensor): Tensor;
}

/** Keys and values of the tokens seen so far, per layer, before the GQA grouping. */
export interface KVCache {
  k: tf.Tensor4D[]; // L × [B, nkv, S, hd]
  v: tf.Tensor4D[]; // L × [B, nkv, S, hd]
  length: number; // S
}

/** HF name → where it goes in BlockWeights, and whether it is a (transposed) linear weight. */
const BLOCK_KEYS: [string, keyof BlockWeights, boolean][] = [
  ['input_layernorm.weight', 'inputNorm', false],
  ['self_attn.q_proj.weight', 'q', true],
  ['self_attn.k_proj.weight', 'k', true],
  ['self_attn.v_proj.weight', 'v', true],
  ['self_attn.o_proj.weight', 'o', true],
  ['self_attn.q_proj.bias', 'qBias', false],
  ['self_attn.k_proj.bias', 'kBias', false],
  ['self_attn.v_proj.bias', 'vBias', false],
  ['self_attn.o_proj.bias', 'oBias', false],
  ['post_attention_layernorm.weight', 'postNorm', false],
  ['mlp.gate_proj.weight', 'gate', true],
  ['mlp.up_proj.weight', 'up', true],
  ['mlp.down_proj.weight', 'down', true],
  ['mlp.gate_proj.bias', 'gateBias', false],
  ['mlp.up_proj.bias', 'upBias', false],
  ['mlp.down_proj.bias', 'downBias', false],
];

// ----------------------------------------------------------------------------
// Loading

/** Where a weight's float32 values come from: the checkpoint file, or (GGUF export) the values as a quantized file holds them. */
export type WeightReader = (info: TensorInfo) => Promise<Float32Array>;

async function loadTensor(info: TensorInfo, transpose: boolean, read: WeightReader): Promise<Tensor> {
  const values = await read(info);
  const t = tf.tensor(values, info.shape, 'float32');
  if (!transpose) return t;
  const tt = tf.transpose(t); // [out, in] → [in, out]
  t.dispose();
  return tt;
}

/**
 * Reads every weight into float32 tensors. The caller (openCheckpoint) has already checked
 * that every tensor exists with the shape the config implies.
 */
export async function loadWeights(config: ModelConfig, tensors: Map<string, TensorInfo>, read: WeightReader = readTensorFloat32): Promise<LlamaWeights> {
  const created: Tensor[] = [];
  const get = async (name: string, transpose: boolean): Promise<Tensor> => {
    const info = tensors.get(name);
    if (!info) throw new BlocklabError(`tensor ${name} is missing from the checkpoint`);
    const t = await loadTensor(info, transpose, read);
    created.push(t);
    return t;
  };
  try {
    const embed = (await get('model.embed_tokens.weight', false)) as tf.Tensor2D;
    const blocks: BlockWeights[] = [];
    for (let i = 0; i < config.numLayers; i++) {
      const block: Partial<BlockWeights> = {};
      for (const [suffix, key, isLinear] of BLOCK_KEYS) {
        const name = `model.layers.${i}.${suffix}`;
        if (!tensors.has(name)) continue;
        (block as Record<string, Tensor>)[key] = await get(name, isLinear);
      }
      blocks.push(block as BlockWeights);
    }
    const norm = (await get('model.norm.weight', false)) as tf.Tensor1D;
    let lmHead: tf.Tensor2D;
    if (config.tieWordEmbeddings) {
      lmHead = tf.transpose(embed) as tf.Tensor2D;
      created.push(lmHead);
    } else {
      lmHead = (await get('lm_head.weight', true)) as tf.Tensor2D;
    }
    return { embed, blocks, norm, lmHead };
  } catch (e) {
    for (const t of created) t.dispose();
    throw e;
  }
}

export function disposeWeights(w: LlamaWeights): void {
  const seen = new Set<Tensor>();
  const all: Tensor[] = [w.embed, w.norm, w.lmHead];
  for (const b of w.blocks) for (const t of Object.values(b)) if (t) all.push(t as Tensor);
  for (const t of all) {
    if (seen.has(t)) continue;
    seen.add(t);
    t.dispose();
  }
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
  readonly weights: LlamaWeights;
  /** set by training; inference leaves it empty */
  hooks: ForwardHooks = {};
  private readonly invFreq: Float32Array;

  constructor(config: ModelConfig, weights: LlamaWeights) {
    this.config = config;
    this.weights = weights;
    this.invFreq = ropeInverseFrequencies(config);
  }

  static async fromTensors(config: ModelConfig, tensors: Map<string, TensorInfo>, read?: WeightReader): Promise<LlamaModel> {
    return new LlamaModel(config, await loadWeights(config, tensors, read));
  }

  dispose(): void {
    disposeWeights(this.weights);
  }

  /**
   * One decoder block. x: [B, T, D] → [B, T, D]. `past` holds this layer's cached keys and
   * values; the returned k, v include the new tokens.
   */
  private block(
    i: number,
    x: Tensor,
    cos: Tensor,
    sin: Tensor,
    mask: Tensor,
    pastK: Tensor | null,
    pastV: Tensor | null,
  ): { y: Tensor; k: Tensor; v: Tensor } {
    const c = this.config;
    const w = this.weights.blocks[i];
    const [B, T, D] = x.shape as [number, number, number];
    const { numHeads: nh, numKvHeads: nkv, headDim: hd } = c;
    const g = nh / nkv;
    /** x @ W (+ b), x: [N, in], W: [in, out] */
    const linear = (x: Tensor, w: Tensor, b: Tensor | undefined, proj: Projection): Tensor => {
      const y = this.hooks.linear ? this.hooks.linear(x, w, i, proj) : tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D);
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
   * int32 → logits [B, T, V] (or [B, 1, V] with lastOnly) and every layer's keys and values.
   */
  run(idT: tf.Tensor2D, cache: KVCache | null, lastOnly: boolean): { logits: tf.Tensor3D; ks: tf.Tensor4D[]; vs: tf.Tensor4D[] } {
    const c = this.config;
    const [B, T] = idT.shape;
    const D = c.hiddenSize;
    const past = cache?.length ?? 0;
    const flatIds = tf.reshape(idT, [B * T]);
    const embedded = this.hooks.embed ? this.hooks.embed(flatIds) : tf.gather(this.weights.embed, flatIds);
    let x: Tensor = tf.reshape(embedded, [B, T, D]);
    const { cos, sin } = ropeTables(this.invFreq, past, T);
    const S = past + T;
    const fullMask = attentionMask(T, S, null);
    const windowMask = c.slidingWindow !== null ? attentionMask(T, S, c.slidingWindow) : fullMask;
    const ks: tf.Tensor4D[] = [];
    const vs: tf.Tensor4D[] = [];
    for (let i = 0; i < c.numLayers; i++) {
      const mask = c.slidingWindow !== null && i >= c.slidingWindowFromLayer ? windowMask : fullMask;
      const out = this.block(i, x, cos, sin, mask, cache?.k[i] ?? null, cache?.v[i] ?? null);
      x = out.y;
      ks.push(out.k as tf.Tensor4D);
      vs.push(out.v as tf.Tensor4D);
    }
    if (lastOnly) x = tf.slice(x, [0, T - 1, 0], [B, 1, D]);
    const Tout = lastOnly ? 1 : T;
    const normed = tf.reshape(rmsNorm(x, this.weights.norm, c.rmsNormEps), [B * Tout, D]);
    const logits = this.hooks.head ? this.hooks.head(normed) : tf.matMul(normed as tf.Tensor2D, this.weights.lmHead);
    return { logits: tf.reshape(logits, [B, Tout, c.vocabSize]) as tf.Tensor3D, ks, vs };
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

/**
 * Per-token negative log-likelihood: nll[i] = −log p(ids[i+1] | ids[0..i]), from a forward
 * pass over all of ids (log-softmax in float32).
 */
export async function tokenNll(model: LlamaModel, ids: number[]): Promise<Float32Array> {
  if (ids.length < 2) throw new BlocklabError('scoring needs at least two tokens (a context and a next token)');
  const logits = model.forward([ids]);
  const nll = tf.tidy(() => {
    const T = ids.length - 1;
    const V = model.config.vocabSize;
    const lp = tf.logSoftmax(tf.reshape(tf.slice(logits, [0, 0, 0], [1, T, V]), [T, V])); // [T, V]
    // lp[t, ids[t+1]] through a flat gather (the wasm backend's gather with batchDims is broken)
    const flat = Int32Array.from({ length: T }, (_, t) => t * V + ids[t + 1]);
    const picked = tf.gather(tf.reshape(lp, [T * V]), tf.tensor1d(flat, 'int32')); // [T]
    return tf.neg(picked);
  });
  logits.dispose();
  const out = (await nll.data()) as Float32Array;
  nll.dispose();
  return out;
}
