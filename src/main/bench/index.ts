/**
 * `blocklab bench` (DESIGN.md §6): for each shape, a model made on the fly in a temporary
 * folder, expanded, then measured in worker processes — checkpoint load, prefill and decode in
 * one, each training method in its own — and optionally the same training step in PyTorch.
 * Benchmarks are never timed tests: the test suite checks only the document's structure.
 */
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BlocklabError, openCheckpoint, type BackendName } from '../engine/index.js';
import { activeBackend, planCheckpoint, trainTask } from '../engine/plan.js';
import { parseMethod } from '../engine/trainable.js';
import { parameterCount } from '../engine/config.js';
import { DEFAULT_ADAMW } from '../engine/optimizer.js';
import { TRAIN_DEFAULTS } from '../engine/trainer.js';
import type { BackendInfo, InferTask } from './infer.js';
import type { BenchReport, InferenceFigures, ShapeReport, StepProfile, TorchFigures, TrainFigures } from './report.js';
import { SHAPES, describeShape, makeBenchModel, type ShapeName } from './shapes.js';
import { runTorch } from './torch.js';
import type { TrainTask } from './train.js';
import type { WorkerReply, WorkerTask } from './worker.js';

export { parseShapes, SHAPE_NAMES, type ShapeName } from './shapes.js';
export { formatBenchReport } from './format.js';
export type { BenchReport } from './report.js';

export interface BenchOptions {
  shapes: ShapeName[];
  quick: boolean;
  vsTorch: boolean;
  profile: boolean;
  backend?: BackendName | 'auto';
  /** progress lines (stderr) */
  log?: (line: string) => void;
}

const TARGET_RATIO = 0.7;
const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));

/** Node flags for a worker: the tsx loader, so it runs the TypeScript sources. */
function workerExecArgv(): string[] {
  const require = createRequire(import.meta.url);
  const tsx = require.resolve('tsx');
  // --expose-gc: the inference worker frees one loaded model before timing the next load
  return ['--expose-gc', '--import', new URL(`file://${join(tsx, '..', 'esm', 'index.mjs')}`).href];
}

/** Runs one measurement in a fresh process; its stderr is kept (last 8 KB) only to explain a crash. */
function inWorker<T>(task: WorkerTask): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = fork(WORKER, [], { execArgv: workerExecArgv(), stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'json' });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-8192);
    });
    let reply: WorkerReply | null = null;
    child.on('message', (m) => {
      reply = m as WorkerReply;
    });
    child.on('error', (e) => reject(new BlocklabError(`could not start a bench worker: ${e.message}`)));
    child.on('exit', (code, signal) => {
      const r = reply as WorkerReply | null;
      const what = task.kind === 'train' ? `training (${task.method})` : 'inference';
      if (r?.ok) resolve(r.result as T);
      else if (r) reject(new BlocklabError(`the ${what} bench failed: ${r.error}`));
      else {
        const last = stderr.trim().split('\n').filter((l) => l.trim()).pop() ?? '';
        const why = signal === 'SIGKILL' ? 'killed (out of memory?)' : signal ?? `exit code ${code}`;
        reject(new BlocklabError(`the ${what} bench worker died (${why})${last ? `: ${last.slice(0, 300)}` : ''}`));
      }
    });
    child.send(task);
  });
}

