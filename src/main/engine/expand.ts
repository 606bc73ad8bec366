/**
 * Applying a block-expansion plan (src/shared/expansion.ts) to a checkpoint: the expanded
 * folder is written tensor by tensor (copies are byte-exact, in the source dtype), then the
 * original and expanded models are run on a probe and must give the same logits before the
 * folder is moved into place.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { blockTensorNames, type ModelConfig } from './config.js';
import { openCheckpoint, type Checkpoint } from './checkpoint.js';
import { DTYPE_BYTES } from './dtype.js';
import { BlocklabError } from './errors.js';
import { exportedConfig } from './export.js';
import { activeBackend, loadPlanned, planCheckpoint, requireFit, type PlanTask } from './plan.js';
import { tf } from './backend.js';
import type { TensorToWrite } from './safetensors.js';
import { tensorFromSource, writeCheckpoint, zeroTensor } from './write-checkpoint.js';
import {
  ExpansionRequestError,
  expansionRecord,
  planExpansion,
  type ExpansionPlan,
  type ExpansionRecord,
  type ExpansionRequest,
} from '../../shared/expansion.js';

/** Tensors zeroed in a new block so that it adds nothing: the last projection of each branch. */
const ZEROED_SUFFIXES = ['self_attn.o_proj.weight', 'self_attn.o_proj.bias', 'mlp.down_proj.weight', 'mlp.down_proj.bias'];

export function isZeroedInNewBlock(suffix: string): boolean {
  return ZEROED_SUFFIXES.includes(suffix);
}

/**
 * The expanded model's tensors, in transformers' order, read lazily from the source. `zeroed`
 * says which tensors of a new block are written as zeros (by suffix); anything else is copied.
 */
export function expandedTensors(ckpt: Checkpoint, plan: ExpansionPlan, zeroed: (suffix: string) => boolean = isZeroedInNewBlock): TensorToWrite[] {
  const src = ckpt.tensors;
  const out: TensorToWrite[] = [tensorFromSource('model.embed_tokens.weight', src.get('model.embed_tokens.weight')!)];
  plan.layers.forEach((block, i) => {
    const from = block.kind === 'original' ? block.original : block.source;
    const srcPrefix = `model.layers.${from}.`;
    for (const srcName of blockTensorNames(ckpt.config, from)) {
      const suffix = srcName.slice(srcPrefix.length);
      const name = `model.layers.${i}.${suffix}`;
      const info = src.get(srcName)!;
      if (block.kind === 'new' && zeroed(suffix)) {
        out.push(zeroTensor(name, info.shape, info.dtype, DTYPE_BYTES[info.dtype]));
      } else {
        out.push(tensorFromSource(name, info));
      }
    }
  });
  out.push(tensorFromSource('model.norm.weight', src.get('model.norm.weight')!));
  if (!ckpt.config.tieWordEmbeddings) out.push(tensorFromSource('lm_head.weight', src.get('lm_head.weight')!));
  return out;
}

/** Deterministic probe ids when the checkpoint has no tokenizer: spread over the vocabulary. */
export function fallbackProbeIds(config: ModelConfig, length = 48): number[] {
  const n = Math.min(length, config.maxPositionEmbeddings);
  const ids: number[] = [];
  for (let i = 0; i < n; i++) ids.push((i * 2654435761) % config.vocabSize >>> 0);
  return ids;
}

/** Largest |a − b| and largest |a| over two logit tensors of the same shape. */
async function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): Promise<{ diff: number; scale: number }> {
  const [d, s] = tf.tidy(() => [tf.max(tf.abs(tf.sub(a, b))), tf.max(tf.abs(a))]);
  const diff = (await d.data())[0];
  const scale = (await s.data())[0];
  d.dispose();
  s.dispose();
  return { diff, scale };
}

/**
 * Runs both checkpoints on the probe and returns max |Δlogit|. Loads one model at a time so
 * that peak memory is one model plus the logits.
 */
