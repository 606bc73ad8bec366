/**
 * The GPU's memory for the plan (src/main/engine/gpu-memory.ts): nvidia-smi's CSV and amdgpu's
 * sysfs counters as the drivers write them, the user's BLOCKLAB_GPU_MEMORY first, a software
 * adapter as RAM, and the real lookup through a stand-in `nvidia-smi` on PATH (no GPU here).
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { gpuMemory, gpuMemoryLimit, parseNvidiaSmi, readAmdVram } from '../../src/main/engine/gpu-memory.js';
import type { WebgpuAdapterInfo } from '../../src/shared/api.js';
import { testDir } from '../helpers/tmp.js';

const MiB = 2 ** 20;

const adapter = (over: Partial<WebgpuAdapterInfo>): WebgpuAdapterInfo => ({
  vendor: 'nvidia',
  architecture: 'hopper',
  device: 'NVIDIA H200',
  description: 'NVIDIA: 570.124.06',
  route: 'vulkan',
  featureLevel: 'core',
  maxBufferSize: 2 ** 40,
  maxStorageBufferBindingSize: 2 ** 31,
  shaderF16: true,
  software: null,
  ...over,
});

let root: string;
const savedPath = process.env.PATH;
beforeAll(async () => {
  root = await testDir('gpu-memory');
});
afterEach(() => {
  delete process.env.BLOCKLAB_GPU_MEMORY;
  process.env.PATH = savedPath;
});

describe('nvidia-smi', () => {
  it('one GPU: total and free from MiB', () => {
    const m = parseNvidiaSmi('NVIDIA H200, 143771, 1024\n');
    expect(m).toEqual({ total: 143771 * MiB, free: (143771 - 1024) * MiB, source: 'nvidia-smi: NVIDIA H200' });
    expect(gpuMemoryLimit(m)).toBe(142747 * MiB);
  });

  it('several GPUs: the one the adapter names, else GPU 0', () => {
    const text = 'NVIDIA GeForce RTX 3060, 12288, 500\nNVIDIA GeForce RTX 4090, 24564, 2000\n';
    expect(parseNvidiaSmi(text, ['NVIDIA GeForce RTX 4090', 'NVIDIA: 550.54'])?.total).toBe(24564 * MiB);
    expect(parseNvidiaSmi(text, ['NVIDIA GeForce RTX 4090'])?.source).toBe('nvidia-smi: NVIDIA GeForce RTX 4090 (the adapter of 2)');
    expect(parseNvidiaSmi(text, ['Some other'])?.source).toBe('nvidia-smi: NVIDIA GeForce RTX 3060 (GPU 0 of 2)');
  });

  it('what is not its CSV gives nothing', () => {
    expect(parseNvidiaSmi('')).toBeNull();
    expect(parseNvidiaSmi('NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.')).toBeNull();
    expect(parseNvidiaSmi('GPU, [N/A], [N/A]')).toBeNull();
  });
});

describe('amdgpu', () => {
  it('reads the card with the most VRAM; other vendors and unreadable cards are skipped', async () => {
    const drm = join(root, 'drm');
    const card = async (name: string, vendor: string, total?: number, used?: number) => {
      const dir = join(drm, name, 'device');
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'vendor'), `${vendor}\n`);
      if (total !== undefined) await writeFile(join(dir, 'mem_info_vram_total'), `${total}\n`);
      if (used !== undefined) await writeFile(join(dir, 'mem_info_vram_used'), `${used}\n`);
    };
    await card('card0', '0x8086'); // an Intel iGPU
    await card('card1', '0x1002', 512 * MiB, 100 * MiB); // an APU's carve-out
    await card('card2', '0x1002', 24 * 1024 * MiB, 1024 * MiB); // a Radeon RX 7900 XTX
    await card('card3', '0x1002'); // no counters
    await mkdir(join(drm, 'renderD128'), { recursive: true });
    expect(readAmdVram(drm)).toEqual({ total: 24 * 1024 * MiB, free: 23 * 1024 * MiB, source: 'amdgpu: card2' });
    expect(readAmdVram(join(root, 'no-such-dir'))).toBeNull();
  });
});

describe('gpuMemory', () => {
  it('BLOCKLAB_GPU_MEMORY comes first, for any adapter', () => {
    process.env.BLOCKLAB_GPU_MEMORY = '24GiB';
    expect(gpuMemory(adapter({}))).toEqual({ total: 24 * 2 ** 30, free: null, source: 'BLOCKLAB_GPU_MEMORY' });
    process.env.BLOCKLAB_GPU_MEMORY = 'lots';
    expect(() => gpuMemory(adapter({}))).toThrow(/BLOCKLAB_GPU_MEMORY must be a size like 512MB, 2GiB/);
  });

  it('a software adapter has no memory of its own (its buffers are RAM); no adapter, nothing known', () => {
    expect(gpuMemory(adapter({ vendor: 'mesa', device: 'llvmpipe (LLVM 15.0.6, 256 bits)', software: 'Mesa llvmpipe (OpenGL on the CPU)' }))).toBeNull();
    expect(gpuMemory(null)).toBeNull();
  });

  it("asks nvidia-smi for an NVIDIA adapter (a stand-in on PATH here), and copes with its absence", async () => {
    const bin = join(root, 'bin');
    await mkdir(bin, { recursive: true });
    const smi = join(bin, 'nvidia-smi');
    await writeFile(smi, `#!/bin/sh\n[ "$1" = "--query-gpu=name,memory.total,memory.used" ] && [ "$2" = "--format=csv,noheader,nounits" ] || exit 9\necho "NVIDIA H200, 143771, 4096"\n`);
    await chmod(smi, 0o755);
    process.env.PATH = `${bin}:${savedPath}`;
    const m = gpuMemory(adapter({}), 1e12);
    expect(m).toEqual({ total: 143771 * MiB, free: (143771 - 4096) * MiB, source: 'nvidia-smi: NVIDIA H200' });
    // without it (no driver tools on PATH): unknown, not an error
    process.env.PATH = join(root, 'empty');
    expect(gpuMemory(adapter({}), 2e12)).toBeNull();
  });
});
