/**
 * lm-evaluation-harness scoring against numbers worked out by hand, with no model: a character
 * tokenizer and a unigram "model" whose log-probabilities the test sets, behind the same
 * TokenScorer / TextGenerator interfaces the tfjs model implements. Also the task-file format
 * (header line, sidecar, inferred kind; every error naming file and line) and the store rows.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  buildContext,
  countBytes,
  countWords,
  encodePair,
  evaluateBenchmark,
  extractAnswer,
  fewshotIndices,
  functionScorer,
  listBuiltinBenchmarks,
  loadBenchmark,
  loadFewshotSplit,
  meanStderr,
  perplexityMetrics,
  bitsPerByteStderr,
  requestInput,
  resolveBenchmarkSpec,
  rollingWindows,
  type Benchmark,
  type EvalTokenizer,
  type ItemDetail,
  type TextGenerator,
} from '../../src/main/engine/benchmarks.js';
import { BlocklabError } from '../../src/main/engine/errors.js';
import { ExperimentStore } from '../../src/main/store/index.js';
import { findBenchmark, getEvalResults, listBenchmarks, registerBenchmark, saveEvalResults } from '../../src/main/store/evals.js';
import { testDir } from '../helpers/tmp.js';

// ---------------------------------------------------------------------------------------------
// A character tokenizer and a unigram model

const ALPHABET = '\u0000 abcdeéQ:?\n#0123456789xyz.'; // id = index; id 0 is BOS
const V = [...ALPHABET].length;
const BOS = 0;

const charTok: EvalTokenizer = {
  encode: (text) =>
    [...text].map((c) => {
      const i = [...ALPHABET].indexOf(c);
      if (i < 0) throw new Error(`test alphabet lacks ${JSON.stringify(c)}`);
      return i;
    }),
  prefixIds: [BOS],
  prefixTokenId: BOS,
};
const id = (c: string) => [...ALPHABET].indexOf(c);

/** log p(token) regardless of context; probabilities of unlisted tokens share what is left. */
function unigram(probs: Record<string, number>): Float64Array {
  const lp = new Float64Array(V);
  const listed = Object.values(probs).reduce((a, b) => a + b, 0);
  const rest = (1 - listed) / (V - Object.keys(probs).length);
  for (let i = 0; i < V; i++) lp[i] = Math.log(rest);
  for (const [c, p] of Object.entries(probs)) lp[id(c)] = Math.log(p);
  return lp;
}

const UNI = unigram({ ' ': 0.5, é: 0.1, c: 0.3, a: 0.05 });
const uniScorer = functionScorer(() => UNI, 64);
const ls = Math.log(0.5);
const le = Math.log(0.1);
const lc = Math.log(0.3);
const la = Math.log(0.05);

let dir: string;
beforeAll(async () => {
  dir = await testDir('eval-unit');
});

async function writeTask(name: string, lines: unknown[], raw?: string): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, raw ?? lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  return file;
}

async function expectError(p: Promise<unknown>, match: RegExp): Promise<string> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(BlocklabError);
  const msg = (e as Error).message;
  expect(msg).toMatch(match);
  expect(msg).not.toContain('\n');
  return msg;
}

// ---------------------------------------------------------------------------------------------