export async function identityCheck(base: Checkpoint, expandedDir: string, probeIds: number[]): Promise<{ maxAbsLogitDiff: number; maxAbsLogit: number; tokens: number }> {
  // each model where its memory plan puts it: a large one streams (and computes the same bits)
  const task: PlanTask = { kind: 'infer', what: 'expand', batch: 1, tokens: probeIds.length, context: 0 };
  const baseModel = await loadPlanned(base, requireFit(planCheckpoint(base, task, activeBackend()), base.dir));
  let baseLogits: tf.Tensor3D;
  try {
    baseLogits = baseModel.forward([probeIds]);
  } finally {
    baseModel.dispose();
  }
  try {
    const expanded = await openCheckpoint(expandedDir);
    const expModel = await loadPlanned(expanded, requireFit(planCheckpoint(expanded, task, activeBackend()), base.dir));
    const expLogits = expModel.forward([probeIds]);
    expModel.dispose();
    const { diff, scale } = await maxAbsDiff(baseLogits, expLogits);
    expLogits.dispose();
    return { maxAbsLogitDiff: diff, maxAbsLogit: scale, tokens: probeIds.length };
  } finally {
    baseLogits.dispose();
  }
}

/** Identity must hold to float32 rounding: a new block adds exact zeros, so this is generous. */
export function identityTolerance(maxAbsLogit: number): number {
  return 1e-4 * Math.max(1, maxAbsLogit);
}

export interface ExpandResult {
  out: string;
  originalLayers: number;
  totalLayers: number;
  newLayers: number[];
  sources: number[];
  placement: ExpansionRecord['placement'];
  identity: { maxAbsLogitDiff: number; maxAbsLogit: number; tolerance: number; probeTokens: number };
  record: ExpansionRecord;
  bytes: number;
}

export function planFor(ckpt: Checkpoint, request: ExpansionRequest): ExpansionPlan {
  try {
    return planExpansion(ckpt.config.numLayers, request);
  } catch (e) {
    if (e instanceof ExpansionRequestError) throw new BlocklabError(e.message);
    throw e;
  }
}

/**
 * Expands `ckpt` into `out`. The request is validated before anything is written; the
 * identity check runs on the finished temporary folder, and a failure leaves `out` untouched.
 * `zeroInNewBlock` is a test seam: the tensors zeroed in new blocks (default: the output
 * projections, isZeroedInNewBlock); expand.test.ts leaves o_proj non-zero to show that the
 * identity check then refuses and writes nothing.
 */
export async function expandCheckpoint(
  ckpt: Checkpoint,
  request: ExpansionRequest,
  opts: { out: string; overwrite?: boolean; probeIds: number[]; zeroInNewBlock?: (suffix: string) => boolean },
): Promise<ExpandResult> {
  const plan = planFor(ckpt, request);
  const record = expansionRecord(plan, { base_model: ckpt.dir });
  let identity: ExpandResult['identity'] | null = null;
  const config = exportedConfig(ckpt, ckpt.dtype, { num_hidden_layers: plan.layers.length, blocklab_expansion: record });
  const written = await writeCheckpoint({
    out: opts.out,
    overwrite: opts.overwrite ?? false,
    config,
    tensors: expandedTensors(ckpt, plan, opts.zeroInNewBlock),
    tokenizerFrom: ckpt.dir,
    metadata: { blocklab_expansion: JSON.stringify(record) },
    verify: async (tmp) => {
      const r = await identityCheck(ckpt, tmp, opts.probeIds);
      const tolerance = identityTolerance(r.maxAbsLogit);
      identity = { maxAbsLogitDiff: r.maxAbsLogitDiff, maxAbsLogit: r.maxAbsLogit, tolerance, probeTokens: r.tokens };
      if (!(r.maxAbsLogitDiff <= tolerance)) {
        throw new BlocklabError(
          `identity check failed: the expanded model's logits differ from the base model's by up to ${r.maxAbsLogitDiff} ` +
            `(tolerance ${tolerance.toExponential(1)}); nothing was written. This is a bug — please report it with the model's config.json`,
        );
      }
      record.identity_max_abs_logit_diff = r.maxAbsLogitDiff;
      await writeFile(join(tmp, 'config.json'), JSON.stringify(config, null, 2) + '\n');
    },
  });
  const id = identity as ExpandResult['identity'] | null;
  if (!id) throw new Error('identity check did not run');
  return {
    out: written.dir,
    originalLayers: plan.originalLayers,
    totalLayers: plan.layers.length,
    newLayers: record.new_layers,
    sources: record.sources,
    placement: record.placement,
    identity: id,
    record,
    bytes: written.bytes,
  };
}
