/**
 * Training as a supervised job in an engine process: progress events, a responsive caller,
 * cancel with a checkpoint, a killed engine process, a killed caller, and resuming each.
 */
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { expandModel, makeTinyCheckpoint } from '../../src/main/engine/index.js';
import { train, TRAIN_DEFAULTS } from '../../src/main/engine/trainer.js';
import { DEFAULT_ADAMW } from '../../src/main/engine/optimizer.js';
import { startJob } from '../../src/main/jobs/supervisor.js';
import { ExperimentStore } from '../../src/main/store/index.js';
import type { TrainJob } from '../../src/shared/jobs.js';
import { testDir } from '../helpers/tmp.js';
import { englishText } from '../helpers/corpus.js';
import { childPids, waitForExit } from '../helpers/processes.js';

let root: string;
let model: string;
let corpus: string;

beforeAll(async () => {
  root = await testDir('jobs');
  await makeTinyCheckpoint(join(root, 'base'), { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64 });
  model = join(root, 'expanded');
  await expandModel(join(root, 'base'), { blocks: 1 }, { out: model });
  corpus = join(root, 'corpus.txt');
  writeFileSync(corpus, englishText(12000));
}, 60_000);

function job(out: string, over: Partial<TrainJob> = {}): TrainJob {
  return {
    ...TRAIN_DEFAULTS,
    model,
    data: { paths: [corpus] },
    out,
    method: { kind: 'blocks' },
    steps: 6,
    batch: 2,
    seq: 32,
    warmup: 1,
    lr: 1e-3,
    adamw: DEFAULT_ADAMW,
    cacheDir: join(root, 'cache'),
    resume: false,
    ...over,
  };
}

/** The most caller heartbeats per step that an engine running in the caller's process allows (measured: 1). */
const IN_PROCESS_BEATS_PER_STEP = 3;

/**
 * Heartbeats of the caller's event loop: a setImmediate chain that counts one per turn of the
 * loop, running from step `from` to step `to` (and not longer: it keeps a core busy). Counts,
 * not durations, so a slow or loaded machine cannot make it fail: a turn the loop does not take
 * is not counted, whatever the clock says.
 */
