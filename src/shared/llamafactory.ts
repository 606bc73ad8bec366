/**
 * LLaMA-Factory's view of which weights train, transcribed from its source so that an export can
 * check, before writing anything, that a cluster run trains exactly what the notebook would.
 *
 * From hiyouga/LLaMA-Factory `src/llamafactory/model/adapter.py` (`_setup_freeze_tuning`), with
 * L = the model's `num_hidden_layers` and n = `freeze_trainable_layers`:
 *   use_llama_pro: true   L % n must be 0, else ValueError; stride = L // n;
 *                         trainable_layer_ids = range(stride - 1, L + stride - 1, stride)
 *   n > 0                 range(max(0, L - n), L)        (the last n layers)
 *   n <= 0                range(min(-n, L))              (the first |n| layers)
 * then a parameter trains when any ".{idx}.{module}" (module "" for `all`) is a substring of its
 * name, or any `freeze_extra_modules` entry is. `use_llama_pro` never expands a model itself
 * (LLaMA-Factory issue #5401): the checkpoint must already be the expanded one.
 * `finetuning_type: full` trains every parameter; `lora` puts adapters on the `lora_target`
 * modules of every layer (`hparams/finetuning_args.py`: lora_alpha is an int, default 2 × rank).
 *
 * Pure logic: every process may import it.
 */

export interface FreezeSettings {
  /** num_hidden_layers of the model LLaMA-Factory loads */
  numLayers: number;
  freeze_trainable_layers: number;
  use_llama_pro: boolean;
}

/** The layer indices `_setup_freeze_tuning` makes trainable, or why it raises. */
export function llamaFactoryFreezeLayers(s: FreezeSettings): { layers: number[] } | { error: string } {
  const L = s.numLayers;
  const n = s.freeze_trainable_layers;
  if (!Number.isInteger(L) || L < 1) return { error: `the model has no layers (num_hidden_layers ${L})` };
  if (!Number.isInteger(n)) return { error: `freeze_trainable_layers must be an integer (got ${n})` };
  const range = (start: number, stop: number, step = 1) => {
    const out: number[] = [];
    for (let i = start; i < stop; i += step) out.push(i);
    return out;
  };
  if (s.use_llama_pro) {
    if (n === 0) return { error: 'use_llama_pro with freeze_trainable_layers 0 divides by zero in LLaMA-Factory' };
    // Python's % takes the divisor's sign; for n < 0, L % n == 0 exactly when L is divisible by |n|
    if (L % Math.abs(n) !== 0) return { error: `LLaMA-Factory refuses: num_layers ${L} is not divisible by freeze_trainable_layers ${n}` };
    const stride = Math.floor(L / n); // Python //
    if (stride <= 0) return { layers: [] }; // range() with a non-positive step of this shape is empty
    return { layers: range(stride - 1, L + stride - 1, stride) };
  }
  if (n > 0) return { layers: range(Math.max(0, L - n), L) };
  return { layers: range(0, Math.min(-n, L)) };
}

/** LLaMA-Factory's substring rule: the parameter names `_setup_freeze_tuning` leaves trainable. */
export function llamaFactoryFreezeParams(names: readonly string[], layers: readonly number[], modules: readonly string[] = ['all'], extraModules: readonly string[] = []): string[] {
  const patterns: string[] = [];
  for (const m of modules) for (const idx of layers) patterns.push(`.${idx}.${m === 'all' ? '' : m}`);
  patterns.push(...extraModules);
  return names.filter((name) => patterns.some((p) => name.includes(p)));
}

/** Blocklab's training methods, as src/shared/jobs.ts describes them. */
export type ExportMethod =
  | { kind: 'blocks'; layers?: number[] }
  | { kind: 'full' }
  | { kind: 'last'; k: number }
  | { kind: 'lora'; rank: number; alpha: number; targets: readonly ('q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down')[] };

/**
 * The layers Blocklab's trainer trains every weight of (engine/trainable.ts uses this): for blocks
 * the expansion record's new layers (or the layers named), for last:K the last K original blocks,
 * every layer for full, none for LoRA (adapters on all). `fileProblem` marks an error about the
 * checkpoint itself (it has no expansion record).
 */
export function blocklabTrainableLayers(
  method: ExportMethod,
  numLayers: number,
  expansion: { new_layers: number[]; original_index: (number | null)[] } | null,
): { layers: number[] } | { error: string; fileProblem?: true } {
  const L = numLayers;
  switch (method.kind) {
    case 'full':
      return { layers: Array.from({ length: L }, (_, i) => i) };
    case 'lora':
      return { layers: [] };
    case 'blocks': {
      const layers = method.layers ?? expansion?.new_layers;
      if (!layers || layers.length === 0) {
        return { error: 'has no expansion record, so there are no new blocks to train; expand it first (blocklab expand) or name the layers with --trainable-layers i,j', fileProblem: true };
      }
      for (const l of layers) {
        if (!Number.isInteger(l) || l < 0 || l >= L) return { error: `--trainable-layers: layer ${l} does not exist (the model has layers 0 to ${L - 1})` };
      }
      return { layers: [...new Set(layers)].sort((a, b) => a - b) };
    }
    case 'last': {
      const original = expansion ? expansion.original_index.flatMap((o, i) => (o === null ? [] : [i])) : Array.from({ length: L }, (_, i) => i);
      if (method.k > original.length) return { error: `last:${method.k} asks for more blocks than the ${original.length} original ones` };
      return { layers: original.slice(original.length - method.k) };
    }
  }
}

