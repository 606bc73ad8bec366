// Which WebGPU adapters are software ones (never picked automatically), from what Dawn reports.
import { describe, expect, it } from 'vitest';
import { describeAdapter, softwareAdapterReason } from '../../src/main/engine/webgpu.js';

describe('software adapter detection', () => {
  it('names the CPU renderers Dawn can find', () => {
    // as Dawn reports them (llvmpipe: seen here through OpenGL ES)
    expect(softwareAdapterReason({ vendor: '', architecture: '', device: 'llvmpipe-llvm-15-0-6-256-bits-', description: 'OpenGL version OpenGL ES 3.2 Mesa 22.3.6' })).toBe('Mesa llvmpipe (OpenGL on the CPU)');
    expect(softwareAdapterReason({ vendor: 'mesa', device: 'llvmpipe (LLVM 15.0.6, 256 bits)', description: 'Mesa 23.2.1 - lavapipe' })).toMatch(/llvmpipe|lavapipe/);
    expect(softwareAdapterReason({ vendor: 'google', architecture: '', device: 'SwiftShader Device (Subzero)', description: 'SwiftShader driver' })).toBe('SwiftShader (Vulkan on the CPU)');
    expect(softwareAdapterReason({ vendor: 'microsoft', device: 'Microsoft Basic Render Driver', description: 'D3D12 backend' })).toMatch(/WARP/);
    expect(softwareAdapterReason({ vendor: 'apple', device: 'Apple M2', isFallbackAdapter: true })).toBe('a fallback (software) adapter');
  });

  it('takes real GPUs for GPUs', () => {
    expect(softwareAdapterReason({ vendor: 'nvidia', architecture: 'hopper', device: 'NVIDIA H200', description: 'NVIDIA: 550.54.15 550.54.15.0' })).toBeNull();
    expect(softwareAdapterReason({ vendor: 'amd', architecture: 'rdna-3', device: 'AMD Radeon RX 7900 XTX (RADV NAVI31)', description: 'radv Mesa 24.0.5' })).toBeNull();
    expect(softwareAdapterReason({ vendor: 'intel', architecture: 'gen-12lp', device: 'Mesa Intel(R) UHD Graphics 770 (ADL-S GT1)', description: 'Intel open-source Mesa driver: Mesa 23.2.1' })).toBeNull();
  });

  it('describes an adapter in one line with the limits doctor shows', () => {
    const line = describeAdapter({
      vendor: 'nvidia',
      architecture: 'hopper',
      device: 'NVIDIA H200',
      description: 'NVIDIA: 550.54.15',
      route: 'vulkan',
      featureLevel: 'core',
      maxBufferSize: 2 ** 40,
      maxStorageBufferBindingSize: 2 ** 32 - 4,
      shaderF16: true,
      software: null,
    });
    expect(line).toBe('nvidia hopper NVIDIA H200 via vulkan; driver: NVIDIA: 550.54.15; maxBufferSize 1,048,576 MiB, maxStorageBufferBindingSize 4,096 MiB, shader-f16 yes');
  });
});