function heartbeats(from: number, to: number) {
  let count = 0;
  let beating = false;
  const beat = () => {
    count++;
    if (beating) setImmediate(beat);
  };
  const atStep: number[] = [];
  return {
    onStep(step: number) {
      if (step === from) {
        beating = true;
        setImmediate(beat);
      }
      if (step >= from && step <= to) atStep.push(count);
      if (step === to) beating = false;
    },
    /** heartbeats between consecutive steps from..to */
    perStep: () => atStep.slice(1).map((c, i) => c - atStep[i]),
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

describe('supervised training jobs', () => {
  it('runs in an engine process, records the run, and keeps the caller responsive', async () => {
    const store = ExperimentStore.open(join(root, 'store1.sqlite'));
    const steps: number[] = [];
    const beats = heartbeats(2, 8);
    const handle = startJob({ kind: 'train', train: job(join(root, 'run1'), { steps: 12, evalEvery: 4 }) }, {
      store,
      events: {
        onStep: (m) => {
          steps.push(m.step);
          beats.onStep(m.step);
        },
      },
    });
    expect(handle.pid).not.toBe(process.pid);
    const outcome = await handle.done;
    expect(outcome.status).toBe('completed');
    expect(steps).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    // The engine's work happens elsewhere: between two steps the caller's event loop turned
    // over and over. A trainer computing in the caller's own process lets it turn about once
    // per step (it yields once between steps): the control below measures that.
    const perStep = beats.perStep();
    console.log(`caller heartbeats per training step, engine in its own process: ${perStep.join(', ')}`);
    expect(perStep).toHaveLength(6);
    expect(median(perStep)).toBeGreaterThan(IN_PROCESS_BEATS_PER_STEP * 10);

    const run = store.getRun(handle.runId!)!;
    expect(run.status).toBe('completed');
    expect(run.method).toBe('blocks');
    expect(run.backend).toBe('wasm');
    expect(store.getMetrics(run.id, ['loss']).map((m) => m.step)).toEqual(steps);
    expect(store.getMetrics(run.id, ['val_loss']).length).toBeGreaterThanOrEqual(3);
    const result = store.getCheckpoint(run.resultCheckpointId!)!;
    expect(result.path).toBe(join(root, 'run1', 'model'));
    expect(result.madeBy).toBe('train');
    expect(result.parentId).toBe(run.baseCheckpointId);
    store.close();
  });

  it('control: the same heartbeat count with the trainer in the caller\'s process stays at about one per step', async () => {
    const beats = heartbeats(2, 8);
    const r = await train(job(join(root, 'run1-in-process'), { steps: 8 }), { onStep: (m) => beats.onStep(m.step) });
    expect(r.stopped).toBe('completed');
    const perStep = beats.perStep();
    console.log(`caller heartbeats per training step, engine in the caller's process: ${perStep.join(', ')}`);
    expect(perStep).toHaveLength(6);
    expect(median(perStep)).toBeLessThanOrEqual(IN_PROCESS_BEATS_PER_STEP);
  });

  it('cancel stops after a step with a checkpoint; resuming needs the same settings and continues the same run', async () => {
    const store = ExperimentStore.open(join(root, 'store2.sqlite'));
    const out = join(root, 'run2');
    const handle = startJob({ kind: 'train', train: job(out, { steps: 200 }) }, {
      store,
      events: { onStep: (m) => m.step === 3 && handle.cancel() },
    });
    const outcome = await handle.done;
    expect(outcome.status).toBe('cancelled');
    const run = store.getRun(handle.runId!)!;
    expect(run.status).toBe('cancelled');
    const stopped = run.lastStep!;
    expect(stopped).toBeGreaterThanOrEqual(3);
    expect(existsSync(join(out, `checkpoint-${String(stopped).padStart(6, '0')}`, 'trainer_state.json'))).toBe(true);

    const resumed = startJob({ kind: 'train', train: job(out, { steps: stopped + 2, resume: true }) }, { store, resumeRunId: run.id });
    // a different --steps is a different schedule: refused, not silently continued
    const refused = await resumed.done;
    expect(refused.status).toBe('failed');
    expect(refused.status === 'failed' && refused.error).toMatch(/steps: 200 then/);

    const again = startJob({ kind: 'train', train: job(out, { steps: 200, resume: true, stopAfter: stopped + 2 }) }, { store, resumeRunId: run.id });
    const o2 = await again.done;
    expect(o2.status).toBe('paused');
    expect(store.getRun(run.id)!.lastStep).toBe(stopped + 2);
    store.close();
  });

  it('an engine process killed with SIGKILL fails the job as interrupted; it resumes from its last checkpoint', async () => {
    const store = ExperimentStore.open(join(root, 'store3.sqlite'));
    const out = join(root, 'run3');
    const handle = startJob({ kind: 'train', train: job(out, { steps: 40, saveEvery: 2 }) }, {
      store,
      events: { onCheckpoint: (step) => step === 4 && handle.kill('SIGKILL') },
    });
    const outcome = await handle.done;
    expect(outcome.status).toBe('interrupted');
    expect(outcome.status === 'interrupted' && outcome.error).toMatch(/killed \(SIGKILL\)/);
    expect(store.getRun(handle.runId!)!.status).toBe('interrupted');

    const resumed = startJob({ kind: 'train', train: job(out, { steps: 40, saveEvery: 2, resume: true, stopAfter: 6 }) }, { store, resumeRunId: handle.runId! });
    const r = await resumed.done;
    expect(r.status).toBe('paused');
    expect('result' in r && r.result.startStep).toBe(4);
    store.close();
  });

  it('an engine process that runs out of memory fails the job with that reason, and the caller goes on', async () => {
    const store = ExperimentStore.open(join(root, 'store5.sqlite'));
    const handle = startJob({ kind: 'train', train: job(join(root, 'run5')) }, { store, maxHeapMb: 24 });
    const outcome = await handle.done;
    expect(outcome.status).toBe('failed');
    expect(outcome.status === 'failed' && outcome.error).toMatch(/ran out of memory/);
    const run = store.getRun(handle.runId!)!;
    expect(run.status).toBe('failed');
    expect(run.error).toMatch(/ran out of memory/);
    store.close();
  });

  it('a caller killed with SIGKILL leaves its run marked interrupted at the next start, and `runs resume` finishes it', async () => {
    const storePath = join(root, 'store4.sqlite');
    const out = join(root, 'run4');
    const cli = join(import.meta.dirname, '..', '..', 'bin', 'blocklab.mjs');
    const args = [cli, '--store', storePath, 'train', model, '--data', corpus, '--out', out, '--steps', '60', '--batch', '2', '--seq', '32', '--save-every', '2', '--lr', '1e-3'];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      let text = '';
      child.stderr.on('data', (d) => {
        text += String(d);
        if (/checkpoint at step 4/.test(text)) resolve();
      });
      child.on('exit', () => reject(new Error(`the CLI ended before its first checkpoints: ${text}`)));
    });
    const engines = childPids(child.pid!);
    expect(engines, 'the CLI runs its training in one engine process').toHaveLength(1);
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
    // its engine process notices the lost parent, stops at a step boundary with a checkpoint and exits
    await waitForExit(engines[0], 'the engine process of the killed CLI');

    const store = ExperimentStore.open(storePath); // open() marks runs whose process is gone
    const run = store.listRuns()[0];
    expect(run.status).toBe('interrupted');
    expect(run.error).toMatch(/--resume/);
    store.close();

    const resumed = spawn(process.execPath, [cli, '--store', storePath, '--json', 'runs', 'resume', String(run.id)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    resumed.stdout.on('data', (d) => (stdout += String(d)));
    resumed.stderr.on('data', (d) => (stderr += String(d)));
    const code = await new Promise((r) => resumed.on('exit', r));
    expect(code, stderr.split('\n').filter((l) => !l.startsWith('step ')).join('\n')).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc.run_id).toBe(run.id);
    expect(doc.steps).toBe(60);
    const after = ExperimentStore.open(storePath);
    expect(after.getRun(run.id)!.status).toBe('completed');
    after.close();
  }, 120_000);
});
