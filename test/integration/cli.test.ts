/**
 * The CLI contract (DESIGN.md §4) as a user meets it: the real `blocklab` command spawned
 * with node, stdout / stderr / exit code captured. With --json, stdout is exactly one JSON
 * document; refusals exit 1 with one line on stderr and write nothing.
 *
 * Spawning costs about 1.5 s a call, so the file makes one small 4-layer checkpoint and
 * builds on it (expand → inspect, export → inspect), and runs independent calls side by side.
 */
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { oneJson, runCli, stackLines, stderrLines, type CliResult } from '../helpers/cli-runner.js';
import { testDir } from '../helpers/tmp.js';

const TINY = ['--layers', '4', '--hidden', '32', '--heads', '4', '--kv-heads', '2', '--intermediate', '64', '--seed', '3'];
const VOCAB = 261; // the tiny byte-level tokenizer: 256 bytes + 5 special tokens

let root: string;
let base: string;
let expanded: string;

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/** Every file of a folder with its bytes, to prove a refused command changed nothing. */
async function snapshot(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const f of (await readdir(dir)).sort()) out.set(f, await readFile(join(dir, f)));
  return out;
}

/** A refusal: exit code 1, exactly one line on stderr (no stack trace), nothing on stdout. */
function expectRefusal(r: CliResult, match: RegExp): string {
  expect(r.code, r.stderr).toBe(1);
  const lines = stderrLines(r).filter((l) => !l.startsWith('expanding '));
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^blocklab: /);
  expect(lines[0]).toMatch(match);
  expect(stackLines(r.stderr)).toEqual([]);
  expect(r.stdout).toBe('');
  return lines[0];
}

/** stdout of a failed --json command: exactly {"error": "..."}; returns the message. */
function expectJsonError(r: CliResult): string {
  expect(r.stdout.trimEnd().split('\n')).toHaveLength(1);
  const doc = oneJson<{ error: string }>(r);
  expect(Object.keys(doc)).toEqual(['error']);
  expect(typeof doc.error).toBe('string');
  return doc.error;
}

/** One JSON document and nothing else on stdout: one line, parsed whole. */
function expectOneJsonDoc<T = Record<string, unknown>>(r: CliResult): T {
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout.endsWith('\n')).toBe(true);
  expect(r.stdout.trimEnd().split('\n')).toHaveLength(1);
  return oneJson<T>(r);
}


beforeAll(async () => {
  root = await testDir('cli');
  base = join(root, 'base');
  expanded = join(root, 'expanded');
  const r = await runCli(['make-tiny', '--out', base, ...TINY, '--json']);
  const doc = expectOneJsonDoc<{ out: string; config: Record<string, unknown> }>(r);
  expect(doc.out).toBe(base);
  expect(doc.config).toMatchObject({
    architectures: ['LlamaForCausalLM'],
    num_hidden_layers: 4,
    hidden_size: 32,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    intermediate_size: 64,
    vocab_size: VOCAB,
    torch_dtype: 'float32',
  });
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) expect(await exists(join(base, f))).toBe(true);
});