describe('multiple choice (harness loglikelihood, acc, acc_norm, stderr)', () => {
  it('encodes (context, " " + choice) by splitting the whole encoding at the context length, trailing spaces moved', () => {
    expect(encodePair(charTok, 'Q:', ' a')).toEqual({ context: [BOS, id('Q'), id(':')], continuation: [id(' '), id('a')] });
    // a context ending in whitespace gives it to the continuation (harness _encode_pair)
    expect(encodePair(charTok, 'Q: ', 'a')).toEqual({ context: [BOS, id('Q'), id(':')], continuation: [id(' '), id('a')] });
    // an empty context is the prefix token alone
    expect(encodePair(charTok, '', 'ab')).toEqual({ context: [BOS], continuation: [id('a'), id('b')] });
  });

  it('scores acc by the summed log-likelihood and acc_norm per character of the choice (not per byte, not counting the delimiter)', async () => {
    const file = await writeTask('mc.jsonl', [
      { blocklab_benchmark: { name: 'mc', kind: 'multiple_choice' } },
      // " é": ls + le = −2.996; " cc": ls + 2·lc = −3.101 → acc picks é (0).
      // per character: −2.996 / 1 vs −3.101 / 2 = −1.550 → cc (1). Per byte it would be −1.498 vs −1.550 → é.
      { context: 'Q:', choices: ['é', 'cc'], gold: 1 },
      // " a": ls + la = −3.689; " c": ls + lc = −1.897 → both pick c (1); gold 0 → 0 and 0
      { context: 'Q:', choices: ['a', 'c'], gold: 0 },
      // a tie between identical choices goes to the first (numpy argmax)
      { query: 'Q:', choices: ['c', 'c'], gold: 0 },
    ]);
    const bench = await loadBenchmark(file);
    const r = await evaluateBenchmark(bench, { scorer: uniScorer, tokenizer: charTok });
    const d = r.details as Extract<ItemDetail, { kind: 'multiple_choice' }>[];
    expect(d[0].lls[0]).toBeCloseTo(ls + le, 12);
    expect(d[0].lls[1]).toBeCloseTo(ls + 2 * lc, 12);
    expect([d[0].pred, d[0].predNorm]).toEqual([0, 1]);
    expect(d[1].lls).toEqual([ls + la, ls + lc].map((x) => expect.closeTo(x, 12)));
    expect([d[1].pred, d[1].predNorm]).toEqual([1, 1]);
    expect([d[2].pred, d[2].predNorm]).toEqual([0, 0]);
    // acc = [0, 0, 1]: mean 1/3; sample variance ((1/3)²·2 + (2/3)²) / 2 = 1/3; stderr = sqrt(1/3 / 3) = 1/3
    // acc_norm = [1, 0, 1]: mean 2/3, same spread
    expect(r.n).toBe(3);
    expect(r.metrics).toEqual([
      { metric: 'acc', value: expect.closeTo(1 / 3, 12), stderr: expect.closeTo(1 / 3, 12) },
      { metric: 'acc_norm', value: expect.closeTo(2 / 3, 12), stderr: expect.closeTo(1 / 3, 12) },
    ]);
  });

  it('limits to the first N items; stderr is null below two items', async () => {
    const bench = await loadBenchmark(join(dir, 'mc.jsonl'));
    const r = await evaluateBenchmark(bench, { scorer: uniScorer, tokenizer: charTok, limit: 1 });
    expect(r.n).toBe(1);
    expect(r.metrics[0]).toEqual({ metric: 'acc', value: 0, stderr: null });
    expect(meanStderr([1, 0, 1, 1])).toBeCloseTo(Math.sqrt(0.25 / 4), 12);
  });

  it('cuts over-long inputs from the left as the harness does: (ctx + cont)[-(L+1):][:-1]', async () => {
    expect(requestInput({ context: [1, 2, 3, 4], continuation: [5, 6] }, 3)).toEqual({ input: [3, 4, 5], targets: [5, 6] });
    const seen: number[][] = [];
    const spy = functionScorer((prefix) => (seen.push([...prefix]), UNI), 3);
    await spy.loglikelihood([{ context: [1, 2, 3, 4], continuation: [5, 6] }]);
    expect(seen).toEqual([[3, 4], [3, 4, 5]]);
  });
});

