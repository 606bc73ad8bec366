/**
 * The one place that picks the TensorFlow.js backend. Everything else imports `tf` from here
 * and stays backend-agnostic (reads tensors back with `await t.data()` only: the webgpu backend
 * has no synchronous read under Node).
 *
 * Order (DESIGN.md §2): tensorflow from @tensorflow/tfjs-node-gpu (CUDA), webgpu (Dawn; a real
 * GPU adapter only, never a software one — see webgpu.ts), tensorflow from @tensorflow/tfjs-node
 * (CPU, optional), wasm (ships with the package: the default), cpu. `--backend NAME` forces one,
 * a software WebGPU adapter included.
 */
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { BlocklabError } from './errors.js';
import { describeAdapter, probeWebgpu, registerWebgpuBackend, webgpuInitError, type WebgpuAdapterInfo } from './webgpu.js';

export { tf };

export type BackendName = 'tensorflow-gpu' | 'tensorflow-cpu' | 'webgpu' | 'wasm' | 'cpu';

export interface BackendCandidate {
  name: BackendName;
  package: string;
  available: boolean;
  /** why it is not active, or what it is */
  note: string;
  /** what to do to get it, when it is not available */
  install?: string;
}

export interface BackendReport {
  active: BackendName;
  tfjsBackend: string;
  candidates: BackendCandidate[];
  /** the WebGPU adapter Dawn found (a software one included), or null when none was looked for or found */
  webgpuAdapter: WebgpuAdapterInfo | null;
  /** every WebGPU route was tried (doctor), not only those automatic selection uses */
  diagnosed: boolean;
}

// not named `require`: the Electron bundle declares its own module-level `require` shim
const nodeRequire = createRequire(import.meta.url);
let report: BackendReport | null = null;
let initializing: Promise<BackendReport> | null = null;

function firstLine(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.split('\n').find((l) => l.trim())?.trim().slice(0, 200) ?? 'unknown error';
}

function tryNative(pkg: string): { ok: boolean; note: string } {
  try {
    nodeRequire.resolve(pkg);
  } catch {
    return { ok: false, note: 'not installed (optional dependency; its install needs to download libtensorflow)' };
  }
  try {
    nodeRequire(pkg);
    return { ok: tf.findBackend('tensorflow') !== null, note: 'loaded' };
  } catch (e) {
    return { ok: false, note: `installed but failed to load: ${firstLine(e)}` };
  }
}

/**
 * Picks and initialises the best available backend once. `prefer` forces one (for tests and
 * `--backend`); an unavailable preference is an error that says why. `diagnose` (doctor) also
 * looks for the WebGPU adapters automatic selection skips (OpenGL ES: software Mesa, mostly).
 */
