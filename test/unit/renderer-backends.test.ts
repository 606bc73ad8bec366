// The backend choice the Train, Eval and Chat cells offer, from the Doctor's findings.
import { describe, expect, it } from 'vitest';
import type { AppInfo } from '../../src/shared/api';
import { backendNote, backendOptions } from '../../src/renderer/src/lib/backends';

const llvmpipe: AppInfo['backend'] = {
  active: 'wasm',
  note: null,
  candidates: [
    { name: 'tensorflow-gpu', available: false, reason: 'not installed', install: 'npm install …' },
    { name: 'webgpu', available: true, reason: 'available, not chosen: llvmpipe … a software adapter' },
    { name: 'tensorflow-cpu', available: false, reason: 'not installed' },
    { name: 'wasm', available: true, reason: 'active: WebAssembly with SIMD' },
    { name: 'cpu', available: true, reason: 'available, not chosen' },
  ],
  webgpuAdapter: {
    vendor: '',
    architecture: '',
    device: 'llvmpipe-llvm-15-0-6-256-bits-',
    description: 'OpenGL version OpenGL ES 3.2 Mesa 22.3.6',
    route: 'opengles',
    featureLevel: 'compatibility',
    maxBufferSize: 2 ** 31,
    maxStorageBufferBindingSize: 2 ** 27,
    shaderF16: false,
    software: 'Mesa llvmpipe (OpenGL on the CPU)',
  },
  gpuMemory: null,
};

describe('backend picker', () => {
  it('offers auto (saying what it resolves to) and every backend, unavailable ones disabled with the reason', () => {
    const o = backendOptions(llvmpipe);
    expect(o.map((x) => x.value)).toEqual(['auto', 'webgpu', 'tensorflow-gpu', 'wasm', 'tensorflow-cpu', 'cpu']);
    expect(o[0].label).toBe('auto (wasm)');
    const cuda = o.find((x) => x.value === 'tensorflow-gpu')!;
    expect(cuda.disabled).toBe(true);
    expect(cuda.label).toMatch(/unavailable/);
    expect(cuda.title).toBe('not installed');
    const gpu = o.find((x) => x.value === 'webgpu')!;
    expect(gpu.disabled).toBe(false);
    expect(gpu.label).toBe('WebGPU — software adapter, slow');
  });

  it('before app.info answers, every choice is offered', () => {
    expect(backendOptions(null).every((x) => !x.disabled)).toBe(true);
    expect(backendOptions(null)[0].label).toBe('auto');
  });

  it('notes a forced software adapter and an unavailable choice; nothing for auto or a plain choice', () => {
    expect(backendNote('webgpu', llvmpipe)).toMatch(/^Mesa llvmpipe .*slower than WebAssembly/);
    expect(backendNote('tensorflow-gpu', llvmpipe)).toBe('tensorflow-gpu is not available here: not installed');
    expect(backendNote('auto', llvmpipe)).toBe('');
    expect(backendNote('wasm', llvmpipe)).toBe('');
    const gpu = { ...llvmpipe, webgpuAdapter: { ...llvmpipe.webgpuAdapter!, software: null, device: 'NVIDIA H200' } };
    expect(backendNote('webgpu', gpu)).toBe('');
    expect(backendOptions(gpu).find((x) => x.value === 'webgpu')!.label).toBe('WebGPU');
  });
});
