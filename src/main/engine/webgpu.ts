/**
 * WebGPU for the engine: Dawn (the `webgpu` npm package, a prebuilt `dawn.node`) under
 * TensorFlow.js's webgpu backend. This file finds an adapter, says what it is, and registers
 * tfjs's backend on a device created here; backend.ts decides whether to use it.
 *
 * Routes, in order:
 *   1. Dawn's native API for the platform (Vulkan on Linux, Metal on macOS, D3D12 on Windows),
 *      high-performance adapter first: a researcher's NVIDIA, AMD or Intel GPU.
 *   2. Linux only, when (1) finds no adapter: OpenGL ES through EGL without a display
 *      (EGL_PLATFORM=surfaceless) in WebGPU's compatibility feature level. Stock Mesa
 *      (llvmpipe) runs there on the CPU, which is how CI tests this backend (STACK.md).
 *
 * A software adapter (llvmpipe, lavapipe, SwiftShader, …) is never picked automatically: it is
 * several times slower than the wasm backend. `--backend webgpu` uses it anyway.
 *
 * tfjs-backend-webgpu registers itself only when `navigator.gpu` exists at import time, asks for
 * an adapter without the compatibility feature level, and has no synchronous read under Node
 * (`dataSync` needs OffscreenCanvas): so the engine registers the backend itself, on its own
 * device, and reads tensors back only with `await t.data()`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { BlocklabError } from './errors.js';
import { registerWebgpuKernels } from './webgpu-kernels.js';
import type { WebgpuAdapterInfo } from '../../shared/api.js';

const nodeRequire = createRequire(import.meta.url);

// ------------------------------------------------------------------------------ Dawn's types
// The few parts of the WebGPU API used here, typed structurally (the `webgpu` package is an
// optional dependency: its types cannot be required at compile time).

interface GpuAdapterInfoLike {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}
interface GpuDeviceLike {
  limits: Record<string, number>;
  features: { has(name: string): boolean };
  lost: Promise<{ reason?: string; message?: string }>;
  addEventListener(type: 'uncapturederror', listener: (e: { error?: { message?: string; constructor?: { name?: string } } }) => void): void;
  destroy(): void;
}
interface GpuAdapterLike {
  info: GpuAdapterInfoLike;
  limits: Record<string, number>;
  features: Iterable<string> & { has(name: string): boolean };
  requestDevice(descriptor?: { requiredFeatures?: string[]; requiredLimits?: Record<string, number> }): Promise<GpuDeviceLike>;
}
interface GpuLike {
  requestAdapter(options?: { powerPreference?: 'high-performance' | 'low-power'; featureLevel?: 'core' | 'compatibility' }): Promise<GpuAdapterLike | null>;
}
interface DawnModule {
  create(flags: string[]): GpuLike;
  globals: Record<string, unknown>;
}

// ------------------------------------------------------------------------------ what we report

export type WebgpuRoute = WebgpuAdapterInfo['route'];

/** What `doctor` shows about the adapter (and the bench and the GPU measurement record). */
export type { WebgpuAdapterInfo };

export interface WebgpuProbe {
  /** an adapter was found (a software one included) */
  found: boolean;
  adapter: WebgpuAdapterInfo | null;
  /** why no adapter, or what was found */
  note: string;
  /** what to do to get one, when none was found */
  install?: string;
}

const SOFTWARE_NAMES: [RegExp, string][] = [
  [/llvmpipe/i, 'Mesa llvmpipe (OpenGL on the CPU)'],
  [/lavapipe/i, 'Mesa lavapipe (Vulkan on the CPU)'],
  [/swiftshader/i, 'SwiftShader (Vulkan on the CPU)'],
  [/softpipe|swrast|software rasterizer/i, 'a Mesa software rasterizer'],
  [/microsoft basic render/i, 'Microsoft Basic Render Driver (WARP, on the CPU)'],
];

/** Why an adapter is a software one (it runs on the CPU), or null for a real GPU. */
export function softwareAdapterReason(info: GpuAdapterInfoLike): string | null {
  const text = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
  for (const [re, what] of SOFTWARE_NAMES) if (re.test(text)) return what;
  if (info.isFallbackAdapter) return 'a fallback (software) adapter';
  return null;
}

