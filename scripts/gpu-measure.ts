/**
 * The WebGPU measurement of issue 10, in one run, for a machine with a real GPU:
 *
 *   1. the adapter: what Dawn reports (vendor, architecture, device, driver, limits, shader-f16)
 *      and what nvidia-smi says, when it is there;
 *   2. parity on the transformers fixtures (test/fixtures/hf-reference) on --backend webgpu;
 *   3. the TinyLlama-1.1B-shape block-only training step (22 → 24 blocks, interleave): tokens/s
 *      and GPU memory, as the trainer runs it (makeTrainable + AdamW + clipping: bench's step);
 *   4. the same step in PyTorch float32 eager on the same GPU (scripts/bench_torch.py --device
 *      cuda), for the ratio (target ≥ 0.3× PyTorch);
 *   5. the Llama-2-7B shape 32 → 40 block-only step, if it fits (and PyTorch's, likewise);
 *   6. for both shapes, the same step again with the frozen blocks, embedding and head packed:
 *      BF16 on the GPU, widened by the engine's kernels when they compute; and for both
 *      residencies, greedy decoding with the KV cache (tokens/s: resident through tfjs's matmul,
 *      packed through PackedMatVec16) (the memory plan's 'packed'
 *      residency, what a 24–48 GB GPU runs the 7B step with): tokens/s and GPU memory.
 *
 * Weights are random, made on the GPU (speed does not depend on them): no multi-GB checkpoint
 * is written. Every phase is timed and a failure in one is recorded and the next one runs.
 * Prints a summary and writes gpu-measure.json to --out (default $OUT, else ./gpu-measure-out).
 *
 *   npx tsx scripts/gpu-measure.ts --scale tiny     # the rehearsal: tiny shapes (llvmpipe: minutes)
 *   npx tsx scripts/gpu-measure.ts                  # the real shapes (a GPU machine)
 *   node scripts/gpu-kit.mjs && bash gpu-kit/run.sh # the same, packed for a machine without the repo's node_modules
 *
 * Options: --scale full|tiny, --out DIR, --python PATH (PyTorch's python; default python3),
 * --torch-device cuda|cpu (default cuda at full scale, cpu at tiny), --no-torch, --no-7b,
 * --repo DIR (where test/fixtures and scripts/bench_torch.py are; default the current folder).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend, loadModel, scoreIds, tf, type Checkpoint } from '../src/main/engine/index.js';
import { parseHfConfig, type ModelConfig } from '../src/main/engine/config.js';
import { generate } from '../src/main/engine/generate.js';
import { LlamaModel, type BlockWeights } from '../src/main/engine/model.js';
import { backendMemoryBytes, WeightStore, type PackedBlock, type PackedTable } from '../src/main/engine/weights.js';
import { fromFloat32 } from '../src/main/engine/dtype.js';
import { packHalfWords, uploadPacked } from '../src/main/engine/webgpu-kernels.js';
import { fillNormal, randomIds, seededRandom } from '../src/main/engine/random.js';
import { deviceLimits } from '../src/main/engine/webgpu.js';
import { stepperFor, type IdsFile } from '../src/main/bench/train.js';
import { runTorchScript } from '../src/main/bench/torch.js';
import { planExpansion } from '../src/shared/expansion.js';
// the gradient functions: autodiff.ts loads @tensorflow/tfjs lazily with require(), which a bundle
// (scripts/gpu-kit.mjs) cannot follow; importing it here registers them in the same tfjs-core
import '@tensorflow/tfjs';

const { values: opt } = parseArgs({
  options: {
    scale: { type: 'string', default: 'full' },
    out: { type: 'string' },
    python: { type: 'string', default: 'python3' },
    'torch-device': { type: 'string' },
    'no-torch': { type: 'boolean', default: false },
    'no-7b': { type: 'boolean', default: false },
    repo: { type: 'string', default: process.cwd() },
  },
});
if (opt.scale !== 'full' && opt.scale !== 'tiny') throw new Error(`--scale must be full or tiny (got ${opt.scale})`);
const tiny = opt.scale === 'tiny';
const repo = resolve(opt.repo!);
const outDir = resolve(opt.out ?? process.env.OUT ?? 'gpu-measure-out');
const torchDevice = opt['torch-device'] ?? (tiny ? 'cpu' : 'cuda');
const started = performance.now();
const log = (line: string) => process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);

// ------------------------------------------------------------------------------------ shapes

interface Shape {
  name: string;
  /** the HF config of the base model (before expansion) */
  base: Record<string, unknown>;
  /** new blocks, interleaved */
  newBlocks: number;
  batch: number;
  seq: number;
  warmup: number;
  steps: number;
  /** tokens decoded (after a 64-token prompt) for the decode figure */
  decodeTokens: number;
}

