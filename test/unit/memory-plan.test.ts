/**
 * The memory plan's arithmetic (src/shared/memory-plan.ts) on models written out by hand: the
 * exact parts (parameters, stored bytes by dtype, float32 sizes, trainable state, AdamW moments,
 * the KV cache) against hand-computed figures; the decisions (resident or streamed, RAM or file)
 * and the refusals with their advice, whose advice must itself fit when planned again.
 */
import { describe, expect, it } from 'vitest';
import { WASM_HEAP_LIMIT, planMemory, residencyWords, type PlanLimits, type PlanModel, type PlanTask, type StoredGroup } from '../../src/shared/memory-plan.js';

const GiB = 2 ** 30;

/** A Llama-shaped model with every tensor in `bytesPerValue`-byte storage (2: BF16). */
function llama(o: { layers: number; hidden: number; intermediate: number; heads: number; kvHeads: number; vocab: number; ctx: number; tied?: boolean; bytesPerValue?: number }): PlanModel {
  const { hidden: D, intermediate: F, heads, kvHeads, vocab: V } = o;
  const hd = D / heads;
  const b = o.bytesPerValue ?? 2;
  const group = (params: number, linear: number): StoredGroup => ({ params, bytes: params * b, linearParams: linear });
  const linear = D * heads * hd * 2 + D * kvHeads * hd * 2 + 3 * D * F; // q, o; k, v; gate, up, down
  const block = group(linear + 2 * D, linear);
  const model: PlanModel = {
    layers: o.layers,
    hidden: D,
    intermediate: F,
    heads,
    kvHeads,
    headDim: hd,
    vocab: V,
    tied: o.tied ?? false,
    maxPositions: o.ctx,
    bytesByDtype: {},
    embed: group(V * D, V * D),
    head: o.tied ? null : group(V * D, V * D),
    norm: group(D, 0),
    blocks: Array.from({ length: o.layers }, () => ({ ...block })),
  };
  const total = model.embed.bytes + (model.head?.bytes ?? 0) + model.norm.bytes + o.layers * block.bytes;
  model.bytesByDtype = b === 2 ? { BF16: total } : { F32: total };
  return model;
}

/** TinyLlama-1.1B: 22 blocks, hidden 2048, MLP 5632, 32 / 4 heads, vocab 32000, untied, BF16. */
const TINYLLAMA = llama({ layers: 22, hidden: 2048, intermediate: 5632, heads: 32, kvHeads: 4, vocab: 32000, ctx: 2048 });
/** …expanded 22 → 24 (two new blocks, interleaved: 11 and 23) */
const TINYLLAMA_X = llama({ layers: 24, hidden: 2048, intermediate: 5632, heads: 32, kvHeads: 4, vocab: 32000, ctx: 2048 });
const DEMO = llama({ layers: 6, hidden: 64, intermediate: 176, heads: 4, kvHeads: 2, vocab: 1024, ctx: 512, tied: true, bytesPerValue: 4 });

const wasmAndCpu = (ram: number, deviceBudget: number | null = null): PlanLimits => ({
  ramAvailable: ram,
  deviceBudget,
  backends: [
    { name: 'wasm', deviceLimit: WASM_HEAP_LIMIT, deviceName: 'wasm heap' },
    { name: 'cpu', deviceLimit: null, deviceName: 'RAM' },
  ],
});
const cpuFirst = (ram: number): PlanLimits => ({ ...wasmAndCpu(ram), backends: [...wasmAndCpu(ram).backends].reverse() });

const chat = (ctx: number): PlanTask => ({ kind: 'infer', what: 'chat', batch: 1, tokens: Math.min(512, ctx), context: ctx });
const blocks = (layers: number[], batch: number, seq: number): PlanTask => ({ kind: 'train', method: 'blocks', trainableLayers: layers, batch, seq });

