/**
 * Training throughput of one method on one model, in a worker process of its own (so its RSS
 * high-water mark is its own). The step is the trainer's step (src/main/engine/trainer.ts),
 * built from the same engine calls: makeTrainable's loss under tf.variableGrads, the loss read
 * back, global-norm clipping at TRAIN_DEFAULTS.clip with the norm read back, AdamW.apply with
 * the warmup/cosine learning rate. Only the corpus pipeline is replaced by fixed random
 * batches (the same ones PyTorch gets).
 */
import type { ResidencyMode } from '../../shared/memory-plan.js';
import { readFile } from 'node:fs/promises';
import { tf, initBackend, openCheckpoint, type BackendName, type Checkpoint, type LlamaModel } from '../engine/index.js';
import { activeBackend, loadPlanned, planCheckpoint, requireFit, trainTask } from '../engine/plan.js';
import { ensureGradients } from '../engine/autodiff.js';
import { AdamW, DEFAULT_ADAMW, globalNormClip, learningRate } from '../engine/optimizer.js';
import { makeTrainable, parseMethod, type TrainableSet, type TrainMethod } from '../engine/trainable.js';
import { TRAIN_DEFAULTS } from '../engine/trainer.js';
import { profileStep } from './profile.js';
import { wasmHeapBytes } from '../engine/weights.js';
import type { StepProfile, TrainFigures } from './report.js';
import { peakRssBytes, summarize } from './timing.js';

export interface TrainTask {
  kind: 'train';
  model: string;
  method: 'blocks' | 'full';
  idsFile: string;
  warmup: number;
  steps: number;
  profile: boolean;
  backend?: BackendName | 'auto';
}

export interface IdsFile {
  batch: number;
  seq: number;
  vocab: number;
  batches: number[][];
}

export async function readIds(file: string): Promise<IdsFile> {
  return JSON.parse(await readFile(file, 'utf8')) as IdsFile;
}

/** One optimizer step exactly as the trainer runs it (gradient accumulation 1). */
export interface Stepper {
  model: LlamaModel;
  set: TrainableSet;
  optimizer: AdamW;
  /** where the frozen weights live (the memory plan's choice) */
  residency: ResidencyMode;
  vocab: number;
  seq: number;
  step(i: number): Promise<{ seconds: number; loss: number }>;
  /** the synchronous body of a step, for tf.profile */
  stepSync(i: number): void;
  batch(i: number): tf.Tensor2D;
  dispose(): void;
}

export async function makeStepper(task: Pick<TrainTask, 'model' | 'method' | 'idsFile' | 'warmup' | 'steps'>): Promise<Stepper> {
  const ids = await readIds(task.idsFile);
  const ckpt = await openCheckpoint(task.model);
  const method = parseMethod(task.method);
  // as the trainer does: the memory plan says where the frozen weights live (resident, or streamed)
  const plan = requireFit(planCheckpoint(ckpt, trainTask(ckpt, method, ids.batch, ids.seq), activeBackend()), task.model);
  const model = await loadPlanned(ckpt, plan, 'train');
  return stepperFor(model, ckpt, method, ids, task.warmup + task.steps, plan.residency.mode);
}

/**
 * The trainer's step on a model already on the backend (a loaded checkpoint, or one made in
 * memory by scripts/gpu-measure.ts): `totalSteps` sets the learning-rate schedule.
 */
export function stepperFor(model: LlamaModel, ckpt: Checkpoint, method: TrainMethod, ids: IdsFile, totalSteps: number, residency: ResidencyMode = 'resident'): Stepper {
  ensureGradients();
  const set = makeTrainable(model, ckpt, method, 0);
  const optimizer = new AdamW(set.params, DEFAULT_ADAMW);
  const variables = set.params.map((p) => p.variable);
  const schedule = { lr: TRAIN_DEFAULTS.lr, warmup: TRAIN_DEFAULTS.warmup, totalSteps, minLrRatio: TRAIN_DEFAULTS.minLrRatio };
  // a small trained tensor to read back after the update: a barrier on asynchronous backends
  const barrier = set.params.reduce((a, b) => (b.variable.size < a.variable.size ? b : a)).variable;
  const batch = (i: number) => tf.tensor2d(ids.batches[i % ids.batches.length], [ids.batch, ids.seq], 'int32');

  const grads = (i: number) => {
    const { value, grads } = tf.variableGrads(() => set.loss(batch(i)), variables);
    return { value, list: set.params.map((p) => grads[p.variable.name]) };
  };
  const update = (list: tf.Tensor[], i: number) => {
    const { norm, scale } = globalNormClip(list, TRAIN_DEFAULTS.clip);
    return { clipped: scale ? [scale] : [], norm, apply: () => optimizer.apply(list, learningRate(i, schedule), scale) };
  };

  return {
    model,
    set,
    optimizer,
    residency,
    vocab: ckpt.config.vocabSize,
    seq: ids.seq,
    batch,
    async step(i) {
      const t0 = performance.now();
      const { value, list } = grads(i);
      const loss = (await value.data())[0];
      value.dispose();
      const { clipped, norm, apply } = update(list, i);
      await norm.data();
      apply();
      for (const t of new Set([...list, ...clipped, norm])) t.dispose();
      await barrier.data();
      return { seconds: (performance.now() - t0) / 1000, loss };
    },
    stepSync(i) {
      const { value, list } = grads(i);
      value.dispose();
      const { clipped, norm, apply } = update(list, i);
      apply();
      for (const t of new Set([...list, ...clipped, norm])) t.dispose();
    },
    dispose() {
      optimizer.dispose();
      set.dispose();
      model.dispose();
    },
  };
}

export async function benchTraining(task: TrainTask): Promise<{ figures: TrainFigures; profile: StepProfile | null }> {
  await initBackend(task.backend);
  const ids = await readIds(task.idsFile);
  const s = await makeStepper(task);
  try {
    const losses: number[] = [];
    for (let i = 0; i < task.warmup; i++) losses.push((await s.step(i)).loss);
    const times: number[] = [];
    for (let i = task.warmup; i < task.warmup + task.steps; i++) {
      const r = await s.step(i);
      times.push(r.seconds);
      losses.push(r.loss);
    }
    // the tensor-memory peak inside a step (activations kept for the backward pass), from the profiler
    const stepIndex = task.warmup + task.steps;
    // (tf.profile returns the engine's one profile object, overwritten by the next profile: copy now)
    const peakTensorBytes = (await tf.profile(() => s.stepSync(stepIndex))).peakBytes;
    const profile = task.profile ? await profileStep(s, task.method, stepIndex + 1) : null;
    const step = summarize(times);
    const total = s.set.totalCount;
    const trainable = s.set.trainableCount;
    return {
      figures: {
        method: task.method,
        tokens_per_second: (ids.batch * ids.seq) / step.median,
        step_seconds: step,
        warmup_steps: task.warmup,
        trainable_params: trainable,
        total_params: total,
        frozen_params: total - trainable,
        optimizer_state_bytes: s.optimizer.stateBytes(),
        optimizer_bytes_saved_by_freezing: 2 * 4 * (total - trainable),
        peak_rss_bytes: peakRssBytes(),
        peak_tensor_bytes: peakTensorBytes,
        first_loss: losses[0],
        last_loss: losses[losses.length - 1],
        residency: s.residency,
        wasm_heap_bytes: wasmHeapBytes(),
      },
      profile,
    };
  } finally {
    s.dispose();
  }
}
