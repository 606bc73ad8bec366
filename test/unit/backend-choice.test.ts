// The compute backend a cell chooses travels with its job: the API's schemas and the training
// job made from a Train cell's settings.
import { describe, expect, it } from 'vitest';
import { JobSpecSchema, type TrainSpec } from '../../src/shared/api';
import { trainJobFromSpec } from '../../src/main/api/jobs';

const train: TrainSpec = { model: '/m', data: ['/d'], method: { kind: 'blocks' }, steps: 10, lr: 1e-3, batch: 2, seq: 32 };
const ctx = { workDir: '/tmp/w', storePath: '/tmp/w/store.sqlite' };

describe('backend choice in jobs', () => {
  it('a Train cell choice becomes the training job backend; without one the engine picks', () => {
    expect(trainJobFromSpec({ ...train, backend: 'webgpu' }, ctx).backend).toBe('webgpu');
    expect(trainJobFromSpec(train, ctx).backend).toBeUndefined();
  });

  it('eval and chat jobs carry it; an unknown backend is refused', () => {
    const evalJob = JobSpecSchema.parse({ kind: 'eval', checkpoints: ['/m'], benchmarks: ['builtin:code-mc'], backend: 'wasm' });
    expect(evalJob.kind === 'eval' && evalJob.backend).toBe('wasm');
    const chat = JobSpecSchema.parse({ kind: 'chat', model: '/m', messages: [{ role: 'user', content: 'hi' }], settings: { backend: 'webgpu' } });
    expect(chat.kind === 'chat' && chat.settings.backend).toBe('webgpu');
    expect(JobSpecSchema.safeParse({ kind: 'chat', model: '/m', messages: [{ role: 'user', content: 'hi' }], settings: { backend: 'cuda' } }).success).toBe(false);
    expect(JobSpecSchema.safeParse({ kind: 'train', train: { ...train, backend: 'metal' } }).success).toBe(false);
  });
});
