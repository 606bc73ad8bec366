/**
 * The training loop: block-only tuning and its baselines (full, last:K, LoRA) on the same data
 * pipeline and budget, with AdamW + warmup/cosine, gradient accumulation, global-norm
 * clipping, validation, and checkpoints that resume exactly.
 *
 * Output folder (--out), like a transformers Trainer's output_dir:
 *   checkpoint-000010/   the model (HF layout, float32) or, for LoRA, the adapter;
 *                        optimizer.safetensors (AdamW moments); trainer_state.json (step,
 *                        sampler position, options, data fingerprint)
 *   model/               the final model in the HF layout (LoRA: merged into the weights)
 *   adapter/             LoRA only: the adapter as a PEFT folder
 */
import type { ResidencyMode } from '../../shared/memory-plan.js';
import { createHash } from 'node:crypto';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tf, backendReport, initBackend, type BackendName } from './backend.js';
import { yieldToEventLoop } from './event-loop.js';
import { ensureGradients } from './autodiff.js';
import { openCheckpoint, type Checkpoint } from './checkpoint.js';
import { expectedShapes } from './config.js';
import { BatchSampler, gatherBatch, loadCorpus, type CorpusSpec, type PackedCorpus, type SamplerState } from './data.js';
import { BlocklabError } from './errors.js';
import { exportedConfig } from './export.js';
import type { LlamaModel } from './model.js';
import { activeBackend, loadPlanned, planCheckpoint, requireFit, trainTask } from './plan.js';
import { AdamW, globalNormClip, learningRate, type AdamWOptions } from './optimizer.js';
import { readSafetensorsHeader, readTensorFloat32, writeSafetensors, type TensorToWrite } from './safetensors.js';
import { HfTokenizer } from './tokenizer.js';
import { makeTrainable, methodName, type TrainableSet, type TrainMethod } from './trainable.js';
import { tensorFromSource, writeCheckpoint } from './write-checkpoint.js';
import { outputKindOf, prepareOutputFolder, writeFolderAtomically, writeOutputMarker } from './atomic.js';
import { backendMemoryBytes } from './weights.js';

export interface TrainOptions {
  model: string;
  data: CorpusSpec;
  out: string;
  method: TrainMethod;
  steps: number;
  lr: number;
  batch: number;
  seq: number;
  gradAccum: number;
  warmup: number;
  minLrRatio: number;
  seed: number;
  adamw: AdamWOptions;
  /** global gradient-norm limit; 0 = none */
  clip: number;
  /** checkpoint every N steps (0: only at the end) */
  saveEvery: number;
  /** validation loss every M steps (0: only at the end) */
  evalEvery: number;
  /** at most this many validation batches per evaluation */
  evalBatches: number;
  valFraction: number;
  /** checkpoints kept (the newest ones); 0 keeps all */
  keepCheckpoints: number;
  cacheDir: string;
  resume: boolean;
  backend?: BackendName | 'auto';
  /** stop after this step with a checkpoint, as if cancelled (pause) */
  stopAfter?: number;
}

export { TRAIN_DEFAULTS } from '../../shared/jobs.js';

export interface StepMetrics {
  step: number; // completed optimizer steps (1-based)
  totalSteps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSecond: number;
  elapsedSeconds: number;
  etaSeconds: number;
  /** the backend's memory after the step (weights.ts backendMemoryBytes) */
  backendBytes: number;
}

export interface TrainStart {
  method: string;
  startStep: number;
  totalSteps: number;
  trainableParams: number;
  totalParams: number;
  trainableLayers: number[];
  optimizerStateBytes: number;
  frozenOptimizerBytesSaved: number;
  corpus: { tokens: number; documents: number; trainSequences: number; valSequences: number; fingerprint: string; cachedFiles: number; files: number };
  backend: string;
  /** where the frozen weights live (the memory plan's choice) */
  residency: ResidencyMode;
  resumedFrom: string | null;
}

export interface TrainEvents {
  onLog?(message: string): void;
  onStart?(info: TrainStart): void;
  onStep?(m: StepMetrics): void;
  onEval?(step: number, valLoss: number): void;
  onCheckpoint?(step: number, dir: string): void;
}