describe('few-shot', () => {
  it('is deterministic, never the item itself, the same whatever --limit is, and formatted like the harness', async () => {
    const a = fewshotIndices(10, 3, 1234, 4, (i) => i === 4);
    expect(a).toHaveLength(3);
    expect(new Set(a).size).toBe(3);
    expect(a).not.toContain(4);
    expect(fewshotIndices(10, 3, 1234, 4, (i) => i === 4)).toEqual(a);
    expect(fewshotIndices(10, 3, 99, 4, (i) => i === 4)).not.toEqual(a); // another seed, other shots (here)
    expect(() => fewshotIndices(3, 3, 1, 0, (i) => i === 0)).toThrow(/only 2 are available/);

    const file = await writeTask('fs.jsonl', [
      { blocklab_benchmark: { name: 'fs', kind: 'multiple_choice' } },
      { context: 'Q:a?', choices: ['x', 'y'], gold: 0 },
      { context: 'Q:b?', choices: ['x', 'y'], gold: 1 },
    ]);
    const bench = await loadBenchmark(file);
    // one shot from the same file: the other item, as context + " " + gold + "\n\n", then the item
    expect(buildContext(bench, 0, { shots: 1, seed: 1234 })).toBe('Q:b? y\n\nQ:a?');
    expect(buildContext(bench, 1, { shots: 1, seed: 1234 })).toBe('Q:a? x\n\nQ:b?');

    // with --limit 1 the first item still draws from the whole file
    const scored: number[][] = [];
    const spy = functionScorer((p) => (scored.push([...p]), UNI), 64);
    await evaluateBenchmark(bench, { scorer: spy, tokenizer: charTok, shots: 1, limit: 1 });
    expect(scored[0]).toEqual([BOS, ...charTok.encode('Q:b? y\n\nQ:a?')]);
  });

  it('draws from the fewshot_split file when the header names one', async () => {
    await writeTask('train.jsonl', [{ context: 'Q:z?', choices: ['c'], gold: 0 }]);
    const file = await writeTask('withsplit.jsonl', [
      { blocklab_benchmark: { name: 'ws', kind: 'multiple_choice', fewshot_split: 'train.jsonl', fewshot_delimiter: '\n' } },
      { context: 'Q:a?', choices: ['x', 'y'], gold: 0 },
    ]);
    const bench = await loadBenchmark(file);
    const pool = await loadFewshotSplit(bench);
    expect(pool?.items).toHaveLength(1);
    expect(buildContext(bench, 0, { shots: 1, seed: 5, fewshot: pool })).toBe('Q:z? c\nQ:a?');
  });
});

describe('perplexity (loglikelihood_rolling)', () => {
  it('predicts every token exactly once, the first window with only the prefix token as context', async () => {
    const tokens = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19];
    const windows = rollingWindows(tokens, BOS, 4);
    expect(windows).toEqual([
      { context: [BOS], continuation: [10, 11, 12, 13] },
      { context: [13], continuation: [14, 15, 16, 17] },
      { context: [15, 16, 17], continuation: [18, 19] },
    ]);
    expect(windows.flatMap((w) => w.continuation)).toEqual(tokens);
    for (const w of windows) expect(requestInput(w, 4).input.length).toBeLessThanOrEqual(4);
    // what the model is asked, target by target
    const seen: number[][] = [];
    await functionScorer((p) => (seen.push([...p]), UNI), 4).loglikelihood(windows);
    expect(seen).toEqual([
      [BOS], [BOS, 10], [BOS, 10, 11], [BOS, 10, 11, 12],
      [13], [13, 14], [13, 14, 15], [13, 14, 15, 16],
      [15, 16, 17], [15, 16, 17, 18],
    ]);
    expect(rollingWindows([7, 8], BOS, 4)).toEqual([{ context: [BOS], continuation: [7, 8] }]);
    expect(rollingWindows([], BOS, 4)).toEqual([]);
  });

  it('computes word, byte, token perplexity and bits per byte from Σll over words (re.split), UTF-8 bytes and tokens', async () => {
    expect(countWords('a b  c')).toBe(3);
    expect(countWords(' a b ')).toBe(4); // the harness counts the empty ends of re.split
    expect(countBytes('é c')).toBe(4);
    const file = await writeTask('ppl.jsonl', [{ text: 'cé c' }, { text: ' a' }]); // no header: kind inferred
    const bench = await loadBenchmark(file);
    expect(bench.kind).toBe('perplexity');
    const r = await evaluateBenchmark(bench, { scorer: functionScorer(() => UNI, 3), tokenizer: charTok });
    const sumLl = 2 * lc + le + ls + (ls + la); // 'c','é',' ','c' + ' ','a'
    const words = 2 + 2; // "cé c" → 2; " a" → ['', 'a'] → 2
    const bytes = 5 + 2;
    const tokens = 4 + 2;
    const m = Object.fromEntries(r.metrics.map((x) => [x.metric, x]));
    expect(m.word_perplexity.value).toBeCloseTo(Math.exp(-sumLl / words), 10);
    expect(m.byte_perplexity.value).toBeCloseTo(Math.exp(-sumLl / bytes), 10);
    expect(m.bits_per_byte.value).toBeCloseTo(-sumLl / bytes / Math.LN2, 10);
    expect(m.token_perplexity.value).toBeCloseTo(Math.exp(-sumLl / tokens), 10);
    // the harness's N/A for the perplexities; bits per byte gets the ratio estimator's standard error over the two documents
    for (const x of r.metrics) if (x.metric !== 'bits_per_byte') expect(x.stderr).toBeNull();
    expect(m.bits_per_byte.stderr).toBeCloseTo(bitsPerByteStderr([2 * lc + le + ls, ls + la], [5, 2])!, 12);
    const d = r.details as Extract<ItemDetail, { kind: 'perplexity' }>[];
    expect(d.map((x) => x.windows)).toEqual([2, 1]); // 4 tokens in windows of 3
    expect(perplexityMetrics(-10, 0, 0, 0).every((x) => x.value === null)).toBe(true);
  });

  it('ignores --shots for perplexity benchmarks (the harness allows only 0)', async () => {
    const bench = await loadBenchmark(join(dir, 'ppl.jsonl'));
    const a = await evaluateBenchmark(bench, { scorer: uniScorer, tokenizer: charTok, shots: 3 });
    const b = await evaluateBenchmark(bench, { scorer: uniScorer, tokenizer: charTok });
    expect(a.metrics).toEqual(b.metrics);
  });
});

