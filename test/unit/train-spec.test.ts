import { describe, expect, it } from 'vitest';
import { buildTrainJob, defaultWarmup, trainSpecErrors, trainSpecProblem, type TrainSpec } from '../../src/shared/train-spec';

const spec = (over: Record<string, unknown> = {}) => ({ model: '/m', data: ['/d.jsonl'], method: { kind: 'blocks' }, steps: 40, lr: 1e-3, batch: 4, seq: 128, ...over });
const ctx = { out: '/runs/a', cacheDir: '/store/cache' };

describe('the Train form checks each field against the shared schema, in plain words', () => {
  it('accepts a valid spec', () => {
    expect(trainSpecErrors(spec())).toEqual({});
  });

  it('names each bad field with what it must be (the walkthrough: steps 0, lr 1e9, batch 100000)', () => {
    expect(trainSpecErrors(spec({ steps: 0, lr: 1e9, batch: 100_000 }))).toEqual({
      steps: 'must be at least 1',
      lr: 'must be at most 1 (typical: 1e-5 to 1e-3)',
      batch: 'must be at most 4,096',
    });
    expect(trainSpecErrors(spec({ steps: 2.5 })).steps).toBe('must be a whole number');
    expect(trainSpecErrors(spec({ lr: 0 })).lr).toBe('must be above 0');
    expect(trainSpecErrors(spec({ lr: Number.NaN })).lr).toBe('must be a number');
    expect(trainSpecErrors(spec({ beta2: 1 })).beta2).toBe('must be below 1');
    expect(trainSpecErrors(spec({ data: [] })).data).toBe('give at least one data folder or file');
  });

  it("keys a method setting by its own name (the form's field), and checks warmup against steps", () => {
    expect(trainSpecErrors(spec({ method: { kind: 'lora', rank: 0, alpha: 16, targets: [] } }))).toEqual({ rank: 'must be at least 1', targets: 'choose at least one projection' });
    expect(trainSpecErrors(spec({ method: { kind: 'last', k: 0 } }))).toEqual({ k: 'must be at least 1' });
    expect(trainSpecErrors(spec({ warmup: 50 }))).toEqual({ warmup: 'must not be longer than the run (40 steps)' });
  });

  it('speaks of the CLI flag in one line', () => {
    expect(trainSpecProblem(spec({ lr: 2 }))).toBe('--lr: must be at most 1 (typical: 1e-5 to 1e-3)');
    expect(trainSpecProblem(spec({ gradAccum: 0 }))).toBe('--grad-accum: must be at least 1');
    expect(trainSpecProblem(spec())).toBeNull();
  });
});

describe('one builder for the app and the CLI', () => {
  it('fills the defaults: warmup a tenth of a short run, 10 for a long one', () => {
    expect(defaultWarmup(40)).toBe(4);
    expect(defaultWarmup(100)).toBe(10);
    expect(defaultWarmup(5000)).toBe(10);
    const job = buildTrainJob(spec() as TrainSpec, ctx);
    expect(job).toMatchObject({ warmup: 4, gradAccum: 1, minLrRatio: 0.1, seed: 0, clip: 1, saveEvery: 0, evalEvery: 0, evalBatches: 8, valFraction: 0.05, keepCheckpoints: 2, resume: false, out: '/runs/a', cacheDir: '/store/cache' });
    expect(job.adamw).toEqual({ beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0 });
    expect(job.data).toEqual({ paths: ['/d.jsonl'] });
  });

  it('carries every option it is given', () => {
    const job = buildTrainJob(
      spec({ warmup: 0, gradAccum: 2, minLrRatio: 0, seed: 7, weightDecay: 0.1, beta1: 0.8, beta2: 0.99, clip: 0, saveEvery: 10, evalEvery: 5, evalBatches: 2, valFraction: 0.1, keepCheckpoints: 0, include: ['**/*.py'], exclude: ['**/test_*'] }) as TrainSpec,
      { ...ctx, resume: true, backend: 'wasm', stopAfter: 3 },
    );
    expect(job).toMatchObject({ warmup: 0, gradAccum: 2, minLrRatio: 0, seed: 7, clip: 0, saveEvery: 10, evalEvery: 5, evalBatches: 2, valFraction: 0.1, keepCheckpoints: 0, resume: true, backend: 'wasm', stopAfter: 3 });
    expect(job.adamw).toEqual({ beta1: 0.8, beta2: 0.99, eps: 1e-8, weightDecay: 0.1 });
    expect(job.data).toEqual({ paths: ['/d.jsonl'], include: ['**/*.py'], exclude: ['**/test_*'] });
  });
});

describe('pause after a step (--stop-after)', () => {
  it('must come before the last step, says the flag, reaches the job and its command', async () => {
    const { trainCommand } = await import('../../src/shared/commands');
    const spec = { model: '/m', data: ['/d'], method: { kind: 'blocks' as const }, steps: 40, lr: 1e-3, batch: 2, seq: 64 };
    expect(trainSpecErrors({ ...spec, stopAfter: 40 }).stopAfter).toBe('must be before the last step (40)');
    expect(trainSpecProblem({ ...spec, stopAfter: 0 })).toBe('--stop-after: must be at least 1');
    const job = buildTrainJob({ ...spec, stopAfter: 3 } as TrainSpec, { out: '/o', cacheDir: '/c' });
    expect(job.stopAfter).toBe(3);
    expect(trainCommand(job)).toMatch(/ --stop-after 3( |$)/);
    // the CLI's own --stop-after (the context) wins, as for --backend
    expect(buildTrainJob({ ...spec, stopAfter: 3 } as TrainSpec, { out: '/o', cacheDir: '/c', stopAfter: 5 }).stopAfter).toBe(5);
    expect(buildTrainJob(spec as TrainSpec, { out: '/o', cacheDir: '/c' }).stopAfter).toBeUndefined();
  });
});