export async function initBackend(prefer?: BackendName | 'auto', opts: { diagnose?: boolean } = {}): Promise<BackendReport> {
  const settled = (r: BackendReport) => !opts.diagnose || r.diagnosed;
  if (report && (!prefer || prefer === 'auto' || prefer === report.active) && settled(report)) return report;
  if (initializing && (!prefer || prefer === 'auto') && !opts.diagnose) return initializing;
  initializing = (async () => {
    const candidates: BackendCandidate[] = [];
    const wantNative = !prefer || prefer === 'auto' || prefer === 'tensorflow-gpu' || prefer === 'tensorflow-cpu';
    let active: BackendName | null = null;

    const gpu = wantNative && prefer !== 'tensorflow-cpu' ? tryNative('@tensorflow/tfjs-node-gpu') : { ok: false, note: 'not tried' };
    candidates.push({
      name: 'tensorflow-gpu',
      package: '@tensorflow/tfjs-node-gpu',
      available: gpu.ok,
      note: gpu.ok ? 'CUDA via libtensorflow' : gpu.note,
      install: gpu.ok ? undefined : 'on a Linux CUDA 11.2 + cuDNN 8.1 workstation: npm install @tensorflow/tfjs-node-gpu@4.22.0',
    });
    if (gpu.ok) active = 'tensorflow-gpu';

    // WebGPU: looked for unless another backend is forced or CUDA is active (then only named)
    let webgpuAdapter: WebgpuAdapterInfo | null = null;
    const wantWebgpu = !active && (!prefer || prefer === 'auto' || prefer === 'webgpu');
    if (wantWebgpu) {
      const allRoutes = prefer === 'webgpu' || opts.diagnose === true;
      const probe = await probeWebgpu(allRoutes ? 'all' : 'native');
      webgpuAdapter = probe.adapter;
      const a = probe.adapter;
      const usable = probe.found && a !== null;
      const chosen = usable && (prefer === 'webgpu' || a.software === null);
      candidates.push({
        name: 'webgpu',
        package: '@tensorflow/tfjs-backend-webgpu + webgpu (Dawn)',
        available: usable,
        note: !a
          ? `${probe.note}${allRoutes || process.platform !== 'linux' ? '' : ' (the OpenGL ES route, a software renderer on most machines without a GPU, is tried by doctor and --backend webgpu)'}`
          : a.software
            ? `${describeAdapter(a)} — a software adapter (${a.software}), slower than wasm: never picked automatically; --backend webgpu forces it`
            : describeAdapter(a),
        install: usable ? undefined : probe.install,
      });
      if (chosen) active = 'webgpu';
    } else {
      candidates.push({
        name: 'webgpu',
        package: '@tensorflow/tfjs-backend-webgpu + webgpu (Dawn)',
        available: false,
        note: active ? 'not looked for: a better backend is active' : 'not looked for: another backend was asked for',
      });
    }

    const cpuNative = !active && wantNative && prefer !== 'tensorflow-gpu' ? tryNative('@tensorflow/tfjs-node') : { ok: false, note: active ? 'not needed: a better backend is active' : 'not tried' };
    candidates.push({
      name: 'tensorflow-cpu',
      package: '@tensorflow/tfjs-node',
      available: cpuNative.ok,
      note: cpuNative.ok ? 'libtensorflow on the CPU' : cpuNative.note,
      install: cpuNative.ok ? undefined : 'npm install @tensorflow/tfjs-node@4.22.0 (downloads libtensorflow at install)',
    });
    if (!active && cpuNative.ok) active = 'tensorflow-cpu';

    candidates.push({ name: 'wasm', package: '@tensorflow/tfjs-backend-wasm', available: true, note: 'WebAssembly with SIMD (bundled; the default)' });
    candidates.push({ name: 'cpu', package: '@tensorflow/tfjs-backend-cpu', available: true, note: 'plain JavaScript (slowest; fallback)' });

    if (prefer && prefer !== 'auto') {
      const c = candidates.find((x) => x.name === prefer);
      if (!c?.available) {
        throw new BlocklabError(`backend ${prefer} is not available: ${c?.note ?? 'unknown backend'}${c?.install ? `; ${c.install}` : ''}`);
      }
      active = prefer;
    }
    if (!active) active = 'wasm';

    if (active === 'webgpu') {
      await registerWebgpuBackend();
      if (!(await tf.setBackend('webgpu'))) {
        // the adapter was there but no device could be made on it: say why, and fall back
        const why = `the adapter was found but its device failed to start: ${webgpuInitError() ?? 'unknown error'}`;
        if (prefer === 'webgpu') throw new BlocklabError(`backend webgpu is not available: ${why}`);
        const c = candidates.find((x) => x.name === 'webgpu')!;
        c.available = false;
        c.note = why;
        active = candidates.some((x) => x.name === 'tensorflow-cpu' && x.available) ? 'tensorflow-cpu' : 'wasm';
      }
    }
    const tfjsName = active === 'tensorflow-gpu' || active === 'tensorflow-cpu' ? 'tensorflow' : active;
    let ok = await tf.setBackend(tfjsName);
    if (!ok && active === 'wasm') {
      const wasm = candidates.find((c) => c.name === 'wasm')!;
      wasm.available = false;
      wasm.note = 'failed to initialise WebAssembly';
      active = 'cpu';
      ok = await tf.setBackend('cpu');
    }
    if (!ok) throw new BlocklabError(`could not initialise the ${active} backend`);
    await tf.ready();
    for (const c of candidates) {
      if (c.name === active) c.note = `active: ${c.note}`;
      else if (c.available) c.note = `available, not chosen: ${c.note}`;
    }
    report = { active, tfjsBackend: tf.getBackend(), candidates, webgpuAdapter, diagnosed: opts.diagnose === true || prefer === 'webgpu' };
    return report;
  })();
  try {
    return await initializing;
  } finally {
    initializing = null;
  }
}

export function backendReport(): BackendReport | null {
  return report;
}
