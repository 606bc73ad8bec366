/**
 * Fuzz: every untrusted file Blocklab reads, from generated hostile inputs (fast-check, seeded,
 * bounded). Each input must end in success or in a BlocklabError that names the file — never
 * another exception (a crash in the app), a hang, or unbounded memory. Targets: safetensors
 * headers and bodies, config.json, tokenizer.json + tokenizer_config.json (chat templates too),
 * corpora, benchmark files, notebook files.
 *
 * BLOCKLAB_FUZZ_SEED picks another seed, BLOCKLAB_FUZZ_SCALE multiplies the number of inputs
 * (the long run by hand: BLOCKLAB_FUZZ_SCALE=20). Each test reports its counts on stdout.
 */
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { BlocklabError } from '../../src/main/engine/errors.js';
import { demoDir } from '../../src/main/engine/resources.js';
import { testDir } from '../helpers/tmp.js';

const SEED = Number(process.env.BLOCKLAB_FUZZ_SEED ?? 20261202);
const SCALE = Number(process.env.BLOCKLAB_FUZZ_SCALE ?? 1);
const runs = (n: number) => Math.max(1, Math.round(n * SCALE));
/** Longest any one input may take: far above a normal parse; a hang detector, not a timing test. */
const HANG_MS = 20_000;
/** Growth of the heap over a whole target that counts as unbounded (inputs here are < 1 MB each). */
const HEAP_GROWTH_LIMIT = 512 * 1024 * 1024;

let root: string;
const BASE = join(demoDir(), 'base-model');

beforeAll(async () => {
  root = await testDir('fuzz-inputs');
});

interface Tally {
  ok: number;
  refused: number;
  slowestMs: number;
  messages: Set<string>;
}

/**
 * Runs `attempt` on every sample: it may succeed or throw a BlocklabError whose message names
 * `where(sample)`; anything else fails the test with the input that caused it.
 */
async function fuzz<T>(name: string, samples: T[], where: (s: T) => string, attempt: (s: T) => Promise<unknown>): Promise<Tally> {
  const tally: Tally = { ok: 0, refused: 0, slowestMs: 0, messages: new Set() };
  const heapBefore = process.memoryUsage().heapUsed;
  for (const [i, sample] of samples.entries()) {
    const t0 = performance.now();
    try {
      await attempt(sample);
      tally.ok++;
    } catch (e) {
      if (!(e instanceof BlocklabError)) {
        throw new Error(`${name} #${i}: ${(e as Error)?.stack ?? String(e)}\ninput: ${JSON.stringify(sample)?.slice(0, 2000)}`);
      }
      expect(e.message, `${name} #${i}: the error does not name the input`).toContain(where(sample));
      expect(e.message.length, `${name} #${i}: not one line`).toBeLessThan(2000);
      tally.refused++;
      tally.messages.add(e.message.replace(where(sample), '<input>').replace(/\d+/g, 'N').slice(0, 120));
    }
    const ms = performance.now() - t0;
    tally.slowestMs = Math.max(tally.slowestMs, ms);
    expect(ms, `${name} #${i} took ${ms} ms: ${JSON.stringify(sample)?.slice(0, 500)}`).toBeLessThan(HANG_MS);
  }
  const grew = process.memoryUsage().heapUsed - heapBefore;
  expect(grew, `${name}: the heap grew by ${grew} bytes`).toBeLessThan(HEAP_GROWTH_LIMIT);
  console.log(`fuzz ${name}: ${samples.length} inputs, ${tally.ok} accepted, ${tally.refused} refused (${tally.messages.size} distinct messages), slowest ${tally.slowestMs.toFixed(0)} ms`);
  return tally;
}

const sample = <T>(arb: fc.Arbitrary<T>, n: number, offset: number) => fc.sample(arb, { numRuns: runs(n), seed: SEED + offset });

/** JSON values that stress parsers: extremes, wrong types, nesting. */
const nastyNumber = fc.oneof(
  fc.constantFrom(0, -1, 1, 2, 3, 4, 64, 65, 1e9, 2e9, 2 ** 31, 2 ** 53, -(2 ** 53), 1e308, 0.5, -0.0, 1e-300),
  fc.integer({ min: -10, max: 5000 }),
);
const nastyValue: fc.Arbitrary<unknown> = fc.oneof(
  nastyNumber,
  fc.constantFrom(null, true, false, '', 'x', '64', [], {}, [1, 2], { a: 1 }),
  fc.string({ maxLength: 20 }),
);