describe('blocklab CLI', () => {
  it('--help exits 0 and lists every command; doctor --json reports the backend', async () => {
    const [help, doctor] = await Promise.all([runCli(['--help']), runCli(['doctor', '--json'])]);
    expect(help.code, help.stderr).toBe(0);
    for (const cmd of ['inspect', 'expand', 'score', 'generate', 'export', 'doctor', 'make-tiny']) {
      expect(help.stdout).toMatch(new RegExp(`^\\s+${cmd} `, 'm'));
    }
    const d = expectOneJsonDoc<{ active: string; tfjsBackend: string; candidates: { name: string; available: boolean; note: string }[]; node: string; platform: string }>(doctor);
    expect(typeof d.active).toBe('string');
    expect(d.candidates.length).toBeGreaterThan(1);
    const active = d.candidates.find((c) => c.name === d.active);
    expect(active?.available).toBe(true);
    expect(d.node).toBe(process.version);
    expect(d.platform).toBe(`${process.platform}-${process.arch}`);
  });

  it('expand --json prints the new layers and a passed identity check; inspect --json shows the expansion record', async () => {
    const r = await runCli(['expand', base, '--out', expanded, '--blocks', '2', '--json']);
    const doc = expectOneJsonDoc<{
      out: string;
      placement: string;
      original_layers: number;
      total_layers: number;
      new_layers: number[];
      sources: number[];
      identity_check: { max_abs_logit_diff: number; max_abs_logit: number; tolerance: number; probe_tokens: number; passed: boolean };
      bytes: number;
    }>(r);
    expect(doc).toMatchObject({ out: expanded, placement: 'interleave', original_layers: 4, total_layers: 6, new_layers: [2, 5], sources: [1, 3] });
    expect(doc.identity_check.passed).toBe(true);
    // a new block adds exact zeros: the logits are the base's bit for bit (measured 0)
    expect(doc.identity_check.max_abs_logit_diff).toBe(0);
    expect(doc.identity_check.tolerance).toBeGreaterThan(0);
    expect(doc.identity_check.max_abs_logit).toBeGreaterThan(0);
    expect(doc.identity_check.probe_tokens).toBeGreaterThan(1);
    expect(doc.bytes).toBeGreaterThan(0);

    const info = expectOneJsonDoc<{ layers: number; architecture: string; dtype: string; vocab_size: number; tokenizer: { vocabSize: number } | null; expansion: Record<string, unknown> | null }>(
      await runCli(['inspect', expanded, '--json']),
    );
    expect(info.layers).toBe(6);
    expect(info.architecture).toBe('LlamaForCausalLM');
    expect(info.dtype).toBe('F32');
    expect(info.vocab_size).toBe(VOCAB);
    expect(info.tokenizer?.vocabSize).toBe(VOCAB);
    expect(info.expansion).toMatchObject({
      method: 'llama-pro-block-expansion',
      placement: 'interleave',
      original_layers: 4,
      new_layers: [2, 5],
      sources: [1, 3],
      original_index: [0, 1, null, 2, 3, null],
    });
  });

  it('expand --placement interleave --blocks 3 on 4 layers is refused, naming 1, 2, 4, and writes nothing', async () => {
    const parent = join(root, 'refused');
    const out = join(parent, 'three');
    const r = await runCli(['expand', base, '--out', out, '--placement', 'interleave', '--blocks', '3']);
    const line = expectRefusal(r, /interleave/);
    expect(line).toMatch(/\b1, 2, 4\b/);
    expect(await exists(out)).toBe(false);
    // no temporary folder left behind either
    if (await exists(parent)) expect(await readdir(parent)).toEqual([]);
  });

  it('score --text-file and --ids-file give the same per-token NLL for the same ids', async () => {
    const textFile = join(root, 'text.txt');
    await writeFile(textFile, 'The committee met on Tuesday. def f(x): return x * 2\n');
    const fromText = expectOneJsonDoc<{ ids: number[]; nll: number[]; mean_nll: number }>(await runCli(['score', base, '--text-file', textFile, '--json']));
    expect(fromText.ids.length).toBeGreaterThan(10);
    expect(fromText.ids.every((id) => Number.isInteger(id) && id >= 0 && id < VOCAB)).toBe(true);
    expect(fromText.nll).toHaveLength(fromText.ids.length - 1);
    expect(fromText.nll.every((x) => Number.isFinite(x) && x > 0)).toBe(true);
    const mean = fromText.nll.reduce((a, b) => a + b, 0) / fromText.nll.length;
    expect(fromText.mean_nll).toBeCloseTo(mean, 10);
    // a random model over 261 tokens: the NLL is near log(261) ≈ 5.56, not 0 and not huge
    expect(fromText.mean_nll).toBeGreaterThan(2);
    expect(fromText.mean_nll).toBeLessThan(12);

    const idsFile = join(root, 'ids.json');
    await writeFile(idsFile, JSON.stringify(fromText.ids));
    // without --json the output is the same JSON document (score's output is always JSON)
    const fromIds = expectOneJsonDoc<{ ids: number[]; nll: number[]; mean_nll: number }>(await runCli(['score', base, '--ids-file', idsFile]));
    expect(fromIds.ids).toEqual(fromText.ids);
    expect(fromIds.nll).toHaveLength(fromText.nll.length);
    const maxDiff = Math.max(...fromIds.nll.map((x, i) => Math.abs(x - fromText.nll[i])));
    expect(maxDiff).toBeLessThan(1e-6);
    expect(fromIds.mean_nll).toBeCloseTo(fromText.mean_nll, 6);
  });

  it('generate: greedy output is the same streamed and as --json, and does not depend on the seed', async () => {
    const args = ['generate', base, '--prompt', 'Once upon a time', '--max-tokens', '12', '--temperature', '0'];
    const [streamed, json] = await Promise.all([runCli([...args, '--seed', '1']), runCli([...args, '--seed', '2', '--json'])]);
    const doc = expectOneJsonDoc<{
      text: string;
      ids: number[];
      finish_reason: string;
      prompt_tokens: number;
      generated_tokens: number;
      prefill_tokens_per_second: number;
      decode_tokens_per_second: number;
      backend: string;
    }>(json);
    expect(typeof doc.text).toBe('string');
    expect(['length', 'eos']).toContain(doc.finish_reason);
    expect(doc.ids.length).toBe(doc.generated_tokens);
    if (doc.finish_reason === 'length') expect(doc.ids).toHaveLength(12);
    expect(doc.ids.every((id) => Number.isInteger(id) && id >= 0 && id < VOCAB)).toBe(true);
    expect(doc.prompt_tokens).toBeGreaterThan(1);
    expect(doc.prefill_tokens_per_second).toBeGreaterThan(0);
    expect(Number.isFinite(doc.decode_tokens_per_second)).toBe(true);
    expect(typeof doc.backend).toBe('string');

    // streamed: the text on stdout (then a newline), the summary on stderr
    expect(streamed.code, streamed.stderr).toBe(0);
    expect(streamed.stdout).toBe(doc.text + '\n');
    expect(streamed.stderr).toMatch(/tokens/);
    expect(stackLines(streamed.stderr)).toEqual([]);
  });

  it('generate at temperature 1: the same seed reproduces, another seed samples differently', async () => {
    const args = ['generate', base, '--prompt', 'Hello', '--max-tokens', '16', '--temperature', '1', '--top-p', '1', '--json'];
    const [a, again, b] = await Promise.all([runCli([...args, '--seed', '11']), runCli([...args, '--seed', '11']), runCli([...args, '--seed', '12'])]);
    const [docA, docAgain, docB] = [a, again, b].map((r) => expectOneJsonDoc<{ text: string; ids: number[] }>(r));
    expect(docAgain.ids).toEqual(docA.ids);
    expect(docAgain.text).toBe(docA.text);
    expect(docA.ids.length).toBeGreaterThan(0);
    expect(docB.ids.length).toBeGreaterThan(0);
    // 16 draws from a nearly flat distribution over 261 tokens: two seeds agree with odds ~0
    expect(docB.ids).not.toEqual(docA.ids);
  });

  it('export --format hf --dtype bf16 then inspect shows BF16 (and keeps the expansion record)', async () => {
    const out = join(root, 'bf16');
    const doc = expectOneJsonDoc<{ out: string; format: string; dtype: string; files: string[]; bytes: number }>(
      await runCli(['export', expanded, '--format', 'hf', '--dtype', 'bf16', '--out', out, '--json']),
    );
    expect(doc).toMatchObject({ out, format: 'hf', dtype: 'BF16' });
    expect(doc.files).toEqual(expect.arrayContaining(['config.json', 'model.safetensors', 'tokenizer.json']));
    expect(doc.bytes).toBeGreaterThan(0);
    expect(JSON.parse(await readFile(join(out, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');

    // the human-readable inspect
    const info = await runCli(['inspect', out]);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toMatch(/BF16/);
    expect(info.stdout).toMatch(/2←1, 5←3/);
    expect(info.stdout).not.toMatch(/^\s*\{/); // not JSON without --json
  });

  it('export --format gguf --dtype bf16 is refused in one line and writes nothing (GGUF takes f32, f16, q8_0, q4_0 or q4_k_m)', async () => {
    const out = join(root, 'model.gguf');
    const line = expectRefusal(await runCli(['export', base, '--format', 'gguf', '--dtype', 'bf16', '--out', out]), /GGUF/);
    expect(line).toMatch(/f32, f16, q8_0, q4_0 or q4_k_m/);
    expect(await exists(out)).toBe(false);
  });

  it('a usage error (unknown option) is one line too, and with --json the one JSON document is {"error"}', async () => {
    const r = await runCli(['inspect', base, '--frobnicate', '--json']);
    expect(r.code).toBe(1);
    const lines = stderrLines(r);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^blocklab: unknown option '--frobnicate'; see blocklab inspect --help$/);
    expect(expectJsonError(r)).toBe(lines[0].slice('blocklab: '.length));
  });

  it('writing over an existing non-empty --out without --overwrite is refused and leaves it as it was', async () => {
    const before = await snapshot(expanded);
    const line = expectRefusal(await runCli(['export', base, '--format', 'hf', '--out', expanded]), /already exists/);
    expect(line).toContain(expanded);
    expect(line).toMatch(/--overwrite/);
    const after = await snapshot(expanded);
    expect([...after.keys()]).toEqual([...before.keys()]);
    for (const [f, bytes] of before) expect(after.get(f)!.equals(bytes), f).toBe(true);
    expect((await readdir(root)).filter((n) => n.startsWith('.'))).toEqual([]); // no temporary folders
  });
});