export interface TrainResult {
  method: string;
  steps: number;
  startStep: number;
  firstLoss: number | null;
  lastLoss: number | null;
  valLoss: number | null;
  tokensPerSecond: number;
  trainableParams: number;
  totalParams: number;
  peakMemoryBytes: number;
  peakTensorBytes: number;
  optimizerStateBytes: number;
  out: string;
  model: string | null;
  adapter: string | null;
  lastCheckpoint: string | null;
  stopped: 'completed' | 'cancelled' | 'paused';
  backend: string;
  /** resident: every weight float32 on the backend; streamed: frozen blocks stored and widened a block at a time */
  residency: ResidencyMode;
  seconds: number;
}

interface TrainerState {
  format: 'blocklab-trainer-state';
  version: 1;
  step: number;
  total_steps: number;
  sampler: SamplerState;
  method: string;
  base_model: string;
  data_fingerprint: string;
  options: Record<string, unknown>;
  last_loss: number | null;
  first_loss: number | null;
  /** training-loop seconds up to this checkpoint, over every session of the run (absent before 0.1 stores) */
  elapsed_seconds?: number;
}

const STATE_FILE = 'trainer_state.json';
const OPTIMIZER_FILE = 'optimizer.safetensors';

/** Options that must match for --resume to continue the same run exactly. */
function resumeKey(o: TrainOptions): Record<string, unknown> {
  return {
    method: methodName(o.method),
    lora: o.method.kind === 'lora' ? { rank: o.method.rank, alpha: o.method.alpha, targets: o.method.targets } : undefined,
    trainable_layers: o.method.kind === 'blocks' ? o.method.layers ?? null : undefined,
    steps: o.steps,
    lr: o.lr,
    batch: o.batch,
    seq: o.seq,
    grad_accum: o.gradAccum,
    warmup: o.warmup,
    min_lr_ratio: o.minLrRatio,
    seed: o.seed,
    adamw: o.adamw,
    clip: o.clip,
    val_fraction: o.valFraction,
  };
}

function checkpointName(step: number): string {
  return `checkpoint-${String(step).padStart(6, '0')}`;
}

/** The newest checkpoint folder in `out` that has a trainer state, or null. */
export async function latestCheckpoint(out: string): Promise<string | null> {
  let names: string[];
  try {
    names = await readdir(out);
  } catch {
    return null;
  }
  const steps = names
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ name: m[0], step: Number(m[1]) }))
    .sort((a, b) => b.step - a.step);
  for (const s of steps) {
    try {
      await stat(join(out, s.name, STATE_FILE));
      return join(out, s.name);
    } catch {
      // incomplete: skipped
    }
  }
  return null;
}

async function fingerprintTokenizer(dir: string): Promise<string> {
  const h = createHash('sha256');
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
    try {
      h.update(f).update(await readFile(join(dir, f)));
    } catch {
      // absent files are part of the fingerprint by their absence
    }
  }
  return h.digest('hex');
}

function validate(o: TrainOptions): void {
  const ints: [string, number, number][] = [
    ['--steps', o.steps, 1],
    ['--batch', o.batch, 1],
    ['--seq', o.seq, 2],
    ['--grad-accum', o.gradAccum, 1],
    ['--warmup', o.warmup, 0],
    ['--save-every', o.saveEvery, 0],
    ['--eval-every', o.evalEvery, 0],
    ['--eval-batches', o.evalBatches, 1],
    ['--seed', o.seed, Number.MIN_SAFE_INTEGER],
  ];
  for (const [name, v, min] of ints) {
    if (!Number.isInteger(v) || v < min) throw new BlocklabError(`${name} must be a whole number ≥ ${min} (got ${v})`);
  }
  if (!(o.lr > 0) || !Number.isFinite(o.lr)) throw new BlocklabError(`--lr must be a positive number (got ${o.lr})`);
  if (!(o.valFraction >= 0 && o.valFraction < 1)) throw new BlocklabError(`--val-fraction must be in [0, 1) (got ${o.valFraction})`);
  if (!(o.clip >= 0)) throw new BlocklabError(`--clip must be ≥ 0 (got ${o.clip})`);
  if (!(o.adamw.weightDecay >= 0)) throw new BlocklabError(`--weight-decay must be ≥ 0 (got ${o.adamw.weightDecay})`);
}