/** The one-line description of an adapter, as doctor prints it. */
export function describeAdapter(a: WebgpuAdapterInfo): string {
  const mb = (n: number) => `${Math.round(n / 2 ** 20).toLocaleString('en-US')} MiB`;
  const name = [a.vendor, a.architecture, a.device].filter((s) => s && s.trim()).join(' ') || 'unnamed adapter';
  return (
    `${name} via ${a.route}${a.featureLevel === 'compatibility' ? ' (compatibility mode)' : ''}; driver: ${a.description || 'not reported'}; ` +
    `maxBufferSize ${mb(a.maxBufferSize)}, maxStorageBufferBindingSize ${mb(a.maxStorageBufferBindingSize)}, shader-f16 ${a.shaderF16 ? 'yes' : 'no'}`
  );
}

// ------------------------------------------------------------------------------ finding an adapter

function firstLine(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.split('\n').find((l) => l.trim())?.trim().slice(0, 200) ?? 'unknown error';
}

const NATIVE_ROUTE: WebgpuRoute = process.platform === 'darwin' ? 'metal' : process.platform === 'win32' ? 'd3d12' : 'vulkan';
const INSTALL_DAWN = 'npm install webgpu@0.6.2 (an optional dependency of Blocklab: a prebuilt Dawn, nothing to compile)';
const INSTALL_DRIVER =
  process.platform === 'linux'
    ? 'a GPU driver with Vulkan (the NVIDIA/AMD/Intel driver and libvulkan1); for the Mesa CPU stand-in (what CI tests on): apt-get install libegl-dev libegl-mesa0 libgl1-mesa-dri (Dawn opens the unversioned libEGL.so)'
    : 'an up-to-date GPU driver';

interface Found {
  gpu: GpuLike;
  adapter: GpuAdapterLike;
  info: WebgpuAdapterInfo;
}

interface RouteResult {
  probe: WebgpuProbe;
  found: Found | null;
}

let dawn: DawnModule | null = null;
let nativeProbe: Promise<RouteResult> | null = null;
let glesProbe: Promise<RouteResult> | null = null;

async function loadDawn(): Promise<DawnModule> {
  if (dawn) return dawn;
  // an ESM package, imported at run time (electron.vite.config.ts keeps it out of the bundle);
  // the specifier is a variable so that the typecheck does not need the optional package
  const specifier = 'webgpu';
  dawn = (await import(specifier)) as DawnModule;
  return dawn;
}

/**
 * Whether the Vulkan loader can be found, before asking Dawn (which prints a warning with a
 * stack-like line to stderr when it cannot load libvulkan.so.1).
 */
function vulkanLoaderPresent(): boolean {
  const name = 'libvulkan.so.1';
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(':'), '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib'];
  if (dirs.some((d) => d && existsSync(join(d, name)))) return true;
  try {
    return readFileSync('/etc/ld.so.cache').includes(name);
  } catch {
    return false;
  }
}

function adapterInfo(adapter: GpuAdapterLike, route: WebgpuRoute, featureLevel: 'core' | 'compatibility'): WebgpuAdapterInfo {
  const i = adapter.info ?? {};
  return {
    vendor: i.vendor ?? '',
    architecture: i.architecture ?? '',
    device: i.device ?? '',
    description: i.description ?? '',
    route,
    featureLevel,
    maxBufferSize: adapter.limits.maxBufferSize,
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    shaderF16: adapter.features.has('shader-f16'),
    software: softwareAdapterReason(i),
  };
}

function foundAdapter(gpu: GpuLike, adapter: GpuAdapterLike, route: WebgpuRoute, level: 'core' | 'compatibility'): RouteResult {
  const info = adapterInfo(adapter, route, level);
  const note = info.software ? `software adapter only: ${info.software}` : 'GPU adapter';
  return { probe: { found: true, adapter: info, note }, found: { gpu, adapter, info } };
}

