/**
 * Where a training step spends its time: phases timed separately (forward, forward+backward,
 * clipping, optimizer), and one step under tf.profile with every kernel's time sorted into
 * categories. On wasm every kernel runs synchronously, so the profiler's per-kernel wall time
 * is the kernel's own time.
 *
 * The matmul route is read off the shapes: the wasm backend sends a BatchMatMul to XNNPACK
 * only when neither side is transposed and both batch sizes are 1 (tfjs-backend-wasm
 * batch_mat_mul_impl.cc); everything else runs its scalar blocked loop.
 */
import { tf } from '../engine/index.js';
import { globalNormClip } from '../engine/optimizer.js';
import { TRAIN_DEFAULTS } from '../engine/trainer.js';
import type { ProfileCategory, ProfileKernel, StepProfile } from './report.js';
import type { Stepper } from './train.js';
import { summarize } from './timing.js';

type KernelRecord = { name: string; inputShapes: (number[] | null)[]; outputShapes: number[][]; kernelTimeMs: number | { error: string } };

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

interface Classified {
  category: string;
  route?: string;
  flops?: number;
}

/** Sorts one kernel into a category; V is the vocabulary, T the sequence length. */
export function classifyKernel(k: Pick<KernelRecord, 'name' | 'inputShapes' | 'outputShapes'>, V: number, T: number): Classified {
  const shapes = [...k.inputShapes, ...k.outputShapes].filter((s): s is number[] => Array.isArray(s));
  const vocab = shapes.some((s) => s.includes(V));
  if (k.name === 'BatchMatMul' || k.name === '_FusedMatMul') {
    const [a, b] = k.inputShapes as number[][];
    const out = k.outputShapes[0];
    const M = out[out.length - 2];
    const N = out[out.length - 1];
    const tA = a[a.length - 2] !== M;
    const tB = b[b.length - 1] !== N;
    const K = tA ? a[a.length - 2] : a[a.length - 1];
    const batchA = size(a.slice(0, -2));
    const batchB = size(b.slice(0, -2));
    const xnn = !tA && !tB && batchA === 1 && batchB === 1;
    const route = xnn ? 'XNNPACK' : `scalar loop (${[batchA > 1 || batchB > 1 ? `batch ${Math.max(batchA, batchB)}` : '', tA ? 'transposeA' : '', tB ? 'transposeB' : ''].filter(Boolean).join(', ')})`;
    const flops = 2 * size(out.slice(0, -2)) * M * N * K;
    const what = vocab ? 'LM head' : xnn ? 'block linears' : 'attention (QKᵀ, PV and their gradients)';
    return { category: `matmul ${xnn ? 'XNNPACK' : 'scalar loop'}: ${what}`, route, flops };
  }
  if (k.name === 'Transpose') return { category: vocab ? 'transpose: vocab-sized (head weight, logits)' : 'transpose: fast-gradient operands and attention layout' };
  if (vocab) return { category: 'vocab-wide elementwise (logits slice, softmax, logsumexp, one-hot, embedding gather)' };
  if (shapes.some((s) => s.length >= 4 && s[s.length - 1] === T && s[s.length - 2] === T)) return { category: 'attention elementwise (scale, mask, softmax) on [.., T, S]' };
  return { category: 'other block ops (norms, RoPE, SwiGLU, residuals, reshapes, gather)' };
}

const smallest = (ts: tf.Tensor[]) => ts.reduce((a, b) => (b.size < a.size ? b : a));

async function medianMs(n: number, f: () => Promise<void>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await f();
    times.push(performance.now() - t0);
  }
  return summarize(times).median;
}