/** A variable's value as the checkpoint stores it ([out, in] for linears), float32 bytes. */
async function variableBytes(v: tf.Tensor, transposed: boolean): Promise<Uint8Array> {
  const t = transposed ? tf.transpose(v) : v;
  const data = (await t.data()) as Float32Array;
  if (transposed) t.dispose();
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** The model's tensors for a checkpoint: trained ones from their variables, the rest copied (as float32). */
function modelTensors(ckpt: Checkpoint, model: LlamaModel, set: TrainableSet): TensorToWrite[] {
  const byName = new Map(set.params.filter((p) => !p.name.startsWith('base_model.')).map((p) => [p.name, p]));
  const lora = new Map(set.lora.map((l) => [`model.layers.${l.layer}.${{ q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj', o: 'self_attn.o_proj', gate: 'mlp.gate_proj', up: 'mlp.up_proj', down: 'mlp.down_proj' }[l.proj]}.weight`, l]));
  const out: TensorToWrite[] = [];
  for (const [name, shape] of expectedShapes(ckpt.config)) {
    const p = byName.get(name);
    const adapter = lora.get(name);
    if (p) {
      out.push({ name, dtype: 'F32', shape, data: () => variableBytes(p.variable, p.transposed) });
    } else if (adapter) {
      out.push({
        name,
        dtype: 'F32',
        shape,
        data: async () => {
          // W' = W + s·(A·B)ᵀ in the HF layout [out, in]; the base block is leased from the store
          const lease = model.store.block(adapter.layer);
          try {
            const base = lease.weights[adapter.proj];
            const merged = tf.tidy(() => {
              const delta = tf.mul(tf.matMul(adapter.a, adapter.b), set.loraScale); // [in, out]
              return lease.layout === 'io' ? tf.transpose(tf.add(base, delta)) : tf.add(base, tf.transpose(delta));
            });
            const bytes = await variableBytes(merged, false);
            merged.dispose();
            return bytes;
          } finally {
            lease.release();
          }
        },
      });
    } else {
      out.push(tensorFromSource(name, ckpt.tensors.get(name)!, 'F32'));
    }
  }
  return out;
}

function adapterTensors(set: TrainableSet): TensorToWrite[] {
  return set.params.map((p) => ({ name: p.name, dtype: 'F32', shape: p.transposed ? [...p.variable.shape].reverse() : [...p.variable.shape], data: () => variableBytes(p.variable, p.transposed) }));
}

function adapterConfig(o: TrainOptions, base: string): Record<string, unknown> {
  if (o.method.kind !== 'lora') throw new Error('not a LoRA run');
  const names: Record<string, string> = { q: 'q_proj', k: 'k_proj', v: 'v_proj', o: 'o_proj', gate: 'gate_proj', up: 'up_proj', down: 'down_proj' };
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: base,
    r: o.method.rank,
    lora_alpha: o.method.alpha,
    lora_dropout: 0.0,
    target_modules: o.method.targets.map((t) => names[t]),
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: null,
  };
}

async function writeAdapterFolder(dir: string, tensors: TensorToWrite[], config: Record<string, unknown>): Promise<void> {
  await writeSafetensors(join(dir, 'adapter_model.safetensors'), tensors);
  await writeFile(join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2) + '\n');
}

