/**
 * Which weights train, for each method of the paper's ablation (Table 5), all on the same
 * model code:
 *
 *   blocks   only the blocks the expansion added (all their weights, norms included)
 *   full     every weight
 *   last:K   the last K original blocks (LLaMA-Factory's freeze tuning)
 *   lora     rank-r adapters on the chosen projections of every block; base frozen
 *
 * Trainable weights become tf.Variables; frozen ones stay plain tensors that nothing writes,
 * get no gradient and no optimiser state. Parameters are named by their HF tensor name
 * (LoRA: PEFT's `...q_proj.lora_A.weight` names).
 */
import { tf } from './backend.js';
import { crossEntropy, customGrad, fastLinear, trainableEmbedding } from './autodiff.js';
import type { Checkpoint } from './checkpoint.js';
import { BlocklabError } from './errors.js';
import type { BlockWeights, ForwardHooks, LlamaModel, Projection } from './model.js';
import { seededRandom } from './random.js';
import { blocklabTrainableLayers } from '../../shared/llamafactory.js';

type Tensor = tf.Tensor;

export const ALL_PROJECTIONS: Projection[] = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'];

export type TrainMethod =
  | { kind: 'blocks'; layers?: number[] }
  | { kind: 'full' }
  | { kind: 'last'; k: number }
  | { kind: 'lora'; rank: number; alpha: number; targets: Projection[] };

export function methodName(m: TrainMethod): string {
  if (m.kind === 'last') return `last:${m.k}`;
  return m.kind;
}

/** Parses `--method blocks|full|last:K|lora` with the LoRA options. */
export function parseMethod(text: string, opts: { loraRank?: number; loraAlpha?: number; loraTargets?: string; trainableLayers?: number[] } = {}): TrainMethod {
  const t = text.trim();
  if (t === 'blocks') return { kind: 'blocks', layers: opts.trainableLayers };
  if (t === 'full') return { kind: 'full' };
  const last = /^last:(\d+)$/.exec(t);
  if (last) {
    const k = Number(last[1]);
    if (k <= 0) throw new BlocklabError(`--method last:K needs K ≥ 1 (got ${k})`);
    return { kind: 'last', k };
  }
  if (t === 'lora') {
    const rank = opts.loraRank ?? 8;
    const alpha = opts.loraAlpha ?? 2 * rank;
    if (!Number.isInteger(rank) || rank <= 0) throw new BlocklabError(`--lora-rank must be a positive integer (got ${rank})`);
    if (!(alpha > 0)) throw new BlocklabError(`--lora-alpha must be positive (got ${alpha})`);
    const spec = (opts.loraTargets ?? 'q,v').trim();
    let targets: Projection[];
    if (spec === 'all') targets = [...ALL_PROJECTIONS];
    else {
      targets = spec.split(',').map((s) => s.trim().replace(/_proj$/, '') as Projection);
      for (const p of targets) {
        if (!ALL_PROJECTIONS.includes(p)) throw new BlocklabError(`--lora-targets: unknown projection "${p}"; use "all" or a list of ${ALL_PROJECTIONS.join(', ')}`);
      }
    }
    return { kind: 'lora', rank, alpha, targets };
  }
  throw new BlocklabError(`unknown --method "${text}"; use blocks, full, last:K (e.g. last:2) or lora`);
}

/** The block indices whose weights train (all blocks for full; none for lora). */
export function trainableLayers(method: TrainMethod, ckpt: Checkpoint): number[] {
  const r = blocklabTrainableLayers(method, ckpt.config.numLayers, ckpt.expansion);
  if ('error' in r) throw new BlocklabError(r.error, r.fileProblem ? { file: ckpt.dir } : {});
  return r.layers;
}

/** BlockWeights key → HF suffix and whether it is stored transposed ([in, out]). */
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

const PROJ_SUFFIX: Record<Projection, string> = {
  q: 'self_attn.q_proj',
  k: 'self_attn.k_proj',
  v: 'self_attn.v_proj',
  o: 'self_attn.o_proj',
  gate: 'mlp.gate_proj',
  up: 'mlp.up_proj',
  down: 'mlp.down_proj',
};

export interface LoraAdapter {
  layer: number;
  proj: Projection;
  a: tf.Variable; // [in, r]  (PEFT lora_A.weight ᵀ)
  b: tf.Variable; // [r, out] (PEFT lora_B.weight ᵀ)
}

/** One trainable parameter: its variable and how it maps to the HF checkpoint. */
export interface Param {
  name: string; // HF name (or PEFT name for LoRA)
  variable: tf.Variable;
  /** stored [in, out]; the checkpoint holds [out, in] */
  transposed: boolean;
  /** AdamW decays matrices only, not norms and biases */
  decay: boolean;
}

export interface TrainableSet {
  method: TrainMethod;
  layers: number[];
  params: Param[];
  lora: LoraAdapter[];
  loraScale: number;
  trainableCount: number;
  totalCount: number;
  /** mean cross-entropy of next-token prediction on ids [B, T] (records gradients when called under variableGrads) */
  loss(ids: tf.Tensor2D): tf.Scalar;
  dispose(): void;
}

/**
 * Turns the chosen weights of a loaded model into variables and installs the forward hooks
 * (fast-gradient linears, LoRA, trainable embedding/head). `seed` initialises LoRA's A.
 */
