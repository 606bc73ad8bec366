/**
 * `npm run demo:make-base`: pretrains the demo's tiny base model with Blocklab's own trainer
 * on the general-English corpus, deterministically (fixed seed; the wasm backend is
 * single-threaded), and writes it to resources/demo/base-model/. The base model has never
 * seen code: code is the new domain the demo's expansion is tuned on.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTinyCheckpoint } from '../../src/main/engine/tiny.js';
import { train, TRAIN_DEFAULTS } from '../../src/main/engine/trainer.js';
import { DEFAULT_ADAMW } from '../../src/main/engine/optimizer.js';
import { progressLine } from '../../src/main/cli/progress.js';

const DEMO = join(import.meta.dirname, '..', '..', 'resources', 'demo');
const OUT = join(DEMO, 'base-model');

/** The base model's shape and pretraining budget (the demo's defaults are tuned to this size). */
export const BASE_SHAPE = { layers: 4, hidden: 128, heads: 4, kvHeads: 2, intermediate: 352, maxPositions: 512 } as const;
const PRETRAIN = { steps: Number(process.env.DEMO_PRETRAIN_STEPS ?? 600), batch: 8, seq: 128, lr: 3e-3, warmup: 50, seed: 1234 };

const work = await mkdtemp(join(tmpdir(), 'blocklab-make-base-'));
try {
  const init = join(work, 'init');
  await makeTinyCheckpoint(init, { ...BASE_SHAPE, tokenizerFrom: join(DEMO, 'tokenizer'), tie: true, seed: PRETRAIN.seed });
  const started = Date.now();
  const result = await train(
    {
      ...TRAIN_DEFAULTS,
      model: init,
      data: { paths: [join(DEMO, 'corpora', 'general', 'train.txt')] },
      out: join(work, 'run'),
      method: { kind: 'full' },
      steps: PRETRAIN.steps,
      batch: PRETRAIN.batch,
      seq: PRETRAIN.seq,
      lr: PRETRAIN.lr,
      warmup: PRETRAIN.warmup,
      seed: PRETRAIN.seed,
      adamw: { ...DEFAULT_ADAMW, weightDecay: 0.1 },
      evalEvery: 200,
      valFraction: 0.05,
      keepCheckpoints: 1,
      cacheDir: join(work, 'cache'),
      resume: false,
    },
    {
      onStep: (m) => m.step % 20 === 0 && process.stderr.write(progressLine(m, null) + '\n'),
      onEval: (step, v) => process.stderr.write(`step ${step}: validation loss ${v.toFixed(4)}\n`),
    },
  );
  await rm(OUT, { recursive: true, force: true });
  await cp(result.model!, OUT, { recursive: true });
  const config = JSON.parse(await readFile(join(OUT, 'config.json'), 'utf8'));
  await writeFile(
    join(OUT, 'README.md'),
    [
      '# The demo base model',
      '',
      `A ${BASE_SHAPE.layers}-block LLaMA-architecture model (hidden ${BASE_SHAPE.hidden}, ${BASE_SHAPE.heads} heads / ${BASE_SHAPE.kvHeads} kv heads, MLP ${BASE_SHAPE.intermediate}, vocabulary ${config.vocab_size}, tied embeddings, ${result.totalParams.toLocaleString('en-US')} parameters),`,
      'pretrained from random weights by Blocklab\'s own trainer on `resources/demo/corpora/general/train.txt` only — it has never seen code.',
      '',
      `Made by \`npm run demo:make-base\`: full training, ${PRETRAIN.steps} steps × ${PRETRAIN.batch} × ${PRETRAIN.seq} tokens, AdamW lr ${PRETRAIN.lr} (warmup ${PRETRAIN.warmup}, cosine), weight decay 0.1, seed ${PRETRAIN.seed}, backend ${result.backend}.`,
      `Training loss ${result.firstLoss?.toFixed(3)} → ${result.lastLoss?.toFixed(3)}, validation loss ${result.valLoss?.toFixed(3)}; ${Math.round(result.seconds)} s (${Math.round(result.tokensPerSecond)} tokens/s).`,
      '',
      'The script is deterministic: the same seed on the wasm backend gives the same weights.',
      '',
    ].join('\n'),
  );
  process.stderr.write(`wrote ${OUT} in ${Math.round((Date.now() - started) / 1000)} s\n`);
} finally {
  await rm(work, { recursive: true, force: true });
}