describe('generation (generate_until + regex + exact_match)', () => {
  it('extracts the first match, its first non-empty group, or "[invalid]", stripped', () => {
    const gsm = '#### (\\-?[0-9\\.\\,]+)'; // the harness default, Python syntax that JavaScript reads the same
    expect(extractAnswer('so #### 42 and #### 7', gsm)).toBe('42');
    expect(extractAnswer('no number', gsm)).toBe('[invalid]');
    expect(extractAnswer('xb', '(a)|(b)')).toBe('b');
    expect(extractAnswer('  the cat ', 'c.t')).toBe('cat');
    expect(extractAnswer('  the cat ', undefined)).toBe('the cat');
  });

  it('fails instead of hanging on a catastrophically backtracking regex, and explains Python named groups', () => {
    // ~2^40 backtracking steps: it returns at all only because the time limit stops it
    expect(() => extractAnswer('a'.repeat(40) + '!', '(a+)+$')).toThrow(/catastrophic backtracking/);
    expect(() => extractAnswer('x', '(?P<n>x)')).toThrow(/\(\?<name>…\) in JavaScript/);
  });

  it('cuts at the stop strings, applies item or benchmark regexes, and scores exact match with its stderr', async () => {
    const file = await writeTask('gen.jsonl', [
      { blocklab_benchmark: { name: 'gen', kind: 'generation', domain: 'math', regex: '#### (\\d+)', max_gen_tokens: 7 } },
      { prompt: 'Q:1?', answer: '12' },
      { prompt: 'Q:2?', answer: '3', until: ['.'] },
      { prompt: 'Q:3?', answer: 'ab', regex: 'x(\\w+)' },
      { prompt: 'Q:4?', answer: '5' },
    ]);
    const outputs: Record<string, string> = { 'Q:1?': ' #### 12\n\nQ: #### 99', 'Q:2?': '#### 4. #### 3', 'Q:3?': 'xab', 'Q:4?': 'no' };
    const seen: { until: string[]; maxTokens: number }[] = [];
    const generator: TextGenerator = async ({ context, until, maxTokens }) => {
      seen.push({ until, maxTokens });
      const prompt = [...context.slice(1)].map((i) => [...ALPHABET][i]).join('');
      return outputs[prompt];
    };
    const bench = await loadBenchmark(file);
    expect(bench.header.role).toBe('new'); // domain other than general
    const r = await evaluateBenchmark(bench, { scorer: uniScorer, tokenizer: charTok, generator });
    const d = r.details as Extract<ItemDetail, { kind: 'generation' }>[];
    expect(d.map((x) => x.extracted)).toEqual(['12', '4', 'ab', '[invalid]']);
    expect(d.map((x) => x.correct)).toEqual([true, false, true, false]);
    expect(seen[0]).toEqual({ until: ['\n\n'], maxTokens: 7 }); // default stop: the few-shot delimiter
    expect(seen[1].until).toEqual(['.']);
    // [1, 0, 1, 0]: mean 0.5, sample variance 1/3, stderr sqrt(1/12)
    expect(r.metrics).toEqual([{ metric: 'exact_match', value: 0.5, stderr: expect.closeTo(Math.sqrt(1 / 12), 12) }]);
  });
});

