/**
 * How much memory the GPU has, for the memory plan. WebGPU does not say (an adapter reports its
 * buffer limits, not its memory), so this asks where the driver does:
 *
 *   1. BLOCKLAB_GPU_MEMORY (e.g. 24GiB): the user's figure, always first;
 *   2. NVIDIA: `nvidia-smi --query-gpu=name,memory.total,memory.used` (ships with the driver);
 *   3. AMD on Linux: /sys/class/drm/card*\/device/mem_info_vram_{total,used} (amdgpu);
 *   4. otherwise unknown: the plan then checks RAM only and says that GPU memory was not checked.
 *
 * What the plan may fill is what is free now (total − used by every process), so a GPU shared
 * with another job is planned for what is left of it. A software adapter (llvmpipe) has no memory
 * of its own: its buffers are RAM, which the plan counts as such.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { WebgpuAdapterInfo } from '../../shared/api.js';
import type { GpuMemory } from '../../shared/memory-plan.js';
import { BlocklabError } from './errors.js';

export type { GpuMemory };

const MiB = 2 ** 20;

/** "64MB", "2GiB", "1.5G", "123456" → bytes; null when unset. */
export function parseBytes(text: string | undefined, what: string): number | null {
  if (text === undefined || text.trim() === '') return null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$/i.exec(text);
  if (!m) throw new BlocklabError(`${what} must be a size like 512MB, 2GiB or a number of bytes (got "${text}")`);
  const unit = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(m[1]) * unit);
}

/**
 * nvidia-smi's CSV (`name, memory.total, memory.used` in MiB, no header, no units), one line per
 * GPU → the GPU whose name the adapter's names contain, else the first. Null when nothing parses.
 */
export function parseNvidiaSmi(text: string, adapterNames: string[] = []): GpuMemory | null {
  const gpus: { name: string; total: number; used: number }[] = [];
  for (const line of text.split('\n')) {
    const cells = line.split(',').map((c) => c.trim());
    if (cells.length < 3) continue;
    const total = Number(cells[cells.length - 2]);
    const used = Number(cells[cells.length - 1]);
    if (!Number.isFinite(total) || !Number.isFinite(used) || total <= 0 || used < 0) continue;
    gpus.push({ name: cells.slice(0, -2).join(','), total: total * MiB, used: used * MiB });
  }
  if (gpus.length === 0) return null;
  const names = adapterNames.map((n) => n.toLowerCase()).filter((n) => n);
  const named = gpus.find((g) => names.some((n) => n.includes(g.name.toLowerCase()) || g.name.toLowerCase().includes(n)));
  const g = named ?? gpus[0];
  const which = gpus.length > 1 ? ` (${named ? 'the adapter' : 'GPU 0'} of ${gpus.length})` : '';
  return { total: g.total, free: Math.max(0, g.total - g.used), source: `nvidia-smi: ${g.name}${which}` };
}

/** amdgpu's VRAM counters under `drmRoot` (/sys/class/drm): the card with the most VRAM. */
export function readAmdVram(drmRoot = '/sys/class/drm'): GpuMemory | null {
  let best: GpuMemory | null = null;
  let cards: string[];
  try {
    cards = readdirSync(drmRoot).filter((n) => /^card\d+$/.test(n));
  } catch {
    return null;
  }
  for (const card of cards) {
    const dir = join(drmRoot, card, 'device');
    try {
      if (readFileSync(join(dir, 'vendor'), 'utf8').trim().toLowerCase() !== '0x1002') continue;
      const total = Number(readFileSync(join(dir, 'mem_info_vram_total'), 'utf8').trim());
      const used = Number(readFileSync(join(dir, 'mem_info_vram_used'), 'utf8').trim());
      if (!(total > 0) || !(used >= 0)) continue;
      if (!best || total > best.total) best = { total, free: Math.max(0, total - used), source: `amdgpu: ${card}` };
    } catch {
      // not an amdgpu card, or its counters are not readable
    }
  }
  return best;
}

function askNvidiaSmi(adapter: WebgpuAdapterInfo): GpuMemory | null {
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=name,memory.total,memory.used', '--format=csv,noheader,nounits'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 5000,
    });
    return parseNvidiaSmi(out, [adapter.device, adapter.description]);
  } catch {
    return null; // not installed, or the driver did not answer
  }
}

let cached: { at: number; key: string; value: GpuMemory | null } | null = null;

/**
 * The memory of the GPU behind `adapter`, or null when unknown (or a software adapter, whose
 * buffers are RAM). Asked at most every 5 s (the plan is computed many times while advising).
 */
export function gpuMemory(adapter: WebgpuAdapterInfo | null, now = Date.now()): GpuMemory | null {
  const env = parseBytes(process.env.BLOCKLAB_GPU_MEMORY, 'BLOCKLAB_GPU_MEMORY');
  if (env !== null) return { total: env, free: null, source: 'BLOCKLAB_GPU_MEMORY' };
  if (!adapter || adapter.software) return null;
  const key = `${adapter.vendor}|${adapter.device}|${adapter.description}|${process.env.PATH ?? ''}`;
  if (cached && cached.key === key && now - cached.at < 5000) return cached.value;
  const vendor = `${adapter.vendor} ${adapter.device} ${adapter.description}`.toLowerCase();
  let value: GpuMemory | null = null;
  if (/nvidia/.test(vendor)) value = askNvidiaSmi(adapter);
  else if (/amd|ati|radeon/.test(vendor) && process.platform === 'linux') value = readAmdVram();
  cached = { at: now, key, value };
  return value;
}

/** What the plan may fill: the free memory where known, else the total. */
export function gpuMemoryLimit(m: GpuMemory | null): number | null {
  return m ? (m.free ?? m.total) : null;
}
