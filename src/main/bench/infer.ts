/**
 * Inference figures of one model, in a worker process of its own: checkpoint load (headers,
 * then every weight read, converted and placed on the backend, as `loadModel` does), prefill
 * (one forward pass over the prompt into a fresh KV cache, last position's logits read back,
 * as `generate` starts), and greedy decode with the KV cache through the engine's `generate`.
 */
import { tf, initBackend, openCheckpoint, type BackendName, type LlamaModel } from '../engine/index.js';
import { activeBackend, generateTask, loadPlanned, planCheckpoint, requireFit } from '../engine/plan.js';
import type { WebgpuAdapterInfo } from '../../shared/api.js';
import { generate } from '../engine/generate.js';
import { disposeCache } from '../engine/model.js';
import type { InferenceFigures } from './report.js';
import type { ResidencyMode } from '../../shared/memory-plan.js';
import { randomIds } from './shapes.js';
import { peakRssBytes, summarize } from './timing.js';
import { wasmHeapBytes } from '../engine/weights.js';

export interface InferTask {
  kind: 'infer';
  model: string;
  promptTokens: number;
  newTokens: number;
  repeats: number;
  backend?: BackendName | 'auto';
}

export interface BackendInfo {
  active: string;
  tfjs_backend: string;
  wasm_simd: boolean | null;
  wasm_threads: boolean | null;
  /** the adapter the webgpu backend runs on (null on other backends) */
  webgpu_adapter: WebgpuAdapterInfo | null;
}

export async function backendInfo(backend?: BackendName | 'auto'): Promise<BackendInfo> {
  const report = await initBackend(backend);
  const wasm = tf.getBackend() === 'wasm';
  return {
    active: report.active,
    tfjs_backend: report.tfjsBackend,
    wasm_simd: wasm ? Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) : null,
    wasm_threads: wasm ? Boolean(await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT')) : null,
    webgpu_adapter: report.active === 'webgpu' ? report.webgpuAdapter : null,
  };
}

async function loadOnce(dir: string, task: InferTask): Promise<{ model: LlamaModel; seconds: number; bytes: number; residency: ResidencyMode }> {
  const t0 = performance.now();
  const ckpt = await openCheckpoint(dir);
  // as loadModel does: the memory plan for generating says where the weights live
  const plan = requireFit(planCheckpoint(ckpt, generateTask(task.promptTokens, task.newTokens, ckpt.config.maxPositionEmbeddings), activeBackend()), dir);
  const model = await loadPlanned(ckpt, plan);
  return { model, seconds: (performance.now() - t0) / 1000, bytes: ckpt.bytes, residency: plan.residency.mode };
}

export async function benchInference(task: InferTask): Promise<{ figures: InferenceFigures; backend: BackendInfo }> {
  const backend = await backendInfo(task.backend);
  // load: the first load warms the page cache and the wasm heap; then the timed ones
  let { model, bytes, residency } = await loadOnce(task.model, task);
  const loadTimes: number[] = [];
  for (let r = 0; r < Math.max(1, task.repeats); r++) {
    model.dispose();
    // the stored weights of the last load are garbage now: collect them before the next load
    (globalThis as { gc?: () => void }).gc?.();
    const l = await loadOnce(task.model, task);
    model = l.model;
    loadTimes.push(l.seconds);
  }
  try {
    const V = model.config.vocabSize;
    const prompt = randomIds(task.promptTokens, V, 7);

    const prefillOnce = async (): Promise<number> => {
      const cache = model.newCache();
      try {
        const t0 = performance.now();
        const logits = model.forward([prompt], { cache, lastOnly: true });
        await logits.data();
        const s = (performance.now() - t0) / 1000;
        logits.dispose();
        return s;
      } finally {
        disposeCache(cache);
      }
    };
    await prefillOnce(); // warm-up
    const prefillTimes: number[] = [];
    for (let r = 0; r < Math.max(1, task.repeats); r++) prefillTimes.push(await prefillOnce());

    // decode: greedy, never stopping at EOS, through the engine's generate (what `blocklab generate` runs)
    const gen = (n: number) => generate(model, prompt, () => '', { temperature: 0, maxTokens: n, eosTokenIds: [] });
    await gen(Math.min(4, task.newTokens));
    const g = await gen(task.newTokens);
    const load = summarize(loadTimes);
    const prefill = summarize(prefillTimes);
    return {
      backend,
      figures: {
        load: { bytes, seconds: load, mb_per_second: bytes / 1e6 / load.median },
        prefill: { tokens: prompt.length, seconds: prefill, tokens_per_second: prompt.length / prefill.median },
        decode: { prompt_tokens: prompt.length, tokens: g.generatedTokens, seconds: g.decodeSeconds, tokens_per_second: g.decodeTokensPerSecond },
        peak_rss_bytes: peakRssBytes(),
        residency,
        wasm_heap_bytes: wasmHeapBytes(),
      },
    };
  } finally {
    model.dispose();
  }
}