describe('task files', () => {
  it('reads the header from a sidecar NAME.json, or infers the kind', async () => {
    const file = await writeTask('side.jsonl', [{ context: 'Q:', choices: ['a'], gold: 0 }]);
    await writeFile(join(dir, 'side.json'), JSON.stringify({ blocklab_benchmark: { name: 'side-car', kind: 'multiple_choice', domain: 'code' } }));
    const b = await loadBenchmark(file);
    expect([b.header.name, b.header.domain, b.header.role, b.headerSource]).toEqual(['side-car', 'code', 'new', 'sidecar']);
    await writeFile(join(dir, 'bare.json'), JSON.stringify({ name: 'bare', kind: 'perplexity', role: 'old', domain: 'code' }));
    const bare = await loadBenchmark(await writeTask('bare.jsonl', [{ text: 'x' }]));
    expect([bare.header.name, bare.header.role, bare.headerSource]).toEqual(['bare', 'old', 'sidecar']);
    const inferred = await loadBenchmark(await writeTask('my task.jsonl', [{ prompt: 'p', answer: 'a' }]));
    expect([inferred.kind, inferred.header.name, inferred.header.domain, inferred.header.role]).toEqual(['generation', 'my_task', 'general', 'old']);
  });

  it('refuses bad files with one line naming the file and the line', async () => {
    const f = (name: string) => join(dir, name);
    await writeTask('gold.jsonl', [{ blocklab_benchmark: { name: 'g', kind: 'multiple_choice' } }, { context: 'a', choices: ['x'], gold: 0 }, { context: 'a', choices: ['x', 'y'], gold: 2 }]);
    await expectError(loadBenchmark(f('gold.jsonl')), /gold\.jsonl:3: "gold" is 2 but there are 2 choices/);
    await writeTask('json.jsonl', [], '{"text": "a"}\n\n{"text": oops}\n');
    await expectError(loadBenchmark(f('json.jsonl')), /json\.jsonl:3: is not valid JSON/);
    await writeTask('missing.jsonl', [{ blocklab_benchmark: { name: 'm', kind: 'multiple_choice' } }, { context: 'a', gold: 0 }]);
    await expectError(loadBenchmark(f('missing.jsonl')), /missing\.jsonl:2: "choices" is missing \(a multiple_choice item is/);
    await writeTask('kind.jsonl', [{ blocklab_benchmark: { name: 'k', kind: 'essay' } }, { text: 'a' }]);
    await expectError(loadBenchmark(f('kind.jsonl')), /kind\.jsonl:1: header: "kind"/);
    await writeTask('typo.jsonl', [{ blocklab_benchmark: { name: 'k', kind: 'perplexity', domian: 'code' } }, { text: 'a' }]);
    await expectError(loadBenchmark(f('typo.jsonl')), /typo\.jsonl:1: header: .*domian/);
    await writeTask('both.jsonl', [{ blocklab_benchmark: { name: 'b', kind: 'perplexity' } }, { text: 'a' }]);
    await writeFile(f('both.json'), JSON.stringify({ name: 'b', kind: 'perplexity' }));
    await expectError(loadBenchmark(f('both.jsonl')), /both\.jsonl: has a header line and a sidecar both\.json; keep one/);
    await writeTask('unknown.jsonl', [{ question: 'q' }]);
    await expectError(loadBenchmark(f('unknown.jsonl')), /unknown\.jsonl:1: cannot tell the benchmark kind/);
    await writeTask('re.jsonl', [{ blocklab_benchmark: { name: 'r', kind: 'generation' } }, { prompt: 'p', answer: 'a', regex: '(?P<x>\\d)' }]);
    await expectError(loadBenchmark(f('re.jsonl')), /re\.jsonl:2: "regex" is not a valid JavaScript regular expression.*\(\?<name>/);
    await writeTask('long.jsonl', [], JSON.stringify({ text: 'x'.repeat(1024 * 1024 + 10) }) + '\n');
    await expectError(loadBenchmark(f('long.jsonl')), /long\.jsonl:1: is \d+ characters long, more than/);
    await writeTask('empty.jsonl', [], '\n\n');
    await expectError(loadBenchmark(f('empty.jsonl')), /empty\.jsonl: has no items/);
    await writeFile(f('bin.jsonl'), Buffer.from([0x7b, 0xff, 0xfe, 0x7d]));
    await expectError(loadBenchmark(f('bin.jsonl')), /bin\.jsonl: is not valid UTF-8/);
    await expectError(loadBenchmark(f('nope.jsonl')), /nope\.jsonl: does not exist/);
    await writeTask('array.jsonl', [], '[1, 2]\n');
    await expectError(loadBenchmark(f('array.jsonl')), /cannot tell the benchmark kind/);
    await writeTask('type.jsonl', [{ text: ['a'] }]);
    await expectError(loadBenchmark(f('type.jsonl')), /type\.jsonl:1: "text" must be a string, not an array/);
    // problems found while scoring name the item too
    const longChoice = await loadBenchmark(await writeTask('longchoice.jsonl', [{ context: 'Q:', choices: ['c'], gold: 0 }, { context: 'Q:', choices: ['cccccc'], gold: 0 }]));
    await expectError(evaluateBenchmark(longChoice, { scorer: functionScorer(() => UNI, 4), tokenizer: charTok }), /longchoice\.jsonl:2: a continuation of 7 tokens is longer than the model's context \(4\)/);
    await writeTask('array2.jsonl', [{ blocklab_benchmark: { name: 'a', kind: 'perplexity' } }, [1]]);
    await expectError(loadBenchmark(f('array2.jsonl')), /array2\.jsonl:2: must be a JSON object; a perplexity item is \{"text": str\}/);
  });

  it('resolves builtin:NAME, listing what exists when the name is unknown or the folder is missing', async () => {
    const builtin = join(dir, 'builtin');
    await mkdir(builtin);
    await writeFile(join(builtin, 'general_ppl.jsonl'), '{"text": "a"}\n');
    await writeFile(join(builtin, 'code_mc.jsonl'), '{"context": "a", "choices": ["b"], "gold": 0}\n');
    expect(await listBuiltinBenchmarks(builtin)).toEqual(['code_mc', 'general_ppl']);
    expect(await resolveBenchmarkSpec('builtin:code_mc', builtin)).toBe(join(builtin, 'code_mc.jsonl'));
    await expectError(resolveBenchmarkSpec('builtin:nope', builtin), /no builtin benchmark "nope"; available: builtin:code_mc, builtin:general_ppl/);
    await expectError(resolveBenchmarkSpec('builtin:x', join(dir, 'absent')), /builtin benchmarks are not installed .*pass a task file path/);
  });
});

describe('store rows (benchmarks, eval_results)', () => {
  it('registers benchmarks by key, upserts results per (checkpoint, benchmark, metric), keeps non-finite values out', () => {
    const store = ExperimentStore.open(':memory:');
    try {
      const ck = store.registerCheckpoint({ path: '/tmp/ck', contentHash: 'h', madeBy: 'import' });
      const b1 = registerBenchmark(store, { name: 'mc@abc/0shot', kind: 'multiple_choice', domain: 'general', path: '/tmp/mc.jsonl', contentHash: 'abc', info: { role: 'old' } });
      expect(registerBenchmark(store, { name: 'mc@abc/0shot', kind: 'multiple_choice', domain: 'general', path: '/tmp/moved.jsonl', contentHash: 'abc' })).toBe(b1);
      expect(findBenchmark(store, 'mc@abc/0shot')?.path).toBe('/tmp/moved.jsonl');
      expect(() => registerBenchmark(store, { name: 'mc@abc/0shot', kind: 'multiple_choice', domain: 'general', path: '/x', contentHash: 'zzz' })).toThrow(/different contents/);
      const run = store.createRun({ kind: 'eval', config: {} });
      saveEvalResults(store, { runId: run, checkpointId: ck, benchmarkId: b1, metrics: [{ metric: 'acc', value: 0.5, stderr: 0.1, nItems: 10 }, { metric: 'acc_norm', value: NaN, stderr: Infinity, nItems: 10 }] });
      saveEvalResults(store, { runId: run, checkpointId: ck, benchmarkId: b1, metrics: [{ metric: 'acc', value: 0.75, stderr: 0.05, nItems: 12 }] });
      const rows = getEvalResults(store, { checkpointId: ck });
      expect(rows.map((r) => [r.metric, r.value, r.stderr, r.nItems, r.runId])).toEqual([
        ['acc', 0.75, 0.05, 12, run],
        ['acc_norm', null, null, 10, run],
      ]);
      expect(listBenchmarks(store)).toHaveLength(1);
    } finally {
      store.close();
    }
  });
});

// the Benchmark type is a union by kind; make sure a loaded file narrows
const _typecheck = (b: Benchmark) => (b.kind === 'multiple_choice' ? b.items[0].choices : b.kind === 'perplexity' ? b.items[0].text : b.items[0].answer);
void _typecheck;
