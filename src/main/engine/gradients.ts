/**
 * The trainer's loss and gradients for one batch, read out in the checkpoint's layout: what a
 * gradient check compares with finite differences (test/integration/gradients.test.ts), without
 * knowing how the engine holds its weights. It builds the model and the trainable set exactly
 * as `train` does (trainer.ts) and differentiates the same loss; whoever changes how training
 * builds its model changes this function with it, and the gradient checks keep working.
 */
import { tf } from './backend.js';
import { ensureGradients } from './autodiff.js';
import { openCheckpoint } from './checkpoint.js';
import { BlocklabError } from './errors.js';
import { LlamaModel } from './model.js';
import { makeTrainable, type TrainMethod } from './trainable.js';

export interface TrainingParameter {
  /** the HF tensor name (LoRA: PEFT's `base_model.model.….lora_A.weight`) */
  name: string;
  /** in the checkpoint's layout: [out, in] for linears, PEFT's [r, in] / [out, r] for LoRA A / B */
  shape: number[];
  value: Float32Array;
  grad: Float32Array;
}

export interface TrainingGradients {
  /** mean next-token cross-entropy of the batch (the training loss) */
  loss: number;
  /** every trainable parameter, and nothing else */
  params: Map<string, TrainingParameter>;
}

/**
 * Loss and gradients of `method`'s trainable parameters on `batch` (rows of equal length), for
 * the checkpoint in `dir`. `values` sets parameters (by name, checkpoint layout) before the
 * gradient is taken — e.g. LoRA's B, which starts at zero. `seed` initialises LoRA's A as
 * `train --seed` does.
 */
export async function trainingGradients(
  dir: string,
  method: TrainMethod,
  batch: number[][],
  opts: { seed?: number; values?: Map<string, ArrayLike<number>> } = {},
): Promise<TrainingGradients> {
  ensureGradients();
  const ckpt = await openCheckpoint(dir);
  const model = await LlamaModel.fromTensors(ckpt.config, ckpt.tensors);
  const set = makeTrainable(model, ckpt, method, opts.seed ?? 0);
  try {
    for (const [name, values] of opts.values ?? []) {
      const p = set.params.find((q) => q.name === name);
      if (!p) throw new BlocklabError(`${name} is not a trainable parameter of method ${method.kind}`);
      const shape = p.transposed ? [...p.variable.shape].reverse() : [...p.variable.shape];
      tf.tidy(() => {
        const t = tf.tensor(Float32Array.from(values), shape);
        p.variable.assign(p.transposed ? tf.transpose(t) : t);
      });
    }
    const ids = tf.tensor2d(batch.flat(), [batch.length, batch[0].length], 'int32');
    const { value, grads } = tf.variableGrads(() => set.loss(ids), set.params.map((p) => p.variable));
    ids.dispose();
    const params = new Map<string, TrainingParameter>();
    try {
      for (const p of set.params) {
        const g = grads[p.variable.name];
        if (!g) throw new BlocklabError(`no gradient reached ${p.name}`);
        const [gHf, vHf] = tf.tidy(() => (p.transposed ? [tf.transpose(g), tf.transpose(p.variable)] : [tf.clone(g), tf.clone(p.variable)]));
        params.set(p.name, { name: p.name, shape: [...gHf.shape], value: (await vHf.data()) as Float32Array, grad: (await gHf.data()) as Float32Array });
        gHf.dispose();
        vHf.dispose();
      }
      return { loss: (await value.data())[0], params };
    } finally {
      value.dispose();
      for (const g of Object.values(grads)) g.dispose();
    }
  } finally {
    set.dispose();
    model.dispose();
  }
}