function cpuModel(): string {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('model name'));
    if (line) return line.split(':')[1].trim();
  } catch {
    // not Linux
  }
  return cpus()[0]?.model ?? 'unknown';
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const log = o.log ?? (() => undefined);
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  const load1 = loadavg()[0];
  const root = await mkdtemp(join(tmpdir(), 'blocklab-bench-'));
  const shapes: ShapeReport[] = [];
  let backend: BackendInfo | null = null;
  let torchInfo: BenchReport['torch'] = { requested: o.vsTorch, available: null };
  try {
    for (const name of o.shapes) {
      const spec = SHAPES[name];
      const counts = o.quick ? spec.quick : spec.full;
      log(`${name}: making the model — ${describeShape(spec)}`);
      const m = await makeBenchModel(spec, join(root, name), o.backend);
      const ckpt = await openCheckpoint(m.dir);
      const c = ckpt.config;

      log(`${name}: checkpoint load, prefill (${counts.promptTokens} tokens), decode (${counts.newTokens} tokens)`);
      const inferTask: InferTask = { kind: 'infer', model: m.dir, promptTokens: counts.promptTokens, newTokens: counts.newTokens, repeats: counts.repeats, backend: o.backend };
      const inf = await inWorker<{ figures: InferenceFigures; backend: BackendInfo }>(inferTask);
      backend ??= inf.backend;

      const training: Partial<Record<'blocks' | 'full', TrainFigures>> = {};
      let fullSkipped: string | undefined;
      let profile: StepProfile | undefined;
      for (const method of ['blocks', 'full'] as const) {
        // a method the memory plan refuses here (full fine-tuning of a 1 B model on wasm) is reported, not run
        const plan = planCheckpoint(ckpt, trainTask(ckpt, parseMethod(method), spec.batch, spec.seq), activeBackend());
        if (!plan.fits && method === 'full') {
          fullSkipped = `the memory plan refuses it on ${plan.backend}: ${plan.problems.join('; ')}`;
          log(`${name}: training, full — skipped (${fullSkipped})`);
          continue;
        }
        log(`${name}: training, ${method} (${counts.warmup} warm-up + ${counts.steps} timed steps of ${spec.batch}×${spec.seq} tokens)`);
        const task: TrainTask = { kind: 'train', model: m.dir, method, idsFile: m.idsFile, warmup: counts.warmup, steps: counts.steps, profile: o.profile && method === 'blocks', backend: o.backend };
        const r = await inWorker<{ figures: TrainFigures; profile: StepProfile | null }>(task);
        training[method] = r.figures;
        if (r.profile) profile = r.profile;
        log(`${name}: ${method} ${Math.round(r.figures.tokens_per_second).toLocaleString('en-US')} tokens/s`);
      }
      const blocks = training.blocks!;
      const full = training.full ?? null;
      const ratio = full ? blocks.step_seconds.median / full.step_seconds.median : null;

      let torch: TorchFigures | undefined;
      if (o.vsTorch && torchInfo.available === false) {
        torch = { available: false, reason: torchInfo.reason }; // said once already
      } else if (o.vsTorch) {
        log(`${name}: PyTorch, same step (1 and 2 threads)`);
        torch = await runTorch({ config: c, newLayers: m.newLayers, idsFile: m.idsFile, dir: join(root, name), warmup: counts.warmup, steps: Math.max(3, counts.steps), threads: [1, 2] });
        if (torch.available && torch.best && full) {
          torch.tfjs_over_torch = {
            blocks: blocks.tokens_per_second / torch.best.blocks.tokens_per_second,
            full: full.tokens_per_second / torch.best.full.tokens_per_second,
          };
        } else log(`PyTorch comparison skipped: ${torch.reason ?? 'no result'}`);
        if (torchInfo.available === null || torch.available) {
          torchInfo = { requested: true, available: torch.available, reason: torch.reason, python: torch.python, torch_version: torch.torch_version, blas: torch.blas };
        }
        if (torch.blas?.warning) log(`warning: ${torch.blas.warning}`);
      }

      shapes.push({
        name,
        about: spec.about,
        shape: describeShape(spec),
        model: {
          architecture: c.architecture,
          base_layers: spec.base.layers!,
          layers: c.numLayers,
          new_layers: m.newLayers,
          hidden: c.hiddenSize,
          heads: c.numHeads,
          kv_heads: c.numKvHeads,
          head_dim: c.headDim,
          intermediate: c.intermediateSize,
          vocab: c.vocabSize,
          tied: c.tieWordEmbeddings,
          params: parameterCount(c),
          bytes: ckpt.bytes,
        },
        batch: spec.batch,
        seq: spec.seq,
        training: {
          blocks,
          full,
          ...(fullSkipped ? { full_skipped: fullSkipped } : {}),
          blocks_to_full_step_time_ratio: ratio,
          target_ratio: TARGET_RATIO,
          meets_target: ratio === null ? null : ratio <= TARGET_RATIO,
        },
        inference: inf.figures,
        ...(profile ? { profile } : {}),
        ...(torch ? { torch } : {}),
      });
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  return {
    benchmark: 'blocklab bench',
    version: packageVersion(),
    started_at: startedAt,
    seconds: (performance.now() - t0) / 1000,
    quick: o.quick,
    note: o.quick ? 'quick: a smoke run with few steps; the figures are not measurements' : 'medians over the timed repetitions; warm-up excluded',
    backend: backend ?? { active: 'unknown', tfjs_backend: 'unknown', wasm_simd: null, wasm_threads: null, webgpu_adapter: null },
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpu: { model: cpuModel(), cores: cpus().length, load_average_1m_at_start: load1 },
    training_step:
      `the trainer's step (src/main/engine/trainer.ts): makeTrainable's loss under tf.variableGrads, loss read back, global-norm clip ${TRAIN_DEFAULTS.clip}, ` +
      `AdamW (betas ${DEFAULT_ADAMW.beta1}/${DEFAULT_ADAMW.beta2}, eps ${DEFAULT_ADAMW.eps}, weight decay ${DEFAULT_ADAMW.weightDecay}) with warmup + cosine lr; ` +
      'fixed random token batches, the same for PyTorch',
    shapes,
    torch: torchInfo,
  };
}