describe('exact figures', () => {
  it('TinyLlama-1.1B: 1,100,048,384 parameters, 2.2 GB of BF16, 4.4 GB as float32', () => {
    const p = planMemory(TINYLLAMA, chat(2048), wasmAndCpu(20 * GiB));
    // embed + head 2·32000·2048, norm 2048, 22 blocks of 44,044,288 (q, o 2048²; k, v 256·2048; gate, up, down 5632·2048; 2 norms)
    expect(p.model.params).toBe(1_100_048_384);
    expect(p.model.stored_bytes).toBe(2 * 1_100_048_384);
    expect(p.model.bytes_by_dtype).toEqual({ BF16: 2_200_096_768 });
    expect(p.model.float32_bytes).toBe(4 * 1_100_048_384);
    // chat KV cache at 2048 tokens: 2 (k, v) · 22 layers · 4 kv heads · 64 · 2048 positions · 4 bytes
    expect(p.kv_cache).toEqual({ bytes: 2 * 22 * 4 * 64 * 2048 * 4, context: 2048 });
    expect(p.trainable).toBeNull();
  });

  it('block-only tuning of 2 new blocks: their float32 weights, gradients and two AdamW moments', () => {
    const p = planMemory(TINYLLAMA_X, blocks([11, 23], 1, 128), wasmAndCpu(20 * GiB));
    const n = 2 * 44_044_288;
    expect(p.trainable).toEqual({ params: n, weights_bytes: 4 * n, grads_bytes: 4 * n, adamw_bytes: 8 * n });
  });

  it('LoRA r=8 on q,v: 2 · r · (in + out) per layer and projection', () => {
    const task: PlanTask = { kind: 'train', method: 'lora', trainableLayers: [], loraRank: 8, loraTargets: ['q', 'v'], batch: 1, seq: 128 };
    const p = planMemory(TINYLLAMA, task, wasmAndCpu(20 * GiB));
    expect(p.trainable!.params).toBe(22 * 8 * ((2048 + 2048) + (2048 + 256)));
  });
});

describe('where the weights live', () => {
  it('a model that fits the wasm heap as float32 stays resident (the fastest)', () => {
    const p = planMemory(DEMO, chat(512), wasmAndCpu(8 * GiB));
    expect(p.fits).toBe(true);
    expect(p.residency.mode).toBe('resident');
    expect(p.residency.plan.blocks.every((r) => r === 'device')).toBe(true);
  });

  it('TinyLlama does not fit the 4 GiB wasm heap as float32: its frozen blocks stay BF16 in RAM and stream', () => {
    const p = planMemory(TINYLLAMA, chat(2048), wasmAndCpu(20 * GiB));
    expect(p.fits).toBe(true);
    expect(p.residency.mode).toBe('streamed');
    expect(p.residency.plan).toEqual({ embed: 'host', head: 'host', blocks: new Array(22).fill('host') });
    expect(p.device.need).toBeLessThan(WASM_HEAP_LIMIT * 0.9);
    // the target for score/eval/generate: peak RSS ≤ 1.6 × the BF16 file
    expect(p.peak_rss_estimate).toBeLessThan(1.6 * p.model.stored_bytes);
  });

  it('with too little RAM for the stored weights, they are read from the file at each use', () => {
    const p = planMemory(TINYLLAMA, chat(2048), wasmAndCpu(2 * GiB));
    expect(p.fits).toBe(true);
    expect(p.residency.host_blocks).toBe(0);
    expect(p.residency.file_blocks).toBe(22);
    expect(p.ram.need).toBeLessThan(p.model.stored_bytes);
  });

  it('block-only tuning keeps the new blocks resident (trainable) and streams the rest', () => {
    const p = planMemory(TINYLLAMA_X, blocks([11, 23], 1, 128), wasmAndCpu(20 * GiB));
    expect(p.fits).toBe(true);
    expect(p.residency.plan.blocks.filter((r) => r === 'device')).toHaveLength(2);
    expect(p.residency.plan.blocks[11]).toBe('device');
    expect(p.residency.plan.blocks[23]).toBe('device');
    // the target: a block-only step with 2 new blocks in ≤ 6 GB
    expect(p.peak_rss_estimate).toBeLessThan(6e9);
  });

  it('the cpu backend has no heap limit: with RAM to spare TinyLlama is resident float32 there', () => {
    const p = planMemory(TINYLLAMA, chat(2048), cpuFirst(20 * GiB));
    expect(p.backend).toBe('cpu');
    expect(p.residency.mode).toBe('resident');
    expect(p.device.limit).toBeNull();
  });

  it('a device budget below the backend limit forces streaming (what the tests use)', () => {
    const p = planMemory(DEMO, chat(512), wasmAndCpu(8 * GiB, 2 ** 20));
    expect(p.residency.mode).toBe('streamed');
  });
});