/** The `### method` fields of train.yaml. */
export type MethodFields =
  | { finetuning_type: 'freeze'; freeze_trainable_layers: number; freeze_trainable_modules: 'all'; use_llama_pro?: true }
  | { finetuning_type: 'full' }
  | { finetuning_type: 'lora'; lora_rank: number; lora_alpha: number; lora_dropout: 0; lora_target: string };

export interface MethodPlan {
  fields: MethodFields;
  /** the layers whose every weight trains (empty for lora: adapters on every layer) */
  trainableLayers: number[];
  /** how the layers were expressed, for people */
  expressedAs: string;
}

export type MethodPlanResult = { ok: true; plan: MethodPlan } | { ok: false; reason: string };

const PROJ_MODULE: Record<string, string> = { q: 'q_proj', k: 'k_proj', v: 'v_proj', o: 'o_proj', gate: 'gate_proj', up: 'up_proj', down: 'down_proj' };

const list = (xs: readonly number[]) => (xs.length ? xs.join(', ') : 'none');
const sameSet = (a: readonly number[], b: readonly number[]) => a.length === b.length && [...a].sort((x, y) => x - y).every((x, i) => x === [...b].sort((p, q) => p - q)[i]);

/**
 * The freeze settings that train exactly `wanted` (sorted, distinct layer indices of an
 * `numLayers`-layer model), trying use_llama_pro (an evenly interleaved set), then the last n,
 * then the first n — or why none can, naming what each would have trained.
 */
export function freezeFieldsFor(numLayers: number, wanted: readonly number[]): MethodPlanResult {
  const n = wanted.length;
  if (n === 0) return { ok: false, reason: 'no layers to train' };
  const tries: { fields: FreezeSettings; label: string }[] = [
    { fields: { numLayers, freeze_trainable_layers: n, use_llama_pro: true }, label: `use_llama_pro: true, freeze_trainable_layers: ${n}` },
    { fields: { numLayers, freeze_trainable_layers: n, use_llama_pro: false }, label: `freeze_trainable_layers: ${n} (the last ${n})` },
    { fields: { numLayers, freeze_trainable_layers: -n, use_llama_pro: false }, label: `freeze_trainable_layers: -${n} (the first ${n})` },
  ];
  const misses: string[] = [];
  for (const t of tries) {
    const r = llamaFactoryFreezeLayers(t.fields);
    if ('layers' in r && sameSet(r.layers, wanted)) {
      const f = t.fields;
      return {
        ok: true,
        plan: {
          fields: {
            finetuning_type: 'freeze',
            freeze_trainable_layers: f.freeze_trainable_layers,
            freeze_trainable_modules: 'all',
            ...(f.use_llama_pro ? { use_llama_pro: true as const } : {}),
          },
          trainableLayers: r.layers,
          expressedAs: t.label,
        },
      };
    }
    misses.push('layers' in r ? `${t.label} would train layers ${list(r.layers)}` : `${t.label}: ${r.error}`);
  }
  return {
    ok: false,
    reason:
      `LLaMA-Factory's freeze tuning cannot train exactly layers ${list(wanted)} of ${numLayers}: ` +
      `${misses.join('; ')}. It expresses only an evenly interleaved set (one new block after every ${numLayers % n === 0 ? numLayers / n - 1 : 'k'} original ones, ending with the top layer), ` +
      'the top n layers or the bottom n layers; expand with --placement interleave (L divisible by P), top or bottom, or train this layout with blocklab train',
  };
}

/**
 * How a Blocklab method maps onto LLaMA-Factory. `ours` is the set of layers Blocklab's own
 * trainer would train (engine/trainable.ts: the expansion record's new layers, or the last K
 * original blocks); for freeze tuning it must be expressible exactly.
 */
export function planLlamaFactoryMethod(method: ExportMethod, numLayers: number, ours: readonly number[]): MethodPlanResult {
  switch (method.kind) {
    case 'full':
      return { ok: true, plan: { fields: { finetuning_type: 'full' }, trainableLayers: Array.from({ length: numLayers }, (_, i) => i), expressedAs: 'finetuning_type: full' } };
    case 'lora': {
      if (!Number.isInteger(method.alpha)) {
        return { ok: false, reason: `LLaMA-Factory's lora_alpha is an integer, but --lora-alpha is ${method.alpha}; give a whole number` };
      }
      const target = method.targets.map((t) => PROJ_MODULE[t]).join(',');
      return {
        ok: true,
        plan: {
          fields: { finetuning_type: 'lora', lora_rank: method.rank, lora_alpha: method.alpha, lora_dropout: 0, lora_target: target },
          trainableLayers: [],
          expressedAs: `finetuning_type: lora, lora_target: ${target}`,
        },
      };
    }
    case 'blocks':
    case 'last': {
      const r = freezeFieldsFor(numLayers, ours);
      if (!r.ok && method.kind === 'last') return { ok: false, reason: r.reason.replace('expand with --placement interleave (L divisible by P), top or bottom, or train this layout with blocklab train', `last:${method.k} on this expanded model means the last ${method.k} original blocks, which are not the top ${method.k} layers; train it with blocklab train`) };
      return r;
    }
  }
}