export async function profileStep(s: Stepper, method: 'blocks' | 'full', firstStep: number): Promise<StepProfile> {
  const variables = s.set.params.map((p) => p.variable);
  const { vocab, seq: T } = s;
  let i = firstStep;
  const reps = 3;

  const forward = await medianMs(reps, async () => {
    const loss = tf.tidy(() => s.set.loss(s.batch(i)));
    await loss.data();
    loss.dispose();
  });
  const forwardBackward = await medianMs(reps, async () => {
    const { value, grads } = tf.variableGrads(() => s.set.loss(s.batch(i)), variables);
    await value.data();
    const list = Object.values(grads);
    await smallest(list).data(); // a barrier on asynchronous backends (wasm runs kernels synchronously)
    value.dispose();
    for (const g of list) g.dispose();
  });
  // clipping and the optimizer, timed on real gradients
  const clipTimes: number[] = [];
  const optTimes: number[] = [];
  for (let r = 0; r < reps; r++) {
    const { value, grads } = tf.variableGrads(() => s.set.loss(s.batch(i)), variables);
    value.dispose();
    const list = s.set.params.map((p) => grads[p.variable.name]);
    let t0 = performance.now();
    const { norm, scale } = globalNormClip(list, TRAIN_DEFAULTS.clip);
    await norm.data();
    clipTimes.push(performance.now() - t0);
    t0 = performance.now();
    s.optimizer.apply(list, 1e-6, scale);
    await smallest(variables).data();
    optTimes.push(performance.now() - t0);
    for (const t of [...list, norm, scale]) t?.dispose();
    i++;
  }
  const clip = summarize(clipTimes).median;
  const optimizer = summarize(optTimes).median;
  const phases_ms = { forward, forward_backward: forwardBackward, backward: forwardBackward - forward, clip, optimizer, step: forwardBackward + clip + optimizer };
  if (tf.getBackend() !== 'wasm' && tf.getBackend() !== 'cpu') {
    // tf.profile's per-kernel wall time is the kernel's own only where kernels run synchronously
    const note = `per-kernel times are not measured on ${tf.getBackend()}: its kernels run asynchronously (the phases above are wall times)`;
    return { method, phases_ms, profiled_step_ms: 0, categories: [], top_kernels: [], kernel_times_note: note };
  }

  // one step under the profiler: the gradient pass and the update profiled separately, so the
  // optimizer's elementwise kernels get their own category
  // tf.profile returns the engine's one profile object, which the next profile overwrites: copy
  const gradProfile = await tf.profile(() => {
    const { value, grads } = tf.variableGrads(() => s.set.loss(s.batch(i)), variables);
    return [value, ...Object.values(grads)];
  });
  const gradKernels = [...gradProfile.kernels] as unknown as KernelRecord[];
  const result = gradProfile.result as tf.Tensor[];
  const updateProfile = await tf.profile(() => {
    const list = result.slice(1); // variableGrads returns the gradients in the order of `variables`
    const { norm, scale } = globalNormClip(list, TRAIN_DEFAULTS.clip);
    s.optimizer.apply(list, 1e-6, scale);
    for (const t of [norm, scale]) t?.dispose();
  });
  for (const t of result) t.dispose();

  const backendKernels = (kernels: KernelRecord[]) => kernels.filter((k) => tf.getKernel(k.name, tf.getBackend()) !== undefined);
  const cats = new Map<string, { ms: number; flops: number; matmul: boolean }>();
  const byKernel = new Map<string, ProfileKernel & { flops: number }>();
  let total = 0;
  const add = (category: string, ms: number, flops: number, matmul: boolean) => {
    const c = cats.get(category) ?? { ms: 0, flops: 0, matmul };
    c.ms += ms;
    c.flops += flops;
    cats.set(category, c);
    total += ms;
  };
  for (const k of backendKernels(gradKernels)) {
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    const c = classifyKernel(k, vocab, T);
    add(c.category, ms, c.flops ?? 0, c.flops !== undefined);
    const shapes = `${k.inputShapes.map((s) => `[${s?.join(',') ?? ''}]`).join('×')} → [${k.outputShapes[0]?.join(',') ?? ''}]`;
    const key = `${k.name} ${shapes} ${c.route ?? ''}`;
    const e = byKernel.get(key) ?? { kernel: k.name, shapes, route: c.route, calls: 0, ms: 0, flops: 0 };
    e.calls += 1;
    e.ms += ms;
    e.flops += c.flops ?? 0;
    byKernel.set(key, e);
  }
  for (const k of backendKernels(updateProfile.kernels as unknown as KernelRecord[])) {
    add('optimizer + clipping (elementwise over trained weights)', typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0, 0, false);
  }
  const categories: ProfileCategory[] = [...cats.entries()]
    .map(([name, c]) => ({ name, ms: c.ms, share: total > 0 ? c.ms / total : 0, ...(c.matmul && c.ms > 0 ? { gflops: c.flops / (c.ms / 1000) / 1e9 } : {}) }))
    .sort((a, b) => b.ms - a.ms);
  const top_kernels: ProfileKernel[] = [...byKernel.values()]
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 15)
    .map(({ flops, ...k }) => ({ ...k, ...(flops > 0 && k.ms > 0 ? { gflops: flops / (k.ms / 1000) / 1e9 } : {}) }));
  return {
    method,
    phases_ms,
    profiled_step_ms: total,
    categories,
    top_kernels,
  };
}