function notFound(note: string, install: string): RouteResult {
  return { probe: { found: false, adapter: null, note, install }, found: null };
}

/** Route 1: Dawn's native API (Vulkan, Metal, D3D12). */
async function probeNative(): Promise<RouteResult> {
  try {
    nodeRequire.resolve('webgpu');
  } catch {
    return notFound('not installed (the optional dependency `webgpu` did not install)', INSTALL_DAWN);
  }
  let d: DawnModule;
  try {
    d = await loadDawn();
  } catch (e) {
    return notFound(`installed but Dawn failed to load: ${firstLine(e)}`, INSTALL_DAWN);
  }
  if (NATIVE_ROUTE === 'vulkan' && !vulkanLoaderPresent()) return notFound('no Vulkan loader (libvulkan.so.1) is installed', INSTALL_DRIVER);
  try {
    const gpu = d.create([]);
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (adapter) return foundAdapter(gpu, adapter, NATIVE_ROUTE, 'core');
    return notFound(`Dawn found no ${NATIVE_ROUTE} adapter`, INSTALL_DRIVER);
  } catch (e) {
    return notFound(`${NATIVE_ROUTE}: ${firstLine(e)}`, INSTALL_DRIVER);
  }
}

/** Route 2 (Linux): OpenGL ES through EGL without a display, in compatibility mode. */
async function probeGles(): Promise<RouteResult> {
  const native = await probeNative();
  if (native.found || process.platform !== 'linux' || !dawn) return native;
  // EGL reads EGL_PLATFORM when Dawn first opens it, which is below: no display is needed
  process.env.EGL_PLATFORM ??= 'surfaceless';
  try {
    const gpu = dawn.create(['backend=opengles']);
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance', featureLevel: 'compatibility' });
    if (adapter) return foundAdapter(gpu, adapter, 'opengles', 'compatibility');
    return notFound(`${native.probe.note}; and no OpenGL ES adapter through EGL`, INSTALL_DRIVER);
  } catch (e) {
    return notFound(`${native.probe.note}; OpenGL ES: ${firstLine(e)}`, INSTALL_DRIVER);
  }
}

function probeRoutes(routes: 'native' | 'all'): Promise<RouteResult> {
  if (routes === 'native') return (nativeProbe ??= probeNative());
  return (glesProbe ??= probeGles());
}

/**
 * Looks for a WebGPU adapter once per process (loading Dawn; no device is created). `native`
 * asks only Dawn's native API, what automatic selection needs: a real GPU is there. `all` also
 * tries the OpenGL ES route, which on a machine without a GPU finds Mesa's llvmpipe (for
 * `--backend webgpu` and doctor; Dawn prints two limit warnings on stderr when it opens it).
 */
export async function probeWebgpu(routes: 'native' | 'all' = 'native'): Promise<WebgpuProbe> {
  return (await probeRoutes(routes)).probe;
}

// ------------------------------------------------------------------------------ the tfjs backend

/** The first error the GPU reported on our device (validation, out of memory, device lost). */
let gpuError: string | null = null;
/** why the device could not be created (tfjs swallows the factory's error into a warning) */
let initError: string | null = null;
let registered = false;

/** The device's limits after creation (what tfjs actually got), for the record. */
export let deviceLimits: { maxBufferSize: number; maxStorageBufferBindingSize: number } | null = null;

/** The largest tensor the webgpu device binds in one shader (maxStorageBufferBindingSize); null before it exists. */
export function webgpuMaxBindingBytes(): number | null {
  return deviceLimits?.maxStorageBufferBindingSize ?? null;
}

/**
 * Registers tfjs's `webgpu` backend on a device of the adapter probeWebgpu found. The device is
 * created when tfjs first initialises the backend (tf.setBackend('webgpu')), with the adapter's
 * own buffer limits (WebGPU's defaults would cap a binding at 128 MiB) and shader-f16 when the
 * adapter has it.
 */