describe('refusals say what would fit', () => {
  it('full fine-tuning of TinyLlama on wasm does not fit; block-only tuning is offered, and another backend', () => {
    const task: PlanTask = { kind: 'train', method: 'full', trainableLayers: Array.from({ length: 24 }, (_, i) => i), batch: 4, seq: 128 };
    const p = planMemory(TINYLLAMA_X, task, wasmAndCpu(20 * GiB));
    expect(p.fits).toBe(false);
    expect(p.problems.join(' ')).toMatch(/wasm heap/);
    expect(p.advice.join(' ')).toMatch(/--method blocks/);
  });

  it('an oversized batch is refused with the largest batch that fits, which does fit', () => {
    const p = planMemory(TINYLLAMA_X, blocks([11, 23], 64, 256), wasmAndCpu(20 * GiB));
    expect(p.fits).toBe(false);
    const advice = p.advice.find((a) => a.startsWith('lower the batch'));
    expect(advice).toBeDefined();
    const b = Number(/--batch (\d+)/.exec(advice!)![1]);
    expect(b).toBeLessThan(64);
    expect(planMemory(TINYLLAMA_X, blocks([11, 23], b, 256), { ...wasmAndCpu(20 * GiB), backends: [wasmAndCpu(0).backends[0]] }).fits).toBe(true);
  });

  it('with almost no RAM nothing fits, and the plan says how much is needed', () => {
    const p = planMemory(TINYLLAMA, chat(2048), wasmAndCpu(0.2 * GiB));
    expect(p.fits).toBe(false);
    expect(p.problems.join(' ')).toMatch(/RAM/);
    expect(p.advice.length).toBeGreaterThan(0);
    expect(p.backends.every((b) => !b.fits)).toBe(true);
  });
});

describe("a GPU's largest tensor (WebGPU's maxStorageBufferBindingSize)", () => {
  // TinyLlama's head and embedding: 32000 × 2048 float32 = 250 MiB, over llvmpipe's 128 MiB
  const gpu = (maxTensorBytes: number): PlanLimits => ({
    ramAvailable: 64 * GiB,
    deviceBudget: null,
    backends: [
      { name: 'webgpu', deviceLimit: 80 * GiB, deviceName: 'GPU memory', maxTensorBytes },
      { name: 'cpu', deviceLimit: null, deviceName: 'RAM' },
    ],
  });
  const full: PlanTask = { kind: 'train', method: 'full', trainableLayers: Array.from({ length: 24 }, (_, i) => i), batch: 1, seq: 128 };

  it('frozen embedding and head over the limit are no obstacle: chat and block-only tuning fit', () => {
    expect(planMemory(TINYLLAMA_X, chat(2048), gpu(128 * 2 ** 20)).fits).toBe(true);
    expect(planMemory(TINYLLAMA_X, blocks([11, 23], 1, 128), gpu(128 * 2 ** 20)).fits).toBe(true);
  });

  it('refuses full fine-tuning, which trains the 250 MiB head as one tensor, saying why; a limit above it fits', () => {
    const p = planMemory(TINYLLAMA_X, full, gpu(128 * 2 ** 20));
    expect(p.fits).toBe(false);
    expect(p.problems[0]).toBe('the LM head (250 MiB as float32) would train as one tensor, more than the 128 MiB this GPU can use whole; tune the new blocks, LoRA or the last blocks instead');
    expect(planMemory(TINYLLAMA_X, full, gpu(2 * GiB)).fits).toBe(true);
  });

  it("refuses a model whose block weights are each over the limit (they are not split): 2048 × 5632 floats is 44 MiB", () => {
    const p = planMemory(TINYLLAMA_X, chat(2048), gpu(32 * 2 ** 20));
    expect(p.fits).toBe(false);
    expect(p.problems).toContain("a block's largest weight (44 MiB as float32) is more than the 32 MiB this GPU can use as one tensor");
  });
});