/** Runs (or resumes) a training run. Cancelling via `signal` stops after the current step with a checkpoint. */
export async function train(opts: TrainOptions, events: TrainEvents = {}, signal?: AbortSignal): Promise<TrainResult> {
  validate(opts);
  const started = performance.now();
  const log = (m: string) => events.onLog?.(m);
  await initBackend(opts.backend);
  ensureGradients();
  const backend = backendReport()?.active ?? tf.getBackend();

  // --- where to start from
  let resumeDir: string | null = null;
  let state: TrainerState | null = null;
  if (opts.resume) {
    resumeDir = await latestCheckpoint(opts.out);
    if (!resumeDir) throw new BlocklabError(`has no checkpoint to resume from; run without --resume to start`, { file: opts.out });
    state = await readTrainerState(resumeDir);
    const want = JSON.stringify(resumeKey(opts));
    const have = JSON.stringify(state.options);
    if (want !== have) {
      const a = resumeKey(opts);
      const b = state.options;
      const diff = Object.keys(a).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
      throw new BlocklabError(
        `was trained with different settings (${diff.map((k) => `${k}: ${JSON.stringify(b[k])} then, ${JSON.stringify(a[k])} now`).join('; ')}); resume with the same options, or train into a new --out`,
        { file: resumeDir },
      );
    }
    log(`resuming from ${resumeDir} (step ${state.step})`);
  } else if (await latestCheckpoint(opts.out)) {
    throw new BlocklabError('already holds checkpoints of a run; pass --resume to continue it, or choose another --out', { file: opts.out });
  }
  // a new or empty folder, or this run's own (a run folder written before markers existed is adopted on resume)
  if (resumeDir && (await outputKindOf(opts.out)) === null) await writeOutputMarker(opts.out, 'run');
  await prepareOutputFolder(opts.out, 'run');

  // --- model: the base for a fresh run or a LoRA run; the checkpoint's full model otherwise
  const isLora = opts.method.kind === 'lora';
  const modelDir = resumeDir && !isLora ? resumeDir : opts.model;
  const ckpt = await openCheckpoint(modelDir);
  // refuse an impossible method, or one that does not fit in memory, before the slow work
  const plan = requireFit(planCheckpoint(ckpt, trainTask(ckpt, opts.method, opts.batch, opts.seq), activeBackend()), modelDir);
  const tokenizer = await HfTokenizer.fromFolder(opts.model);
  const eos = tokenizer.eosTokenIds[0] ?? ckpt.config.eosTokenIds[0];
  if (eos === undefined) throw new BlocklabError('has no EOS token in its tokenizer or config; it is needed to separate documents', { file: opts.model });

  log('reading and tokenizing the corpus');
  const corpus: PackedCorpus = await loadCorpus(opts.data, tokenizer, {
    seqLen: opts.seq,
    valFraction: opts.valFraction,
    seed: opts.seed,
    cacheDir: opts.cacheDir,
    tokenizerFingerprint: await fingerprintTokenizer(opts.model),
    eosId: eos,
    bosId: tokenizer.bosTokenId,
  });
  if (state && state.data_fingerprint !== corpus.fingerprint) {
    throw new BlocklabError('the corpus changed since this run started (its files or tokenizer differ); resume with the same data, or train into a new --out', { file: resumeDir! });
  }
  if (corpus.numTrain < 1) throw new BlocklabError('the corpus gives no training sequences; add data or lower --seq');

  const model = await loadPlanned(ckpt, plan, 'train');
  const set = makeTrainable(model, ckpt, opts.method, opts.seed);
  const optimizer = new AdamW(set.params, opts.adamw);
  let sampler = new BatchSampler(corpus.numTrain, opts.batch, opts.seed);
  let startStep = 0;
  let firstLoss: number | null = null;
  /** the loop time of the sessions before this one: elapsed time continues across a resume */
  let elapsedBefore = 0;
  if (state && resumeDir) {
    startStep = state.step;
    firstLoss = state.first_loss;
    elapsedBefore = typeof state.elapsed_seconds === 'number' && Number.isFinite(state.elapsed_seconds) ? state.elapsed_seconds : 0;
    sampler = BatchSampler.restore(corpus.numTrain, opts.batch, opts.seed, state.sampler);
    await loadOptimizer(join(resumeDir, OPTIMIZER_FILE), optimizer, set);
    if (isLora) await loadAdapter(join(resumeDir, 'adapter_model.safetensors'), set);
  }

  const start: TrainStart = {
    method: methodName(opts.method),
    startStep,
    totalSteps: opts.steps,
    trainableParams: set.trainableCount,
    totalParams: set.totalCount,
    trainableLayers: set.layers,
    optimizerStateBytes: optimizer.stateBytes(),
    frozenOptimizerBytesSaved: 2 * 4 * (set.totalCount - (isLora ? 0 : set.trainableCount)),
    corpus: {
      tokens: corpus.tokens,
      documents: corpus.documents,
      trainSequences: corpus.numTrain,
      valSequences: corpus.numVal,
      fingerprint: corpus.fingerprint,
      cachedFiles: corpus.files.filter((f) => f.cached).length,
      files: corpus.files.length,
    },
    backend,
    residency: plan.residency.mode,
    resumedFrom: resumeDir,
  };
  events.onStart?.(start);

  const schedule = { lr: opts.lr, warmup: opts.warmup, totalSteps: opts.steps, minLrRatio: opts.minLrRatio };
  const tokensPerStep = opts.batch * opts.seq * opts.gradAccum;
  let lastLoss: number | null = null;
  let valLoss: number | null = null;
  let lastCheckpoint: string | null = resumeDir;
  let peakMemory = process.memoryUsage().rss;
  let peakTensorBytes = tf.memory().numBytes;
  let timedTokens = 0;
  let timedSeconds = 0;
  let stopped: TrainResult['stopped'] = 'completed';
  const loopStart = performance.now();

  const evaluate = async (): Promise<number | null> => {
    if (corpus.numVal === 0) return null;
    const B = opts.batch;
    const batches = Math.min(opts.evalBatches, Math.ceil(corpus.numVal / B));
    let total = 0;
    let count = 0;
    for (let b = 0; b < batches; b++) {
      const idx = Array.from({ length: Math.min(B, corpus.numVal - b * B) }, (_, k) => b * B + k);
      const ids = gatherBatch(corpus, 'val', idx);
      const loss = tf.tidy(() => set.loss(tf.tensor2d(ids, [idx.length, opts.seq], 'int32')));
      total += (await loss.data())[0] * idx.length;
      count += idx.length;
      loss.dispose();
    }
    return total / count;
  };

  const saveCheckpoint = async (step: number): Promise<string> => {
    const dir = join(opts.out, checkpointName(step));
    const trainerState: TrainerState = {
      format: 'blocklab-trainer-state',
      version: 1,
      step,
      total_steps: opts.steps,
      sampler: sampler.state(),
      method: methodName(opts.method),
      base_model: opts.model,
      data_fingerprint: corpus.fingerprint,
      options: resumeKey(opts),
      last_loss: lastLoss,
      first_loss: firstLoss,
      elapsed_seconds: elapsedBefore + (performance.now() - loopStart) / 1000,
    };
    const extras = async (tmp: string) => {
      await writeSafetensors(join(tmp, OPTIMIZER_FILE), optimizerTensors(optimizer, set), { step: String(optimizer.step) });
      await writeFile(join(tmp, STATE_FILE), JSON.stringify(trainerState, null, 2) + '\n');
    };
    if (isLora) {
      await writeFolderAtomically(dir, true, async (tmp) => {
        await writeAdapterFolder(tmp, adapterTensors(set), adapterConfig(opts, opts.model));
        await extras(tmp);
      });
    } else {
      await writeCheckpoint({
        out: dir,
        overwrite: true,
        config: exportedConfig(ckpt, 'F32'),
        tensors: modelTensors(ckpt, model, set),
        tokenizerFrom: opts.model,
        metadata: ckpt.expansion ? { blocklab_expansion: JSON.stringify(ckpt.expansion) } : undefined,
        verify: extras,
      });
    }
    events.onCheckpoint?.(step, dir);
    // the checkpoint this run resumed from is still where frozen weights are read from
    await pruneCheckpoints(opts.out, opts.keepCheckpoints, resumeDir);
    return dir;
  };

  const variables = set.params.map((p) => p.variable);
  try {
    for (let step = startStep; step < opts.steps; step++) {
      await yieldToEventLoop(); // so a cancel (IPC, a signal) is delivered between steps
      if (signal?.aborted) {
        stopped = 'cancelled';
        break;
      }
      const t0 = performance.now();
      const lr = learningRate(step, schedule);
      // accumulate gradients over micro-batches (mean)
      let lossSum = 0;
      let accumulated: tf.Tensor[] | null = null;
      for (let a = 0; a < opts.gradAccum; a++) {
        const ids = gatherBatch(corpus, 'train', sampler.next());
        const { value, grads } = tf.variableGrads(() => set.loss(tf.tensor2d(ids, [opts.batch, opts.seq], 'int32')), variables);
        lossSum += (await value.data())[0];
        value.dispose();
        const list = set.params.map((p) => grads[p.variable.name]);
        if (!accumulated) accumulated = list;
        else {
          const prev: tf.Tensor[] = accumulated;
          accumulated = prev.map((g, k) => tf.add(g, list[k]));
          for (const t of [...prev, ...list]) t.dispose();
        }
      }
      const meanGrads = opts.gradAccum === 1 ? accumulated! : accumulated!.map((g) => tf.div(g, opts.gradAccum));
      if (opts.gradAccum !== 1) for (const g of accumulated!) g.dispose();
      const { norm, scale } = globalNormClip(meanGrads, opts.clip);
      const gradNorm = (await norm.data())[0];
      optimizer.apply(meanGrads, lr, scale);
      for (const t of [...meanGrads, norm, scale]) t?.dispose();

      const loss = lossSum / opts.gradAccum;
      if (!Number.isFinite(loss)) {
        throw new BlocklabError(`the training loss became ${loss} at step ${step + 1}; lower --lr (now ${opts.lr}) or raise --warmup`);
      }
      if (firstLoss === null) firstLoss = loss;
      lastLoss = loss;
      const seconds = (performance.now() - t0) / 1000;
      if (step > startStep || opts.steps - startStep === 1) {
        timedTokens += tokensPerStep;
        timedSeconds += seconds;
      }
      peakMemory = Math.max(peakMemory, process.memoryUsage().rss);
      peakTensorBytes = Math.max(peakTensorBytes, tf.memory().numBytes);
      const done = step + 1;
      const rate = timedSeconds > 0 ? timedTokens / timedSeconds : tokensPerStep / seconds;
      events.onStep?.({
        step: done,
        totalSteps: opts.steps,
        loss,
        lr,
        gradNorm,
        tokensPerSecond: tokensPerStep / seconds,
        elapsedSeconds: elapsedBefore + (performance.now() - loopStart) / 1000,
        etaSeconds: ((opts.steps - done) * tokensPerStep) / rate,
        backendBytes: backendMemoryBytes(),
      });
      if (opts.evalEvery > 0 && done % opts.evalEvery === 0 && done < opts.steps) {
        valLoss = await evaluate();
        if (valLoss !== null) events.onEval?.(done, valLoss);
      }
      if (opts.saveEvery > 0 && done % opts.saveEvery === 0 && done < opts.steps) lastCheckpoint = await saveCheckpoint(done);
      if (opts.stopAfter !== undefined && done >= opts.stopAfter && done < opts.steps) {
        stopped = 'paused';
        break;
      }
    }

    // the optimizer counts every update of the run (its count is restored on resume)
    const completedSteps = optimizer.step;
    valLoss = await evaluate();
    if (valLoss !== null) events.onEval?.(completedSteps, valLoss);
    if (completedSteps > startStep || !lastCheckpoint) lastCheckpoint = await saveCheckpoint(completedSteps);

    let modelDirOut: string | null = null;
    let adapterDirOut: string | null = null;
    if (stopped === 'completed') {
      modelDirOut = join(opts.out, 'model');
      await writeCheckpoint({
        out: modelDirOut,
        overwrite: true,
        config: exportedConfig(ckpt, 'F32'),
        tensors: modelTensors(ckpt, model, set),
        tokenizerFrom: opts.model,
        metadata: ckpt.expansion ? { blocklab_expansion: JSON.stringify(ckpt.expansion) } : undefined,
      });
      if (isLora) {
        adapterDirOut = join(opts.out, 'adapter');
        await writeFolderAtomically(adapterDirOut, true, (tmp) => writeAdapterFolder(tmp, adapterTensors(set), adapterConfig(opts, opts.model)));
      }
    }
    if (modelDirOut) await pruneCheckpoints(opts.out, opts.keepCheckpoints, null);
    return {
      method: methodName(opts.method),
      steps: completedSteps,
      startStep,
      firstLoss,
      lastLoss,
      valLoss,
      tokensPerSecond: timedSeconds > 0 ? timedTokens / timedSeconds : 0,
      trainableParams: set.trainableCount,
      totalParams: set.totalCount,
      peakMemoryBytes: peakMemory,
      peakTensorBytes,
      optimizerStateBytes: optimizer.stateBytes(),
      out: opts.out,
      model: modelDirOut,
      adapter: adapterDirOut,
      lastCheckpoint,
      stopped,
      backend,
      residency: plan.residency.mode,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    optimizer.dispose();
    set.dispose();
    model.dispose();
  }
}

function optimizerTensors(optimizer: AdamW, set: TrainableSet): TensorToWrite[] {
  const out: TensorToWrite[] = [];
  for (const p of set.params) {
    for (const [suffix, map] of [['exp_avg', optimizer.m], ['exp_avg_sq', optimizer.v]] as const) {
      const t = map.get(p.name)!;
      out.push({
        name: `${p.name}.${suffix}`,
        dtype: 'F32',
        shape: [...t.shape],
        data: async () => {
          const d = (await t.data()) as Float32Array;
          return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
        },
      });
    }
  }
  return out;
}

async function loadOptimizer(file: string, optimizer: AdamW, set: TrainableSet): Promise<void> {
  const header = await readSafetensorsHeader(file);
  const step = Number(header.metadata.step);
  if (!Number.isInteger(step) || step < 0) throw new BlocklabError('has no valid "step" in its metadata', { file });
  const m = new Map<string, tf.Tensor>();
  const v = new Map<string, tf.Tensor>();
  try {
    for (const p of set.params) {
      for (const [suffix, map] of [['exp_avg', m], ['exp_avg_sq', v]] as const) {
        const info = header.tensors.get(`${p.name}.${suffix}`);
        if (!info) throw new BlocklabError(`has no ${p.name}.${suffix}; the checkpoint does not match this run`, { file });
        const t = tf.tensor(await readTensorFloat32(info), info.shape);
        // moments saved while this weight trained as [in, out] (before block weights trained in their own layout)
        const reversed = t.rank === 2 && t.shape[0] === p.variable.shape[1] && t.shape[1] === p.variable.shape[0] && t.shape[0] !== t.shape[1];
        map.set(p.name, reversed ? tf.tidy(() => tf.transpose(t)) : t);
        if (reversed) t.dispose();
      }
    }
    optimizer.load({ step, m, v });
  } finally {
    for (const t of [...m.values(), ...v.values()]) t.dispose();
  }
}

async function loadAdapter(file: string, set: TrainableSet): Promise<void> {
  const { tensors } = await readSafetensorsHeader(file);
  for (const p of set.params) {
    const info = tensors.get(p.name);
    if (!info) throw new BlocklabError(`has no ${p.name}; the checkpoint does not match this run`, { file });
    const t = tf.tensor(await readTensorFloat32(info), info.shape);
    p.variable.assign(p.transposed ? tf.transpose(t) : t);
    t.dispose();
  }
}

/** A checkpoint folder's trainer state, with an error naming the file when it is damaged. */
async function readTrainerState(dir: string): Promise<TrainerState> {
  const file = join(dir, STATE_FILE);
  let state: TrainerState;
  try {
    state = JSON.parse(await readFile(file, 'utf8')) as TrainerState;
  } catch (e) {
    throw new BlocklabError(`cannot be read as JSON (${(e as Error).message.split('\n')[0]}); resume from an earlier checkpoint or start a new run`, { file });
  }
  if (state?.format !== 'blocklab-trainer-state') throw new BlocklabError('is not a Blocklab trainer state; resume only runs Blocklab trained', { file });
  return state;
}

/** Whether a checkpoint-N folder is one this trainer wrote (its marker, or a Blocklab trainer state from before markers). */
async function isOwnCheckpoint(dir: string): Promise<boolean> {
  if ((await outputKindOf(dir)) === 'checkpoint') return true;
  return readTrainerState(dir).then(
    () => true,
    () => false,
  );
}

/** Removes all but the newest `keep` checkpoints this trainer wrote, never `protect`, never a folder it did not write. */
async function pruneCheckpoints(out: string, keep: number, protect: string | null): Promise<void> {
  if (keep <= 0) return;
  const names: string[] = [];
  for (const n of (await readdir(out)).filter((n) => /^checkpoint-\d+$/.test(n)).sort()) if (await isOwnCheckpoint(join(out, n))) names.push(n);
  for (const n of names.slice(0, Math.max(0, names.length - keep))) {
    if (protect && join(out, n) === protect) continue;
    await rm(join(out, n), { recursive: true, force: true });
  }
}

