/**
 * The models the bench measures, made on the fly (random weights: speed does not depend on
 * them) and expanded the way a researcher would, so that `blocks` trains the new blocks of a
 * real expansion record.
 *
 *   demo       the `blocklab make-tiny` default (the bundled demo's size), 4 → 6 blocks
 *   tinyllama  TinyLlama-1.1B's proportions scaled to fit a 2-core desktop: its vocabulary
 *              (32000, untied head), its GQA ratio (8 query heads per kv head), its SwiGLU
 *              ratio (F ≈ 2.75·D), hidden 256, 8 → 10 blocks
 *   tinyllama-1b  TinyLlama-1.1B itself: its config, a random BF16 checkpoint (2.2 GB) in its
 *              Hugging Face layout, 22 → 24 blocks, batch 1 × 128. It does not fit the wasm heap
 *              as float32: it measures the streamed residency (opt-in: minutes, 5 GB of disk)
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expandModel, makeTinyCheckpoint, type BackendName, type TinyOptions } from '../engine/index.js';
import { BlocklabError } from '../engine/errors.js';
import { randomIds } from '../engine/random.js';
import { TRAIN_DEFAULTS } from '../engine/trainer.js';

export const SHAPE_NAMES = ['demo', 'tinyllama', 'tinyllama-1b'] as const;
/** make-tiny's byte-level tokenizer: 256 bytes + 5 special tokens (the vocabulary unless padded) */
const BYTE_VOCAB = 261;
export type ShapeName = (typeof SHAPE_NAMES)[number];

export interface StepCounts {
  /** training steps run before timing (tfjs compiles nothing, but the wasm heap grows and XNNPACK packs weights) */
  warmup: number;
  /** timed training steps */
  steps: number;
  /** prompt length for prefill and decode */
  promptTokens: number;
  /** greedy tokens generated with the KV cache */
  newTokens: number;
  /** repetitions of prefill and of checkpoint load (the median is reported) */
  repeats: number;
}

export interface ShapeSpec {
  name: ShapeName;
  /** what it stands for, for the table header */
  about: string;
  base: TinyOptions;
  /** new blocks, placed with interleave */
  newBlocks: number;
  batch: number;
  seq: number;
  full: StepCounts;
  quick: StepCounts;
}

export const SHAPES: Record<ShapeName, ShapeSpec> = {
  demo: {
    name: 'demo',
    about: 'the make-tiny default (bundled demo size)',
    base: { layers: 4, hidden: 64, heads: 4, kvHeads: 2, intermediate: 176, tie: true, maxPositions: 512 },
    newBlocks: 2,
    batch: TRAIN_DEFAULTS.batch,
    seq: TRAIN_DEFAULTS.seq,
    full: { warmup: 3, steps: 20, promptTokens: 128, newTokens: 64, repeats: 5 },
    quick: { warmup: 1, steps: 2, promptTokens: 32, newTokens: 8, repeats: 1 },
  },
  tinyllama: {
    name: 'tinyllama',
    about: 'TinyLlama-1.1B proportions scaled down (V 32000 untied, 8 q heads per kv head, F = 2.75·D)',
    base: { layers: 8, hidden: 256, heads: 8, kvHeads: 1, intermediate: 704, tie: false, padVocabTo: 32000, maxPositions: 2048 },
    newBlocks: 2,
    batch: TRAIN_DEFAULTS.batch,
    seq: TRAIN_DEFAULTS.seq,
    full: { warmup: 2, steps: 5, promptTokens: 128, newTokens: 64, repeats: 3 },
    quick: { warmup: 1, steps: 1, promptTokens: 32, newTokens: 8, repeats: 1 },
  },
  'tinyllama-1b': {
    name: 'tinyllama-1b',
    about: 'TinyLlama-1.1B itself (its config; random BF16 weights in its Hugging Face layout)',
    // uniform draws of the same spread: 10× faster to make than normal ones, and speed does not depend on them
    base: { layers: 22, hidden: 2048, heads: 32, kvHeads: 4, intermediate: 5632, tie: false, padVocabTo: 32000, maxPositions: 2048, dtype: 'BF16', distribution: 'uniform' },
    newBlocks: 2,
    batch: 1,
    seq: 128,
    full: { warmup: 1, steps: 2, promptTokens: 128, newTokens: 16, repeats: 1 },
    quick: { warmup: 0, steps: 1, promptTokens: 16, newTokens: 2, repeats: 1 },
  },
};

export function parseShapes(list: string): ShapeName[] {
  const names = list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (names.length === 0) throw new BlocklabError(`--shapes needs at least one of ${SHAPE_NAMES.join(', ')}`);
  for (const n of names) {
    if (!(SHAPE_NAMES as readonly string[]).includes(n)) throw new BlocklabError(`--shapes: unknown shape "${n}"; use ${SHAPE_NAMES.join(', ')} (comma-separated)`);
  }
  return [...new Set(names)] as ShapeName[];
}

/** The shape in words: layers, widths, heads, vocabulary. */
export function describeShape(s: ShapeSpec): string {
  const b = s.base;
  const D = b.hidden!;
  const L = b.layers!;
  return (
    `Llama, ${L} → ${L + s.newBlocks} blocks (interleave +${s.newBlocks}), hidden ${D}, ` +
    `${b.heads} heads of ${D / b.heads!} / ${b.kvHeads} kv, F ${b.intermediate}, V ${b.padVocabTo ?? BYTE_VOCAB} ${b.tie ? 'tied' : 'untied'}, ${b.dtype ?? 'F32'}; ` +
    `batch ${s.batch} × seq ${s.seq}`
  );
}

export interface BenchModel {
  dir: string;
  newLayers: number[];
  /** token-id batches shared by tfjs and PyTorch: [batch·seq] each, row-major */
  idsFile: string;
  vocab: number;
}

export { randomIds };

/** Writes the base model, expands it (with the identity check), and writes the token batches. */
export async function makeBenchModel(spec: ShapeSpec, root: string, backend?: BackendName | 'auto'): Promise<BenchModel> {
  await mkdir(root, { recursive: true });
  const base = join(root, 'base');
  const expanded = join(root, 'expanded');
  const config = await makeTinyCheckpoint(base, { ...spec.base, seed: 0 });
  const vocab = config.vocab_size as number;
  const r = await expandModel(base, { blocks: spec.newBlocks, placement: 'interleave' }, { out: expanded, backend });
  const batches = Array.from({ length: 4 }, (_, k) => randomIds(spec.batch * spec.seq, vocab, 1000 + k));
  const idsFile = join(root, 'ids.json');
  await writeFile(idsFile, JSON.stringify({ batch: spec.batch, seq: spec.seq, vocab, batches }));
  return { dir: expanded, newLayers: r.newLayers, idsFile, vocab };
}