describe("WebGPU: frozen blocks packed at their stored precision on the GPU", () => {
  /** Llama-2-7B: 32 blocks, hidden 4096, MLP 11008, 32 heads, vocab 32000, BF16 (13.5 GB) */
  const LLAMA7B = llama({ layers: 32, hidden: 4096, intermediate: 11008, heads: 32, kvHeads: 32, vocab: 32000, ctx: 4096 });
  /** …expanded 32 → 40 (8 new blocks, LLaMA Pro's recipe) */
  const LLAMA7B_X = llama({ layers: 40, hidden: 4096, intermediate: 11008, heads: 32, kvHeads: 32, vocab: 32000, ctx: 4096 });
  const newBlocks = [4, 9, 14, 19, 24, 29, 34, 39];
  const gpu = (memory: number, over: Partial<PlanLimits['backends'][number]> = {}): PlanLimits => ({
    ramAvailable: 16 * GiB,
    deviceBudget: null,
    backends: [
      { name: 'webgpu', deviceLimit: memory, deviceName: 'GPU memory', packedWeights: true, separateMemory: true, ...over },
      { name: 'cpu', deviceLimit: null, deviceName: 'RAM' },
    ],
  });
  const blockBytes = LLAMA7B.blocks[0].bytes; // 202 M parameters × 2 bytes

  it('a 7B model does not fit a 24 GiB GPU as float32 (27 GB) but does packed: every block, the embedding and head at BF16 there, RAM for one tensor', () => {
    const p = planMemory(LLAMA7B, chat(4096), gpu(24 * GiB));
    expect(p.fits).toBe(true);
    expect(p.residency.mode).toBe('packed');
    expect(p.residency.packed_blocks).toBe(32);
    expect(p.residency.plan.embed).toBe('packed');
    expect(p.residency.plan.head).toBe('packed');
    expect(residencyWords(p.residency)).toBe('packed — the embedding, the LM head and 32 blocks at stored precision on the GPU, widened when they compute');
    // on the GPU: the 32 blocks', the embedding's and the head's BF16 bytes, one widened block, activations, KV cache
    expect(p.device.need).toBeGreaterThan(32 * blockBytes + 2 * 32000 * 4096 * 2);
    expect(p.device.need).toBeLessThanOrEqual(24 * GiB * 0.9);
    // the GPU's memory is not RAM: the process needs its base and one tensor on its way there
    expect(p.ram.need).toBeLessThan(1 * GiB);
    // with 80 GiB it is resident float32 (the fastest), and packing is not used
    expect(planMemory(LLAMA7B, chat(4096), gpu(80 * GiB)).residency.mode).toBe('resident');
  });

  it('without packing (wasm, cpu) the same budget streams every block from RAM instead', () => {
    const p = planMemory(LLAMA7B, chat(4096), gpu(24 * GiB, { packedWeights: false }));
    expect(p.residency.mode).toBe('streamed');
    expect(p.residency.packed_blocks).toBe(0);
  });

  it('as many blocks as fit are packed, the others stream from RAM, in order', () => {
    const p = planMemory(LLAMA7B, chat(4096), gpu(12 * GiB));
    expect(p.fits).toBe(true);
    expect(p.residency.mode).toBe('packed');
    const k = p.residency.packed_blocks;
    // 10.8 GiB usable: the BF16 embedding and head (0.5 GB), a widened block, the 2 GiB KV cache
    // and the activations first, then 12 blocks of 404 MB (10 with a float32 embedding and head)
    expect(k).toBe(12);
    expect(p.residency.plan.blocks).toEqual([...new Array(k).fill('packed'), ...new Array(32 - k).fill('host')]);
    // one more packed block would not have fitted
    expect(p.device.need + blockBytes).toBeGreaterThan(12 * GiB * 0.9);
    // the streamed blocks' BF16 bytes are in RAM
    expect(p.ram.need).toBeGreaterThan((32 - k) * blockBytes);
  });

  it('the 7B 32 → 40 block-only step (8 new blocks, 1.62 B trainable) fits a 48 GiB GPU packed, not as float32', () => {
    const task = blocks(newBlocks, 1, 512);
    const p = planMemory(LLAMA7B_X, task, gpu(48 * GiB));
    expect(p.trainable!.params).toBe(8 * LLAMA7B.blocks[0].params);
    expect(p.fits).toBe(true);
    expect(p.residency.mode).toBe('packed');
    expect(p.residency.device_blocks).toBe(8);
    expect(p.residency.packed_blocks).toBe(32);
    newBlocks.forEach((i) => expect(p.residency.plan.blocks[i]).toBe('device'));
    // float32 frozen blocks would need 32 × 808 MB more than their 16-bit bytes: over 48 GiB
    expect(p.device.need + 32 * blockBytes).toBeGreaterThan(48 * GiB * 0.9);
    expect(planMemory(LLAMA7B_X, task, gpu(96 * GiB)).residency.mode).toBe('resident');
  });

  it('an odd hidden size (rows not whole 32-bit words) keeps the embedding and head float32; the blocks still pack', () => {
    const odd = llama({ layers: 32, hidden: 4095, intermediate: 11008, heads: 35, kvHeads: 35, vocab: 32000, ctx: 4096 });
    const p = planMemory(odd, chat(4096), gpu(24 * GiB));
    expect(p.residency.mode).toBe('packed');
    expect([p.residency.plan.embed, p.residency.plan.head]).toEqual(['device', 'device']);
    expect(residencyWords(p.residency)).toMatch(/^packed — 32 blocks at stored precision/);
  });

  it("a software adapter's buffers are RAM: packed blocks count against RAM there", () => {
    const limits: PlanLimits = { ...gpu(0), ramAvailable: 5 * GiB, backends: [{ name: 'webgpu', deviceLimit: null, deviceName: 'RAM (llvmpipe)', packedWeights: true }] };
    const p = planMemory(TINYLLAMA, chat(2048), limits);
    expect(p.fits).toBe(true);
    // TinyLlama as float32 (4.4 GB) does not fit 85% of 5 GiB with the rest; packed (2.2 GB) does
    expect(p.residency.mode).toBe('packed');
    expect(p.ram.need).toBeGreaterThan(p.device.need);
  });
});
