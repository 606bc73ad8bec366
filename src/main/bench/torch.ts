/**
 * `--vs-torch`: runs scripts/bench_torch.py with Debian's /usr/bin/python3 (python3-torch) on
 * the same shape, batch, sequence length and token ids, and reads its one JSON document.
 */
import { execFile } from 'node:child_process';
import { access, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModelConfig } from '../engine/config.js';
import { DEFAULT_ADAMW } from '../engine/optimizer.js';
import { TRAIN_DEFAULTS } from '../engine/trainer.js';
import type { TorchFigures } from './report.js';

export const TORCH_SCRIPT = fileURLToPath(new URL('../../../scripts/bench_torch.py', import.meta.url));
export const TORCH_PYTHON = process.env.BLOCKLAB_BENCH_PYTHON ?? '/usr/bin/python3';

export interface TorchRun {
  config: ModelConfig;
  newLayers: number[];
  idsFile: string;
  dir: string;
  warmup: number;
  steps: number;
  threads: number[];
}

export async function runTorch(r: TorchRun): Promise<TorchFigures> {
  const doc = await runTorchScript(r, ['--threads', r.threads.join(',')]);
  return doc as unknown as TorchFigures;
}

/**
 * Runs scripts/bench_torch.py on `r`'s shape and token ids with `args` (thread counts; or
 * `--device cuda` for scripts/gpu-measure.ts) and returns its JSON document, or
 * `{ available: false, reason }`. `python` defaults to TORCH_PYTHON, `script` to TORCH_SCRIPT.
 */
export async function runTorchScript(r: Omit<TorchRun, 'threads'>, args: string[], python = TORCH_PYTHON, script = TORCH_SCRIPT): Promise<{ available: boolean; reason?: string } & Record<string, unknown>> {
  try {
    await access(python);
  } catch {
    return { available: false, reason: `${python} not found (PyTorch comparison needs Debian's python3 with python3-torch)` };
  }
  const ids = JSON.parse(await readFile(r.idsFile, 'utf8')) as { batch: number; seq: number; batches: number[][] };
  const c = r.config;
  const cfgFile = join(r.dir, 'torch-config.json');
  await writeFile(
    cfgFile,
    JSON.stringify({
      hidden: c.hiddenSize,
      layers: c.numLayers,
      heads: c.numHeads,
      kv_heads: c.numKvHeads,
      head_dim: c.headDim,
      intermediate: c.intermediateSize,
      vocab: c.vocabSize,
      tied: c.tieWordEmbeddings,
      rms_norm_eps: c.rmsNormEps,
      rope_theta: c.ropeTheta,
      new_layers: r.newLayers,
      batch: ids.batch,
      seq: ids.seq,
      batches: ids.batches,
      warmup: r.warmup,
      steps: r.steps,
      lr: TRAIN_DEFAULTS.lr,
      clip: TRAIN_DEFAULTS.clip,
      beta1: DEFAULT_ADAMW.beta1,
      beta2: DEFAULT_ADAMW.beta2,
      eps: DEFAULT_ADAMW.eps,
      weight_decay: DEFAULT_ADAMW.weightDecay,
    }),
  );
  const out = await new Promise<{ stdout: string; stderr: string; error: Error | null }>((resolve) => {
    execFile(python, [script, '--config', cfgFile, ...args], { maxBuffer: 16 << 20, timeout: 30 * 60_000 }, (error, stdout, stderr) =>
      resolve({ stdout, stderr, error }),
    );
  });
  const last = out.stdout.trim().split('\n').pop() ?? '';
  try {
    const doc = JSON.parse(last) as { available: boolean; reason?: string } & Record<string, unknown>;
    if (typeof doc.available === 'boolean') return doc;
  } catch {
    // falls through to the error below
  }
  const why = (out.stderr.trim().split('\n').pop() ?? out.error?.message ?? 'no output').slice(0, 300);
  return { available: false, reason: `scripts/bench_torch.py failed: ${why}` };
}