const llama = (hidden: number, layers: number, heads: number, kvHeads: number, intermediate: number, vocab: number) => ({
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: hidden,
  num_hidden_layers: layers,
  num_attention_heads: heads,
  num_key_value_heads: kvHeads,
  intermediate_size: intermediate,
  vocab_size: vocab,
  max_position_embeddings: 2048,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  hidden_act: 'silu',
  torch_dtype: 'float32',
});

const SHAPES: Record<'tinyllama' | 'llama7b', Shape> = tiny
  ? {
      // the same proportions, small enough for llvmpipe on two cores
      tinyllama: { name: 'TinyLlama-1.1B shape, scaled down', base: llama(64, 4, 8, 1, 176, 1000), newBlocks: 2, batch: 2, seq: 64, warmup: 1, steps: 2, decodeTokens: 16 },
      llama7b: { name: 'Llama-2-7B shape, scaled down', base: llama(128, 8, 4, 4, 344, 1000), newBlocks: 2, batch: 1, seq: 64, warmup: 1, steps: 2, decodeTokens: 16 },
    }
  : {
      // TinyLlama-1.1B (TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T): 22 layers; interleave needs P | 22
      tinyllama: { name: 'TinyLlama-1.1B, 22 → 24 blocks', base: llama(2048, 22, 32, 4, 5632, 32000), newBlocks: 2, batch: 8, seq: 512, warmup: 2, steps: 5, decodeTokens: 32 },
      // Llama-2-7B: 32 → 40 blocks, the paper's LLaMA Pro expansion
      llama7b: { name: 'Llama-2-7B, 32 → 40 blocks', base: llama(4096, 32, 32, 32, 11008, 32000), newBlocks: 8, batch: 2, seq: 512, warmup: 1, steps: 3, decodeTokens: 32 },
    };

// ------------------------------------------------------------------------------------ the record

const record: Record<string, unknown> = { scale: opt.scale, started_at: new Date().toISOString(), node: process.version };

