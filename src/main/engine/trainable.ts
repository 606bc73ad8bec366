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
import { fastLinear, frozenLinearOI, trainableEmbedding, trainableLinearOI } from './autodiff.js';
import type { Checkpoint } from './checkpoint.js';
import { BlocklabError } from './errors.js';
import { expectedShapes, parameterCount } from './config.js';
import { headCrossEntropy, type HeadSource } from './head-loss.js';
import type { ForwardHooks, LlamaModel, Projection } from './model.js';
import { BLOCK_TENSORS, type BlockWeights, type Layout } from './weights.js';
import { seededRandom } from './random.js';
import { blocklabTrainableLayers } from '../../shared/llamafactory.js';

type Tensor = tf.Tensor;

export const ALL_PROJECTIONS: Projection[] = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'];

/** From this hidden size on, trained block weights keep the checkpoint's [out, in] layout (see makeTrainable). */
export const WIDE_HIDDEN = 1024;

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
 * (fast-gradient linears, LoRA, trainable embedding). `seed` initialises LoRA's A.
 *
 * Trainable weights become resident float32 variables (the store pins them); frozen ones stay
 * where the memory plan put them — resident, or streamed one block at a time — get no
 * gradient and no optimiser state. The loss is the chunked LM head + cross-entropy of
 * head-loss.ts.
 */
export function makeTrainable(model: LlamaModel, ckpt: Checkpoint, method: TrainMethod, seed: number): TrainableSet {
  const store = model.store;
  const c = model.config;
  store.toTraining();
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

  // Trained block weights are float32 variables. A wide model's in the checkpoint's own layout
  // [out, in]: x @ Wᵀ as (W @ xᵀ)ᵀ keeps no packed copy of W in XNNPACK and is the faster route
  // for large matrices. A narrow model's as [in, out], whose plain x @ W costs fewer transposes.
  // The layout depends on the config alone, not on where the frozen weights live: the gradients'
  // global norm sums in layout order, so a resumed run must train in the same layout.
  const layout: Layout = c.hiddenSize >= WIDE_HIDDEN ? 'oi' : 'io';
  for (const i of layers) {
    const block = store.pinBlock(i, layout);
    const vars: Partial<Record<keyof BlockWeights, Tensor>> = {};
    for (const [key, suffix, isLinear] of BLOCK_TENSORS) {
      const t = block[key];
      if (t) vars[key] = toVariable(t, `model.layers.${i}.${suffix}`, isLinear && layout === 'io');
    }
    store.setBlock(i, vars as unknown as BlockWeights, layout);
  }
  const full = method.kind === 'full';
  let embedVar: tf.Variable | null = null;
  let headVar: tf.Variable | null = null;
  if (full) {
    embedVar = toVariable(store.pinEmbed(), 'model.embed_tokens.weight', false);
    store.setEmbed(embedVar as unknown as tf.Tensor2D);
    const norm = toVariable(store.norm, 'model.norm.weight', false);
    store.norm = norm as unknown as tf.Tensor1D;
    // the head is trained as [V, D], the checkpoint's own layout
    if (!c.tieWordEmbeddings) {
      headVar = toVariable(store.pinHead(), 'lm_head.weight', false);
      store.setHead(headVar as unknown as tf.Tensor2D);
    }
  }

  const lora: LoraAdapter[] = [];
  let loraScale = 0;
  if (method.kind === 'lora') {
    loraScale = method.alpha / method.rank;
    const random = seededRandom(seed);
    const shapes = expectedShapes(c);
    for (let i = 0; i < c.numLayers; i++) {
      for (const proj of method.targets) {
        const [outDim, inDim] = shapes.get(`model.layers.${i}.${PROJ_SUFFIX[proj]}.weight`)!;
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
    linear: (x, wt, layer, proj, layout) => {
      // frozen resident weights are [in, out]; trainable and streamed ones [out, in]
      const y = layout === 'io' ? fastLinear(x, wt, trainable.has(wt)) : trainable.has(wt) ? trainableLinearOI(x, wt) : frozenLinearOI(x, wt);
      const adapter = loraByKey.get(`${layer}.${proj}`);
      if (!adapter) return y;
      const delta = fastLinear(fastLinear(x, adapter.a, true), adapter.b, true);
      return tf.add(y, tf.mul(delta, loraScale));
    },
    blockParams: (layer) => lora.filter((l) => l.layer === layer).flatMap((l) => [l.a, l.b]),
  };
  if (embedVar) {
    const ev = embedVar;
    hooks.embed = (ids) => trainableEmbedding(ev, ids);
  }
  model.hooks = hooks;
  const head: HeadSource = {
    vocab: c.vocabSize,
    rows: (v0, v1) => store.headRows(v0, v1),
    release: (t) => store.releaseHeadRows(t),
    trainable: headVar ?? (c.tieWordEmbeddings ? embedVar : null),
    maxRows: store.maxHeadRows(),
  };

  const totalCount = parameterCount(c);
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
      const D = c.hiddenSize;
      const { hidden } = model.hidden(ids, null, false); // [B, T, D]
      // position t predicts token t + 1: the last position predicts nothing
      const x = tf.reshape(tf.slice(hidden, [0, 0, 0], [B, T - 1, D]), [B * (T - 1), D]) as tf.Tensor2D;
      const targets = tf.reshape(tf.slice(ids, [0, 1], [B, T - 1]), [B * (T - 1)]) as tf.Tensor1D;
      return headCrossEntropy(x, targets, head);
    },
    dispose() {
      model.hooks = {};
      for (const t of replaced) if (!t.isDisposed) t.dispose();
      for (const l of lora) for (const t of [l.a, l.b]) if (!t.isDisposed) t.dispose();
    },
  };
}