export async function registerWebgpuBackend(): Promise<void> {
  if (registered) return;
  const { found } = await probeRoutes('all');
  if (!found) throw new Error('no WebGPU adapter');
  const d = await loadDawn();
  // tfjs-backend-webgpu uses the WebGPU globals (GPUBufferUsage, GPUMapMode, …) and checks
  // navigator.gpu in its backend's constructor
  Object.assign(globalThis, d.globals);
  const nav = (globalThis as { navigator?: Record<string, unknown> }).navigator;
  if (nav) Object.defineProperty(nav, 'gpu', { value: found.gpu, configurable: true });
  else Object.defineProperty(globalThis, 'navigator', { value: { gpu: found.gpu }, configurable: true, writable: true });
  // tfjs's own registration (if it ran at import) asks for an adapter without the compatibility
  // feature level; ours replaces it
  const { WebGPUBackend } = (await import('@tensorflow/tfjs-backend-webgpu')) as unknown as { WebGPUBackend: new (device: unknown, info?: unknown) => tf.KernelBackend };
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  chunkAddN();
  deterministicMatMul();
  registerWebgpuKernels();
  tf.registerBackend(
    'webgpu',
    async () => {
      const a = found.adapter;
      const want = ['maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize', 'maxComputeWorkgroupsPerDimension', 'maxComputeWorkgroupSizeX', 'maxComputeInvocationsPerWorkgroup', 'maxStorageBuffersPerShaderStage'];
      const requiredLimits: Record<string, number> = {};
      for (const k of want) if (typeof a.limits[k] === 'number') requiredLimits[k] = a.limits[k];
      const requiredFeatures = ['shader-f16', 'timestamp-query'].filter((f) => a.features.has(f));
      let device: GpuDeviceLike;
      try {
        device = await a.requestDevice({ requiredFeatures, requiredLimits });
      } catch (e) {
        initError = firstLine(e);
        throw e;
      }
      deviceLimits = { maxBufferSize: device.limits.maxBufferSize, maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize };
      device.addEventListener('uncapturederror', (e) => {
        gpuError ??= `${e.error?.constructor?.name ?? 'GPU error'}: ${firstLine(e.error?.message ?? 'unknown')}`;
      });
      void device.lost.then((info) => {
        gpuError ??= `the GPU device was lost (${info.reason ?? 'unknown'}: ${firstLine(info.message ?? '')})`;
      });
      const backend = new WebGPUBackend(device, a.info);
      guardReads(backend, found.info);
      return backend;
    },
    0, // never picked by tfjs on its own: backend.ts chooses
  );
  registered = true;
}

/**
 * tfjs-backend-webgpu's AddN binds every input in one shader; a sum of more tensors than the
 * adapter's maxStorageBuffersPerShaderStage (16 on llvmpipe; the global gradient norm over the
 * 18 tensors of two new blocks needs 19 buffers) fails validation. This wraps it to add in chunks.
 */
function chunkAddN(): void {
  const original = tf.getKernel('AddN', 'webgpu');
  if (!original || (original.kernelFunc as { chunked?: boolean }).chunked) return;
  type Info = tf.TensorInfo;
  type Gpu = { device: GpuDeviceLike; disposeData(dataId: object): void };
  const kernelFunc = ((args: { inputs: Info[]; backend: Gpu; attrs?: unknown }) => {
    const { backend } = args;
    const max = Math.max(2, backend.device.limits.maxStorageBuffersPerShaderStage - 1); // one buffer is the output
    const sum = (inputs: Info[]): Info => {
      if (inputs.length <= max) return original.kernelFunc({ ...args, inputs } as never) as Info;
      const partials: Info[] = [];
      for (let i = 0; i < inputs.length; i += max) partials.push(sum(inputs.slice(i, i + max)));
      const out = sum(partials);
      for (const p of partials) backend.disposeData(p.dataId);
      return out;
    };
    return sum(args.inputs);
  }) as unknown as tf.KernelFunc;
  (kernelFunc as { chunked?: boolean }).chunked = true;
  tf.unregisterKernel('AddN', 'webgpu');
  tf.registerKernel({ ...original, kernelFunc });
}