async function phase<T>(name: string, f: () => Promise<T>): Promise<T | null> {
  log(`${name}…`);
  const t0 = performance.now();
  try {
    const r = await f();
    log(`${name}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return r;
  } catch (e) {
    const message = (e as Error).message?.split('\n')[0] ?? String(e);
    log(`${name}: FAILED: ${message}`);
    record[`${name}_error`] = message;
    return null;
  } finally {
    await save();
  }
}

async function save(): Promise<void> {
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, 'gpu-measure.json'), JSON.stringify({ ...record, seconds: (performance.now() - started) / 1000 }, null, 2) + '\n');
}

function nvidiaSmi(query: string): string | null {
  try {
    return execFileSync('nvidia-smi', [query, '--format=csv,noheader,nounits'], { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

/** GPU memory this process holds, as nvidia-smi sees it (MiB → bytes), or null. */
function smiProcessBytes(): number | null {
  const text = nvidiaSmi('--query-compute-apps=pid,used_memory');
  if (!text) return null;
  for (const line of text.split('\n')) {
    const [pid, mib] = line.split(',').map((s) => s.trim());
    if (Number(pid) === process.pid) return Number(mib) * 2 ** 20;
  }
  return null;
}

// ------------------------------------------------------------------------------------ 1. adapter

await phase('adapter', async () => {
  const r = await initBackend('webgpu');
  record.adapter = r.webgpuAdapter;
  record.device_limits = deviceLimits;
  record.nvidia_smi = nvidiaSmi('--query-gpu=name,driver_version,memory.total,memory.used');
  const a = r.webgpuAdapter!;
  log(`adapter: ${[a.vendor, a.architecture, a.device].filter(Boolean).join(' ')} via ${a.route}; driver ${a.description}; ` + `maxStorageBufferBindingSize ${(a.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB, shader-f16 ${a.shaderF16}${a.software ? `; SOFTWARE: ${a.software}` : ''}`);
});
if (!record.adapter) {
  log('no WebGPU adapter: nothing else can be measured');
  process.exit(1);
}

// ------------------------------------------------------------------------------------ 2. parity

await phase('parity', async () => {
  const root = join(repo, 'test', 'fixtures', 'hf-reference');
  const rows: Record<string, unknown>[] = [];
  for (const name of readdirSync(root).filter((f) => statSync(join(root, f)).isDirectory())) {
    const dir = join(root, name);
    const want = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as { ids: number[]; nll: number[]; last_logits: number[]; greedy_continuation: number[] };
    const loaded = await loadModel(dir, 'webgpu');
    try {
      const got = await scoreIds(loaded, want.ids);
      const logits = loaded.model.forward([want.ids], { lastOnly: true });
      const last = Array.from(await logits.data());
      logits.dispose();
      const greedy = await generate(loaded.model, want.ids, () => '', { temperature: 0, maxTokens: want.greedy_continuation.length, eosTokenIds: [] });
      rows.push({
        fixture: name,
        max_abs_nll_diff: Math.max(...want.nll.map((w, i) => Math.abs(w - got.nll[i]))),
        max_abs_logit_diff: Math.max(...want.last_logits.map((w, i) => Math.abs(w - last[i]))),
        greedy_equal: JSON.stringify(greedy.ids) === JSON.stringify(want.greedy_continuation),
      });
    } finally {
      loaded.dispose();
    }
  }
  record.parity = rows;
  const worst = Math.max(...rows.map((r) => r.max_abs_nll_diff as number));
  log(`parity: ${rows.length} fixtures, max |Δnll| ${worst.toExponential(2)} (the tests allow 1e-4), greedy equal: ${rows.every((r) => r.greedy_equal)}`);
});

// ------------------------------------------------------------------------------------ 3–5. steps

/**
 * The expanded model in memory: random frozen blocks, identity-initialised new ones (as expand
 * makes them). `packed`: the frozen blocks, the embedding and the head as BF16 on the GPU in their
 * HF layout, as the memory plan's 'packed' residency loads a BF16 checkpoint (one packed copy of
 * each block weight's shape, shared by every frozen block: the speed does not depend on the values).
 */
async function inMemoryModel(shape: Shape, packed = false): Promise<{ model: LlamaModel; ckpt: Checkpoint; newLayers: number[] }> {
  const L = shape.base.num_hidden_layers as number;
  const plan = planExpansion(L, { blocks: shape.newBlocks, placement: 'interleave' });
  const newLayers = plan.layers.flatMap((b, i) => (b.kind === 'new' ? [i] : []));
  const rawConfig = { ...shape.base, num_hidden_layers: plan.layers.length };
  const config: ModelConfig = parseHfConfig(rawConfig, `${shape.name} (in memory)`);
  const { hiddenSize: D, intermediateSize: F, numHeads: nh, numKvHeads: nkv, headDim: hd, vocabSize: V } = config;
  // one random tensor per weight shape, scaled per layer on the GPU: distinct buffers, fast to make
  const random = seededRandom(7);
  const base = (rows: number, cols: number) => tf.tensor2d(fillNormal(new Float32Array(rows * cols), random, 1 / Math.sqrt(rows)), [rows, cols]);
  const kinds = { q: base(D, nh * hd), kv: base(D, nkv * hd), o: base(nh * hd, D), up: base(D, F), down: base(F, D) };
  // [in, out] float32 → [out, in] BF16 words on the GPU, as a BF16 checkpoint's block loads packed
  const pack = async (t: tf.Tensor2D) => {
    const hf = tf.transpose(t);
    const values = (await hf.data()) as Float32Array;
    const hfShape = hf.shape;
    hf.dispose();
    return { gpu: uploadPacked(fromFloat32(values, 'BF16')), shape: hfShape, dtype: 'BF16' as const };
  };
  let packedBlock: PackedBlock | null = null;
  if (packed) {
    const [q, kv, o, up, down] = [await pack(kinds.q), await pack(kinds.kv), await pack(kinds.o), await pack(kinds.up), await pack(kinds.down)];
    const norm = { gpu: tf.ones([D]) as tf.Tensor, shape: [D], dtype: 'F32' as const };
    packedBlock = new Map<keyof BlockWeights, { gpu: tf.Tensor; shape: number[]; dtype: 'BF16' | 'F32' }>([
      ['inputNorm', norm],
      ['q', q],
      ['k', kv],
      ['v', kv],
      ['o', o],
      ['postNorm', norm],
      ['gate', up],
      ['up', up],
      ['down', down],
    ]);
  }
  const all: (BlockWeights | PackedBlock)[] = plan.layers.map((b, i) => {
    const isNew = b.kind === 'new';
    if (packedBlock && !isNew) return packedBlock;
    const s = tf.scalar(1 + 1e-3 * i);
    const scaled = (t: tf.Tensor2D) => tf.mul(t, s) as tf.Tensor2D;
    const block: BlockWeights = {
      inputNorm: tf.ones([D]),
      q: scaled(kinds.q),
      k: scaled(kinds.kv),
      v: scaled(kinds.kv),
      o: isNew ? tf.zeros([nh * hd, D]) : scaled(kinds.o),
      postNorm: tf.ones([D]),
      gate: scaled(kinds.up),
      up: scaled(kinds.up),
      down: isNew ? tf.zeros([F, D]) : scaled(kinds.down),
    };
    s.dispose();
    return block;
  });
  for (const t of Object.values(kinds)) t.dispose();
  // the tables: float32 [V, D] and [D, V], or BF16 rows [V, D / 2] words (the same draws)
  const transposed = (t: tf.Tensor2D) => {
    const r = tf.transpose(t);
    t.dispose();
    return r;
  };
  const table = async (t: tf.Tensor2D): Promise<PackedTable> => {
    const values = (await t.data()) as Float32Array;
    const [rows, cols] = t.shape;
    t.dispose();
    return { words: tf.tensor2d(packHalfWords(fromFloat32(values, 'BF16')), [rows, cols / 2], 'int32'), dtype: 'BF16' };
  };
  const weights = packed
    ? { embed: await table(base(V, D)), blocks: all, norm: tf.ones([D]) as tf.Tensor1D, lmHead: await table(transposed(base(D, V))) }
    : { embed: base(V, D), blocks: all, norm: tf.ones([D]) as tf.Tensor1D, lmHead: base(D, V) };
  const ckpt: Checkpoint = { dir: `(in memory: ${shape.name})`, config, rawConfig, tensors: new Map(), dtype: 'F32', bytes: 0, expansion: null };
  return { model: new LlamaModel(config, WeightStore.fromResident(config, weights)), ckpt, newLayers };
}

/** Batches of random ids: the same ones PyTorch gets. */
function idsFor(shape: Shape, vocab: number): IdsFile {
  return { batch: shape.batch, seq: shape.seq, vocab, batches: Array.from({ length: 4 }, (_, k) => randomIds(shape.batch * shape.seq, vocab, 1000 + k)) };
}

async function stepPhase(key: 'tinyllama' | 'llama7b'): Promise<void> {
  const shape = { ...SHAPES[key] };
  // the logits ([batch·seq, V] floats) must fit one storage binding on this adapter
  const limit = (record.adapter as { maxStorageBufferBindingSize: number }).maxStorageBufferBindingSize;
  const V = shape.base.vocab_size as number;
  while (shape.batch > 1 && shape.batch * shape.seq * V * 4 > limit) shape.batch /= 2;
  const figures: Record<string, unknown> = { shape: shape.name, batch: shape.batch, seq: shape.seq, config: shape.base, new_blocks: shape.newBlocks };
  record[key] = figures;
  const ids = idsFor(shape, V);
  let ckpt: Checkpoint | null = null;
  let newLayers: number[] = [];
  // resident float32 first (the fastest, what an H200 holds), then the frozen blocks packed BF16
  for (const packed of [false, true]) {
    const label = packed ? `${key}: webgpu step, frozen blocks packed BF16` : `${key}: webgpu step`;
    const made = await phase(`${key}: model${packed ? ' (packed)' : ''}`, async () => inMemoryModel(shape, packed));
    if (!made) continue;
    const { model } = made;
    ckpt = made.ckpt;
    newLayers = made.newLayers;
    figures.new_layers = newLayers;
    if (!packed) figures.parameters = model.weights.blocks.reduce((n, b) => n + Object.values(b).reduce((m, t) => m + (t ? (t as tf.Tensor).size : 0), 0), 0) + model.weights.embed.size + model.weights.lmHead.size + model.weights.norm.size;
    // decoding first (the step's stepper takes the model over and frees it), as chat runs it (KV cache, one token a step): resident float32 through tfjs's
    // matmul; packed through PackedMatVec16 straight from the 16-bit words
    await phase(`${label.replace('step', 'decode')}`, async () => {
      const prompt = randomIds(64, V, 77);
      const greedy = { temperature: 0, maxTokens: shape.decodeTokens };
      await generate(model, prompt, () => '', { ...greedy, maxTokens: 4 }); // compiles the shaders
      const r = await generate(model, prompt, () => '', greedy);
      figures[packed ? 'decode_packed' : 'decode'] = { tokens: r.generatedTokens, decode_tokens_per_second: r.decodeTokensPerSecond, prefill_tokens_per_second: r.prefillTokensPerSecond };
      log(`${label.replace('step', 'decode')}: ${r.decodeTokensPerSecond.toFixed(1)} tokens/s (${r.generatedTokens} tokens after a 64-token prompt)`);
    });
    await phase(label, async () => {
      const stepper = stepperFor(model, made.ckpt, { kind: 'blocks', layers: newLayers }, ids, shape.warmup + shape.steps, packed ? 'packed' : 'resident');
      try {
        const times: number[] = [];
        const losses: number[] = [];
        let peakAllocated = 0;
        let peakSmi: number | null = null;
        for (let i = 0; i < shape.warmup + shape.steps; i++) {
          const r = await stepper.step(i);
          losses.push(r.loss);
          if (i >= shape.warmup) times.push(r.seconds);
          peakAllocated = Math.max(peakAllocated, backendMemoryBytes());
          const smi = smiProcessBytes();
          if (smi !== null) peakSmi = Math.max(peakSmi ?? 0, smi);
          log(`${label}: step ${i + 1}/${shape.warmup + shape.steps} ${r.seconds.toFixed(2)} s, loss ${r.loss.toFixed(3)}`);
        }
        const median = [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)];
        figures[packed ? 'webgpu_packed' : 'webgpu'] = {
          tokens_per_second: (shape.batch * shape.seq) / median,
          step_seconds: times,
          losses,
          trainable_params: stepper.set.trainableCount,
          gpu_bytes_tfjs_pool: peakAllocated,
          gpu_bytes_nvidia_smi: peakSmi,
        };
        log(`${label}: ${((shape.batch * shape.seq) / median).toFixed(0)} tokens/s; tfjs GPU pool ${(peakAllocated / 2 ** 30).toFixed(2)} GiB${peakSmi !== null ? `, nvidia-smi ${(peakSmi / 2 ** 30).toFixed(2)} GiB` : ''}`);
      } finally {
        stepper.dispose();
      }
    });
    model.dispose();
  }
  if (!ckpt) return;
  if (opt['no-torch']) return;
  await phase(`${key}: pytorch step`, async () => {
    const dir = join(outDir, key);
    await mkdir(dir, { recursive: true });
    const idsFile = join(dir, 'ids.json');
    await writeFile(idsFile, JSON.stringify(ids));
    const args = torchDevice === 'cpu' ? ['--threads', '1', '--methods', 'blocks'] : ['--device', torchDevice, '--methods', 'blocks'];
    const doc = await runTorchScript({ config: ckpt!.config, newLayers, idsFile, dir, warmup: shape.warmup, steps: shape.steps }, args, opt.python!, join(repo, 'scripts', 'bench_torch.py'));
    if (!doc.available) throw new Error(`PyTorch: ${doc.reason}`);
    const blocks = (torchDevice === 'cpu' ? (doc.by_threads as Record<string, Record<string, unknown>>)['1'].blocks : (doc.methods as Record<string, unknown>).blocks) as { tokens_per_second: number; peak_memory_bytes?: number };
    figures.pytorch = { device: torchDevice, torch_version: doc.torch_version, gpu: doc.device ?? null, ...blocks };
    const ours = (figures.webgpu as { tokens_per_second: number } | undefined)?.tokens_per_second;
    if (ours) figures.webgpu_to_pytorch = ours / blocks.tokens_per_second;
    log(`${key}: PyTorch float32 eager (${torchDevice}) ${blocks.tokens_per_second.toFixed(0)} tokens/s${ours ? `; webgpu ÷ PyTorch = ${(ours / blocks.tokens_per_second).toFixed(2)}×` : ''}`);
  });
}

await stepPhase('tinyllama');
if (!opt['no-7b']) await stepPhase('llama7b');

record.finished_at = new Date().toISOString();
await save();
log(`written: ${join(outDir, 'gpu-measure.json')}`);
process.stdout.write(JSON.stringify(record) + '\n');
process.exit(0);