describe('fuzz: untrusted files', () => {
  it('safetensors headers and bodies', async () => {
    const { readSafetensorsHeader, readTensorBytes } = await import('../../src/main/engine/safetensors.js');
    const dtype = fc.oneof(fc.constantFrom('F32', 'F16', 'BF16', 'I8', 'F64', 'U8', 'BOOL', ''), fc.string({ maxLength: 4 }), nastyNumber);
    const shape = fc.oneof(fc.array(nastyNumber, { maxLength: 4 }), nastyValue);
    const offsets = fc.oneof(fc.tuple(nastyNumber, nastyNumber), fc.array(nastyValue, { maxLength: 3 }), nastyValue);
    const tensor = fc.record({ dtype, shape, data_offsets: offsets }, { requiredKeys: [] });
    const header = fc.oneof(
      fc.dictionary(fc.oneof(fc.constantFrom('__metadata__', 'w', 'model.norm.weight'), fc.string({ maxLength: 6 })), fc.oneof(tensor, nastyValue), { maxKeys: 5 }),
      nastyValue,
    );
    // near-valid: one well-formed tensor whose fields are then bent one at a time
    const nearValid = fc
      .record({ rows: fc.integer({ min: 0, max: 4 }), cols: fc.integer({ min: 1, max: 4 }), bend: fc.constantFrom('none', 'dtype', 'shape', 'offsets', 'overlap', 'metadata'), value: nastyValue })
      .map(({ rows, cols, bend, value }) => {
        const bytes = rows * cols * 4;
        const t: Record<string, unknown> = { dtype: 'F32', shape: [rows, cols], data_offsets: [0, bytes] };
        const h: Record<string, unknown> = { w: t };
        if (bend === 'dtype') t.dtype = value;
        if (bend === 'shape') t.shape = [rows, value];
        if (bend === 'offsets') t.data_offsets = [0, value];
        if (bend === 'overlap') h.v = { dtype: 'F32', shape: [1], data_offsets: [0, 4] };
        if (bend === 'metadata') h.__metadata__ = { note: value };
        return JSON.stringify(h);
      });
    const file = fc.record({
      header: fc.oneof(nearValid, nearValid, header.map((h) => JSON.stringify(h)), fc.string({ maxLength: 40 }), fc.constant('{"a":'), fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b).toString('latin1'))),
      // the declared header length: right, or off in either direction, or absurd
      lengthDelta: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: -8, max: 8 }), fc.constantFrom(2 ** 40, -1_000_000)),
      body: fc.oneof(fc.constant(new Uint8Array(64)), fc.uint8Array({ maxLength: 256 })),
      truncate: fc.oneof(fc.constant(-1), fc.constant(-1), fc.integer({ min: 0, max: 16 })),
    });
    const inputs = sample(file, 300, 1);
    const path = (i: number) => join(root, `st-${i}.safetensors`);
    let n = 0;
    const withPaths = inputs.map((f) => ({ ...f, path: path(n++) }));
    await fuzz('safetensors', withPaths, (f) => f.path, async (f) => {
      const h = Buffer.from(f.header, 'utf8');
      const len = Buffer.alloc(8);
      const declared = h.length + f.lengthDelta;
      len.writeBigUInt64LE(BigInt(Math.max(0, declared)));
      let bytes = Buffer.concat([len, h, Buffer.from(f.body)]);
      if (f.truncate >= 0) bytes = bytes.subarray(0, f.truncate);
      await writeFile(f.path, bytes);
      const parsed = await readSafetensorsHeader(f.path);
      for (const info of parsed.tensors.values()) await readTensorBytes(info);
    });
  });

  it('config.json, against the weights present', async () => {
    const { openCheckpoint } = await import('../../src/main/engine/checkpoint.js');
    const real = JSON.parse(await readFile(join(BASE, 'config.json'), 'utf8')) as Record<string, unknown>;
    const keys = ['num_hidden_layers', 'hidden_size', 'intermediate_size', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'vocab_size', 'max_position_embeddings', 'rope_theta', 'rms_norm_eps', 'tie_word_embeddings', 'rope_scaling', 'architectures', 'hidden_act', 'sliding_window', 'attention_bias', 'bos_token_id', 'eos_token_id', 'blocklab_expansion'];
    const change = fc.dictionary(fc.constantFrom(...keys), fc.oneof(nastyValue, fc.constantFrom(['LlamaForCausalLM'], ['GPT2LMHeadModel'], { rope_type: 'llama3', factor: 8 }, { type: 'yarn' })), { maxKeys: 4 });
    const config = fc.oneof({ weight: 8, arbitrary: change.map((c) => JSON.stringify({ ...real, ...c })) }, { weight: 1, arbitrary: fc.string({ maxLength: 30 }) }, { weight: 1, arbitrary: nastyValue.map((v) => JSON.stringify(v)) });
    const model = join(root, 'config-model');
    await cp(BASE, model, { recursive: true });
    const file = join(model, 'config.json');
    await fuzz('config.json', sample(config, 250, 2), () => model, async (text) => {
      await writeFile(file, text);
      await openCheckpoint(model);
    });
  });

  it('tokenizer.json and tokenizer_config.json, chat templates included', async () => {
    const { HfTokenizer } = await import('../../src/main/engine/tokenizer.js');
    const realTok = JSON.parse(await readFile(join(BASE, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    const realCfg = JSON.parse(await readFile(join(BASE, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    const template = fc.oneof(
      fc.constantFrom(
        '{% for m in messages %}{{ m.content }}{% endfor %}',
        '{{ raise_exception("no") }}',
        '{% for i in range(10000000) %}x{% endfor %}',
        '{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}',
        '{{ messages[99].content }}',
        '{% set x = namespace(a=1) %}{{ x.b.c }}',
        '{{ "a" * 100000000 }}',
        '{% if %}',
        '{{ bos_token + eos_token }}',
        '{{ messages | tojson }}',
      ),
      fc.string({ maxLength: 40 }),
    );
    const tokModel = fc.record({ type: fc.constantFrom('BPE', 'WordPiece', 'Unigram', 'nope'), vocab: fc.oneof(fc.constant((realTok.model as { vocab: unknown }).vocab), nastyValue), merges: fc.oneof(fc.constant((realTok.model as { merges: unknown }).merges), nastyValue) }, { requiredKeys: [] });
    const input = fc.record({
      tokenizer: fc.oneof({ weight: 3, arbitrary: fc.constant(realTok) }, { weight: 2, arbitrary: tokModel.map((m) => ({ ...realTok, model: { ...(realTok.model as object), ...m } })) }, { weight: 1, arbitrary: fc.dictionary(fc.constantFrom('model', 'added_tokens', 'post_processor', 'pre_tokenizer', 'decoder', 'normalizer'), nastyValue, { maxKeys: 3 }).map((d) => ({ ...realTok, ...d })) }),
      config: fc.dictionary(fc.constantFrom('bos_token', 'eos_token', 'add_bos_token', 'add_eos_token', 'chat_template', 'additional_special_tokens', 'tokenizer_class', 'clean_up_tokenization_spaces'), fc.oneof(nastyValue, template, fc.constantFrom({ content: '<|x|>' }, [{ name: 'default', template: '{{ 1 }}' }])), { maxKeys: 4 }).map((d) => ({ ...realCfg, ...d })),
      text: fc.string({ maxLength: 30 }),
    });
    const dir = join(root, 'tok');
    await mkdir(dir, { recursive: true });
    await fuzz('tokenizer', sample(input, 120, 3), () => dir, async (t) => {
      const tok = HfTokenizer.fromJson(t.tokenizer, t.config, dir);
      const ids = tok.encode(t.text);
      tok.decode(ids.filter((id) => id < tok.vocabSize));
      if (tok.chatTemplate !== null) tok.applyChatTemplate([{ role: 'user', content: t.text }], { addGenerationPrompt: true });
    });
  }, 300_000);

  it('corpora: text, JSON lines and binary files', async () => {
    const { loadCorpus } = await import('../../src/main/engine/data.js');
    const { HfTokenizer } = await import('../../src/main/engine/tokenizer.js');
    const tok = await HfTokenizer.fromFolder(BASE);
    const line = fc.oneof(fc.string({ maxLength: 400 }).map((t) => JSON.stringify({ text: t })), fc.string({ maxLength: 400 }).map((t) => JSON.stringify({ text: t })), nastyValue.map((v) => JSON.stringify(v)), fc.string({ maxLength: 20 }), fc.constant('{"text": "unterminated'));
    const file = fc.oneof(
      fc.record({ ext: fc.constant('.jsonl'), bytes: fc.array(line, { maxLength: 30 }).map((l) => Buffer.from(l.join('\n'))) }),
      fc.record({ ext: fc.constantFrom('.txt', '.md', '.py'), bytes: fc.oneof(fc.string({ minLength: 200, maxLength: 3000 }).map((s) => Buffer.from(s.repeat(4))), fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b))) }),
    );
    const inputs = sample(fc.array(file, { minLength: 1, maxLength: 3 }), 60, 4);
    let k = 0;
    const cases = inputs.map((files) => ({ dir: join(root, `corpus-${k++}`), files }));
    await fuzz('corpus', cases, (c) => c.dir, async (c) => {
      await mkdir(c.dir, { recursive: true });
      const paths: string[] = [];
      for (const [i, f] of c.files.entries()) {
        const p = join(c.dir, `f${i}${f.ext}`);
        await writeFile(p, f.bytes);
        paths.push(p);
      }
      await loadCorpus({ paths }, tok, { seqLen: 16, seed: 0, cacheDir: join(root, 'corpus-cache'), tokenizerFingerprint: 'fuzz', eosId: tok.eosTokenIds[0] ?? 0 });
    });
  });

  it('benchmark files (lm-evaluation-harness JSON lines, header lines, sidecars)', async () => {
    const { loadBenchmark } = await import('../../src/main/engine/benchmarks.js');
    const header = fc.record({ name: fc.oneof(fc.string({ maxLength: 10 }), nastyValue), kind: fc.oneof(fc.constantFrom('multiple_choice', 'perplexity', 'generation', 'x'), nastyValue), domain: fc.oneof(fc.string({ maxLength: 8 }), nastyValue), role: fc.oneof(fc.constantFrom('old', 'new', 'x'), nastyValue), target_delimiter: nastyValue, fewshot_split: nastyValue }, { requiredKeys: [] });
    const item = fc.record({ context: nastyValue, query: nastyValue, choices: fc.oneof(fc.array(fc.string({ maxLength: 6 }), { maxLength: 4 }), nastyValue), gold: nastyValue, text: nastyValue, prompt: nastyValue, answer: nastyValue, until: nastyValue, regex: fc.oneof(fc.constantFrom('(a+)+$', '[', '\\d+', '(?<x>.)'), nastyValue) }, { requiredKeys: [] });
    const line = fc.oneof({ weight: 6, arbitrary: item.map((i) => JSON.stringify(i)) }, { weight: 1, arbitrary: header.map((h) => JSON.stringify({ blocklab_benchmark: h })) }, { weight: 1, arbitrary: fc.string({ maxLength: 20 }) });
    const bench = fc.record({ lines: fc.array(line, { maxLength: 12 }), sidecar: fc.option(header.map((h) => JSON.stringify({ blocklab_benchmark: h })), { nil: undefined }) });
    let k = 0;
    const cases = sample(bench, 250, 5).map((b) => ({ ...b, file: join(root, `bench-${k++}.jsonl`) }));
    // the error may name the .jsonl or its sidecar .json: both are this input
    await fuzz('benchmark', cases, (b) => b.file.replace(/\.jsonl$/, ''), async (b) => {
      await writeFile(b.file, b.lines.join('\n'));
      if (b.sidecar !== undefined) await writeFile(b.file.replace(/\.jsonl$/, '.json'), b.sidecar);
      else await rm(b.file.replace(/\.jsonl$/, '.json'), { force: true });
      await loadBenchmark(b.file);
    });
  });

  it('notebook files', async () => {
    const { parseNotebookFile, CELL_KINDS } = await import('../../src/shared/notebook.js');
    const goodCell = fc.record({ id: fc.stringMatching(/^[a-z0-9]{1,8}$/), kind: fc.constantFrom(...CELL_KINDS), source: fc.string({ maxLength: 30 }), state: fc.dictionary(fc.constantFrom('path', 'x', 'y'), nastyValue, { maxKeys: 3 }) });
    const badCell = fc.record({ id: fc.oneof(fc.constantFrom('a', 'b', '../../x', '', 'a'.repeat(65)), fc.string({ maxLength: 8 })), kind: fc.oneof(fc.constantFrom(...CELL_KINDS, 'shell'), nastyValue), source: fc.oneof(fc.string({ maxLength: 30 }), nastyValue), state: fc.oneof(fc.dictionary(fc.constantFrom('__id', 'path', 'x', '__proto__', 'constructor'), nastyValue, { maxKeys: 3 }), nastyValue) }, { requiredKeys: [] });
    const cell = fc.oneof(goodCell, goodCell, goodCell, badCell);
    const file = fc.oneof(
      { weight: 6, arbitrary: fc.record({ format: fc.oneof(fc.constant('blocklab-notebook'), fc.constant('blocklab-notebook'), nastyValue), version: fc.oneof(fc.constant(1), fc.constant(1), nastyValue), name: fc.oneof(fc.string({ minLength: 1, maxLength: 12 }), nastyValue), cells: fc.oneof(fc.array(cell, { maxLength: 4 }), fc.array(cell, { maxLength: 4 }), nastyValue) }, { requiredKeys: ['format', 'version', 'name', 'cells'] }).map((f) => JSON.stringify(f)) },
      { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max: 200 }).map((d) => '['.repeat(d * 1000)) },
    );
    const cases = sample(file, 400, 6);
    let ok = 0;
    let refused = 0;
    for (const [i, text] of cases.entries()) {
      try {
        parseNotebookFile(text, 'fuzz.blocklab.json');
        ok++;
      } catch (e) {
        expect(e, `#${i}`).toBeInstanceOf(Error);
        expect((e as Error).message, `#${i}: ${text.slice(0, 200)}`).toMatch(/^fuzz\.blocklab\.json/);
        refused++;
      }
    }
    console.log(`fuzz notebook: ${cases.length} inputs, ${ok} accepted, ${refused} refused`);
  });
});