/**
 * tfjs-backend-webgpu computes a matmul with a long inner dimension (≥ 2000) and a small output
 * by splitting the sum over workgroups that add into the output with atomics: the order of the
 * additions changes from run to run, and so do the last bits (19 of 19 repeats differed on
 * llvmpipe). Training must be reproducible (exact resume), so for those shapes this asks for
 * tfjs's small-output program, which sums in a fixed order; every other shape keeps tfjs's choice.
 */
function deterministicMatMul(): void {
  const original = tf.getKernel('BatchMatMul', 'webgpu');
  if (!original || (original.kernelFunc as { deterministic?: boolean }).deterministic) return;
  const FLAG = 'WEBGPU_MATMUL_PROGRAM_TYPE';
  const SMALL_OUTPUT_PROGRAM = 2; // webgpu_util.MatMulProgramType.MatMulSmallOutputSizeProgram
  const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
  const kernelFunc = ((args: { inputs: { a: tf.TensorInfo; b: tf.TensorInfo }; backend: { thresholdToIncreaseWorkgroups: number }; attrs: { transposeA: boolean; transposeB: boolean } }) => {
    const { a, b } = args.inputs;
    const { transposeA, transposeB } = args.attrs;
    const [ra, rb] = [a.shape.length, b.shape.length];
    const inner = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
    const outerA = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
    const outerB = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
    const batch = Math.max(size(a.shape.slice(0, -2)), size(b.shape.slice(0, -2)));
    // tfjs's own test (kernels/BatchMatMul_impl): split-K when the output needs few 32×32
    // workgroups, has more than 128 entries, batch is 1 and the inner dimension ≥ 2000
    const threshold = args.backend.thresholdToIncreaseWorkgroups;
    const workgroups = Math.ceil(outerA / 32) * Math.ceil(outerB / 32);
    const few = workgroups <= threshold || (outerA <= 8 && workgroups <= threshold * 2);
    const splitK = tf.env().getNumber(FLAG) < 0 && few && outerA * outerB > 128 && batch === 1 && inner >= 2000;
    if (!splitK) return original.kernelFunc(args as never);
    tf.env().set(FLAG, SMALL_OUTPUT_PROGRAM);
    try {
      return original.kernelFunc(args as never);
    } finally {
      tf.env().set(FLAG, -1);
    }
  }) as unknown as tf.KernelFunc;
  (kernelFunc as { deterministic?: boolean }).deterministic = true;
  tf.unregisterKernel('BatchMatMul', 'webgpu');
  tf.registerKernel({ ...original, kernelFunc });
}

/**
 * WebGPU reports errors (a tensor over the binding-size limit, out of memory) asynchronously
 * and tfjs never looks: the result would be silently wrong. Every read of a tensor goes through
 * here, and fails once the device has reported an error, with what it said.
 */
function guardReads(backend: tf.KernelBackend, info: WebgpuAdapterInfo): void {
  const b = backend as unknown as { read(dataId: object): Promise<unknown> };
  const read = b.read.bind(backend);
  b.read = async (dataId: object) => {
    const values = await read(dataId);
    if (gpuError) {
      const limit = `${Math.round(info.maxStorageBufferBindingSize / 2 ** 20)} MiB`;
      const hint = /binding size/i.test(gpuError)
        ? `a tensor is larger than this adapter's maxStorageBufferBindingSize (${limit}): use a smaller batch × sequence length (logits are batch·seq·vocab floats), or --backend wasm`
        : /memory/i.test(gpuError)
          ? 'the GPU ran out of memory: use a smaller batch or sequence length, or a smaller model'
          : 'this is a bug in a GPU kernel; please report it with the command that triggered it (--backend wasm avoids it)';
      throw new BlocklabError(`the GPU refused the computation (${gpuError}); results after it are invalid. ${hint}`);
    }
    return values;
  };
}

/** Why the last attempt to create the device failed, if it did. */
export function webgpuInitError(): string | null {
  return initError;
}

/** The GPU error that poisoned the device, if any (tests and doctor). */
export function webgpuError(): string | null {
  return gpuError;
}