export function makeTrainable(model: LlamaModel, ckpt: Checkpoint, method: TrainMethod, seed: number): TrainableSet {
  const w = model.weights;
  const c = model.config;
  const layers = trainableLayers(method, ckpt);
  const params: Param[] = [];
  const trainable = new Set<Tensor>();
  const replaced: Tensor[] = [];

  const toVariable = (t: Tensor, name: string, transposed: boolean): tf.Variable => {
    const v = tf.variable(t, true, `${name}#${Math.random().toString(36).slice(2)}`);
    replaced.push(t);
    trainable.add(v);
    params.push({ name, variable: v, transposed, decay: t.rank === 2 });
    return v;
  };

  for (const i of layers) {
    const block = w.blocks[i];
    for (const [key, suffix, transposed] of BLOCK_TENSORS) {
      const t = block[key];
      if (!t) continue;
      (block as unknown as Record<string, Tensor>)[key] = toVariable(t, `model.layers.${i}.${suffix}`, transposed);
    }
  }
  const full = method.kind === 'full';
  if (full) {
    w.embed = toVariable(w.embed, 'model.embed_tokens.weight', false) as unknown as tf.Tensor2D;
    w.norm = toVariable(w.norm, 'model.norm.weight', false) as unknown as tf.Tensor1D;
    if (!c.tieWordEmbeddings) w.lmHead = toVariable(w.lmHead, 'lm_head.weight', true) as unknown as tf.Tensor2D;
  }

  const lora: LoraAdapter[] = [];
  let loraScale = 0;
  if (method.kind === 'lora') {
    loraScale = method.alpha / method.rank;
    const random = seededRandom(seed);
    for (let i = 0; i < c.numLayers; i++) {
      for (const proj of method.targets) {
        const base = w.blocks[i][proj];
        const [inDim, outDim] = base.shape;
        // PEFT: A ~ kaiming_uniform(a=√5) = U(−1/√in, 1/√in); B = 0, so the adapter starts at zero.
        const bound = 1 / Math.sqrt(inDim);
        const aInit = new Float32Array(inDim * method.rank);
        for (let j = 0; j < aInit.length; j++) aInit[j] = (2 * random() - 1) * bound;
        const a = tf.tidy(() => tf.variable(tf.tensor2d(aInit, [inDim, method.rank]), true));
        const b = tf.tidy(() => tf.variable(tf.zeros([method.rank, outDim]), true));
        const prefix = `base_model.model.model.layers.${i}.${PROJ_SUFFIX[proj]}`;
        params.push({ name: `${prefix}.lora_A.weight`, variable: a, transposed: true, decay: true });
        params.push({ name: `${prefix}.lora_B.weight`, variable: b, transposed: true, decay: true });
        trainable.add(a);
        trainable.add(b);
        lora.push({ layer: i, proj, a, b });
      }
    }
  }
  const loraByKey = new Map(lora.map((l) => [`${l.layer}.${l.proj}`, l]));

  const hooks: ForwardHooks = {
    linear: (x, wt, layer, proj) => {
      const y = fastLinear(x, wt, trainable.has(wt));
      const adapter = loraByKey.get(`${layer}.${proj}`);
      if (!adapter) return y;
      const delta = fastLinear(fastLinear(x, adapter.a, true), adapter.b, true);
      return tf.add(y, tf.mul(delta, loraScale));
    },
  };
  if (full) {
    hooks.embed = (ids) => trainableEmbedding(w.embed, ids);
    // tied: the head is embedᵀ; its gradient flows back through the transpose into embed
    hooks.head = c.tieWordEmbeddings ? (x) => fastLinear(x, tf.transpose(w.embed), true) : (x) => fastLinear(x, w.lmHead, true);
  } else if (c.tieWordEmbeddings) {
    // frozen tied head: dx = dy @ embed, no transpose needed
    hooks.head = (x) => headFrozenTied(x, w.lmHead, w.embed);
  } else {
    hooks.head = (x) => fastLinear(x, w.lmHead, false);
  }
  model.hooks = hooks;

  let totalCount = 0;
  for (const shape of [w.embed.shape, w.norm.shape, ...(c.tieWordEmbeddings ? [] : [w.lmHead.shape])]) totalCount += shape.reduce((a, b) => a * b, 1);
  for (const b of w.blocks) for (const t of Object.values(b)) if (t) totalCount += (t as Tensor).size;
  const trainableCount = params.reduce((n, p) => n + p.variable.size, 0);

  return {
    method,
    layers,
    params,
    lora,
    loraScale,
    trainableCount,
    totalCount,
    loss(ids) {
      const [B, T] = ids.shape;
      const { logits } = model.run(ids, null, false); // [B, T, V]
      const V = c.vocabSize;
      const pred = tf.reshape(tf.slice(logits, [0, 0, 0], [B, T - 1, V]), [B * (T - 1), V]);
      const targets = tf.reshape(tf.slice(ids, [0, 1], [B, T - 1]), [B * (T - 1)]);
      return crossEntropy(pred, targets) as tf.Scalar;
    },
    dispose() {
      model.hooks = {};
      for (const t of replaced) if (!t.isDisposed) t.dispose();
      for (const l of lora) for (const t of [l.a, l.b]) if (!t.isDisposed) t.dispose();
    },
  };
}

/** Frozen tied head: logits = x @ embedᵀ (precomputed as lmHead), dx = dy @ embed. */
function headFrozenTied(x: Tensor, lmHead: Tensor, embed: Tensor): Tensor {
  const f = customGrad<[Tensor]>((xIn) => ({
    value: tf.matMul(xIn as tf.Tensor2D, lmHead as tf.Tensor2D),
    gradFunc: (dy: Tensor) => [tf.matMul(dy as tf.Tensor2D, embed as tf.Tensor2D)],
  }));
  return f(x);
}
