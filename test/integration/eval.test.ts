/**
 * Evaluation on tiny random checkpoints: the batched tfjs scorer against per-sequence
 * scoreIds (multiple choice and rolling perplexity, to 1e-4), rolling windows against the sum
 * of per-window NLLs computed directly, generation against the model's own greedy output, the
 * store round trip (results stored, reused, recomputed with force or when the files change)
 * and the signs of compareForgetting.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initTestBackend, TEST_BACKEND } from '../helpers/backend.js';
import { loadModel, makeTinyCheckpoint, scoreIds, type LoadedModel } from '../../src/main/engine/index.js';
import {
  compareForgetting,
  encodePair,
  evaluateLoaded,
  evalTokenizer,
  functionScorer,
  loadBenchmark,
  modelScorer,
  requestInput,
  rollingWindows,
  runEval,
  type EvalTokenizer,
  type ItemDetail,
  type LoglikelihoodRequest,
} from '../../src/main/engine/eval.js';
import { ExperimentStore } from '../../src/main/store/index.js';
import { getEvalResults, saveEvalResults } from '../../src/main/store/evals.js';
import { testDir } from '../helpers/tmp.js';

const MAX_POS = 32;
const TINY = { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, maxPositions: MAX_POS } as const;

let root: string;
let ckA: string;
let ckB: string;
let loaded: LoadedModel;
let tok: EvalTokenizer;
let mcFile: string;
let pplFile: string;
let genFile: string;

const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

beforeAll(async () => {
  await initTestBackend();
  root = await testDir('eval');
  ckA = join(root, 'a');
  ckB = join(root, 'b');
  await makeTinyCheckpoint(ckA, { ...TINY, seed: 3 });
  await makeTinyCheckpoint(ckB, { ...TINY, seed: 4 });
  loaded = await loadModel(ckA);
  tok = evalTokenizer(loaded.tokenizer!, loaded.checkpoint.config);
  expect(tok.prefixIds).toEqual([loaded.tokenizer!.bosTokenId]); // the tiny tokenizer adds BOS, so requests start with it
  mcFile = join(root, 'mc.jsonl');
  await writeFile(
    mcFile,
    jsonl([
      { blocklab_benchmark: { name: 'general_mc', kind: 'multiple_choice', domain: 'general' } },
      { context: 'The cat sat on the', choices: ['mat', 'hat and coat', 'sofa'], gold: 0 },
      { context: 'Two plus two is', choices: ['four', 'five'], gold: 0 },
      { context: 'def f(x):', choices: ['return x', 'pass', 'x = 1; return x + 1'], gold: 1 },
      { query: 'Sky:', choices: ['blue', 'green'], gold: 0 },
    ]),
  );
  pplFile = join(root, 'code_ppl.jsonl');
  await writeFile(
    pplFile,
    jsonl([
      { blocklab_benchmark: { name: 'code_ppl', kind: 'perplexity', domain: 'code' } },
      // 70 bytes → 70 byte tokens: three windows at --max-length 32
      { text: 'def mean(xs):\n    return sum(xs) / len(xs)\n\nprint(mean([1, 2, 3]))  ' },
      { text: 'x = 1' },
    ]),
  );
  genFile = join(root, 'gen.jsonl');
});

afterAll(() => loaded?.dispose());

/**
 * −Σ NLL of the continuation from one unbatched forward pass over context + continuation
 * (scoreIds). Its ids are the model input plus the last target, so requests are cut at
 * MAX_POS − 1 to fit the model.
 */
async function directLl(r: LoglikelihoodRequest): Promise<number> {
  const { input, targets } = requestInput(r, MAX_POS - 1);
  const ids = [...input, targets[targets.length - 1]];
  const { nll } = await scoreIds(loaded, ids);
  let ll = 0;
  for (let j = 0; j < targets.length; j++) ll -= nll[ids.length - 1 - targets.length + j];
  return ll;
}

describe('batched scoring', () => {
  it('gives every multiple-choice log-likelihood that unbatched scoreIds gives (padding, length buckets, any batch size)', async () => {
    const bench = await loadBenchmark(mcFile);
    if (bench.kind !== 'multiple_choice') throw new Error('kind');
    const requests = bench.items.flatMap((item) => item.choices.map((c) => encodePair(tok, item.context ?? item.query!, ' ' + c)));
    const expected = await Promise.all(requests.map(directLl));
    for (const batch of [1, 3, 16]) {
      const got = await modelScorer(loaded.model, { batch }).loglikelihood(requests);
      // measured ≤ 9.5e-7 (float32 rounding of padded batches)
      got.forEach((g, i) => expect(Math.abs(g.ll - expected[i]), `batch ${batch}, request ${i}`).toBeLessThan(1e-5));
    }
    // and the whole benchmark: acc/acc_norm from the same numbers
    const scores = await evaluateLoaded(loaded, bench, { batch: 5 });
    const lls = (scores.details as Extract<ItemDetail, { kind: 'multiple_choice' }>[]).flatMap((d) => d.lls);
    lls.forEach((ll, i) => expect(Math.abs(ll - expected[i])).toBeLessThan(1e-5));
  });

  it('marks a continuation greedy exactly when each token is the argmax (checked against a full-vocabulary reference)', async () => {
    // greedy continuations: take the model's own argmax tokens after a context
    const ctx = tok.encode('Hello');
    const greedy: number[] = [];
    let prefix = [tok.prefixTokenId, ...ctx];
    for (let i = 0; i < 3; i++) {
      const out = loaded.model.forward([prefix], { lastOnly: true });
      const row = Array.from(await out.data());
      out.dispose();
      const next = row.indexOf(Math.max(...row));
      greedy.push(next);
      prefix = [...prefix, next];
    }
    const reqs = [
      { context: [tok.prefixTokenId, ...ctx], continuation: greedy },
      { context: [tok.prefixTokenId, ...ctx], continuation: [greedy[0], (greedy[1] + 1) % 256, greedy[2]] },
    ];
    // the reference: a full forward pass over each prefix the scorer asks about, read back
    // before scoring (tensors are read asynchronously; functionScorer's callback is synchronous)
    const V = loaded.checkpoint.config.vocabSize;
    const rows = new Map<string, Float64Array>();
    for (const r of reqs) {
      const { input, targets } = requestInput(r, MAX_POS);
      for (let j = 0; j < targets.length; j++) {
        const p = input.slice(0, input.length - targets.length + j + 1);
        const out = loaded.model.forward([p]);
        const all = (await out.data()) as Float32Array;
        out.dispose();
        const row = all.slice((p.length - 1) * V, p.length * V);
        const max = Math.max(...row);
        const lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
        rows.set(p.join(','), Float64Array.from(row, (x) => x - lse));
      }
    }
    const reference = functionScorer((p) => rows.get(p.join(','))!, MAX_POS);
    const got = await modelScorer(loaded.model, { batch: 2 }).loglikelihood(reqs);
    const want = await reference.loglikelihood(reqs);
    expect(got.map((g) => g.greedy)).toEqual([true, false]);
    expect(want.map((g) => g.greedy)).toEqual([true, false]);
    got.forEach((g, i) => expect(Math.abs(g.ll - want[i].ll)).toBeLessThan(6e-6)); // measured 5.5e-7
  });

  it('scores a text longer than the context in rolling windows whose sum is the per-window NLLs computed directly', async () => {
    const bench = await loadBenchmark(pplFile);
    if (bench.kind !== 'perplexity') throw new Error('kind');
    const L = MAX_POS - 1;
    const tokens = tok.encode(bench.items[0].text);
    expect(tokens.length).toBeGreaterThan(2 * L);
    const windows = rollingWindows(tokens, tok.prefixTokenId, L);
    expect(windows).toHaveLength(Math.ceil(tokens.length / L));
    expect(windows.flatMap((w) => w.continuation)).toEqual(tokens);
    const direct = (await Promise.all(windows.map(directLl))).reduce((a, b) => a + b, 0);
    const scores = await evaluateLoaded(loaded, bench, { batch: 2, maxLength: L });
    const d = scores.details as Extract<ItemDetail, { kind: 'perplexity' }>[];
    expect(d[0].windows).toBe(windows.length);
    expect(d[0].tokens).toBe(tokens.length);
    expect(Math.abs(d[0].ll - direct)).toBeLessThan(1e-6); // measured 0: the same windows, scored alike
    // the metrics follow from Σll over both texts
    const second = await directLl(rollingWindows(tok.encode('x = 1'), tok.prefixTokenId, L)[0]);
    const sumLl = direct + second;
    const bytes = Buffer.byteLength(bench.items[0].text) + 5;
    const m = Object.fromEntries(scores.metrics.map((x) => [x.metric, x.value!]));
    // the same sums in the same order: measured 0 on wasm; on webgpu (llvmpipe) a batch of two
    // texts rounds differently from each scored alone (a matmul's tiling follows its shape):
    // measured 6.6e-8 in bits per byte
    const digits = TEST_BACKEND === 'webgpu' ? 6 : 9;
    expect(m.bits_per_byte).toBeCloseTo(-sumLl / bytes / Math.LN2, digits);
    expect(m.token_perplexity / Math.exp(-sumLl / (tokens.length + 5))).toBeCloseTo(1, digits);
    // a shorter --max-length makes more windows and still predicts every token once
    const short = await evaluateLoaded(loaded, bench, { maxLength: 8 });
    expect((short.details[0] as Extract<ItemDetail, { kind: 'perplexity' }>).windows).toBe(Math.ceil(tokens.length / 8));
  });

  it('generates greedily: a benchmark whose answers are the model\'s own outputs scores exact_match 1', async () => {
    const items = [{ prompt: 'Once upon a time', answer: '?' }, { prompt: 'def f(x):', answer: '?' }];
    const header = { blocklab_benchmark: { name: 'gen', kind: 'generation', until: ['\n'], max_gen_tokens: 6 } };
    await writeFile(genFile, jsonl([header, ...items]));
    const first = await evaluateLoaded(loaded, await loadBenchmark(genFile));
    const outputs = (first.details as Extract<ItemDetail, { kind: 'generation' }>[]).map((d) => d.extracted);
    await writeFile(genFile, jsonl([header, ...items.map((it, i) => ({ ...it, answer: outputs[i] }))]));
    const second = await evaluateLoaded(loaded, await loadBenchmark(genFile));
    expect(second.metrics).toEqual([{ metric: 'exact_match', value: 1, stderr: 0 }]);
  });
});

describe('runEval and compareForgetting through the store', () => {
  let store: ExperimentStore;
  beforeAll(() => {
    store = ExperimentStore.open(join(root, 'store.sqlite'));
  });
  afterAll(() => store?.close());

  it('stores results per (checkpoint, benchmark, metric), reuses them, recomputes with force or when the tokenizer changes', async () => {
    const opts = { models: [ckA], benchmarks: [mcFile, pplFile], batch: 4 };
    const first = await runEval(store, opts);
    expect(first.results.map((r) => `${r.benchmark}:${r.metric}`)).toEqual([
      'general_mc:acc',
      'general_mc:acc_norm',
      'code_ppl:word_perplexity',
      'code_ppl:byte_perplexity',
      'code_ppl:bits_per_byte',
      'code_ppl:token_perplexity',
    ]);
    expect(first.results.every((r) => !r.cached && r.n > 0)).toBe(true);
    expect(first.results.find((r) => r.metric === 'acc')).toMatchObject({ kind: 'multiple_choice', role: 'old', domain: 'general', n: 4, shots: 0, limit: null });
    expect(first.results.find((r) => r.metric === 'bits_per_byte')).toMatchObject({ role: 'new', domain: 'code', stderr: expect.any(Number) });
    expect(first.results.find((r) => r.metric === 'word_perplexity')).toMatchObject({ stderr: null });
    const run = store.getRun(first.run_id)!;
    expect([run.kind, run.status]).toEqual(['eval', 'completed']);
    const stored = getEvalResults(store, { runId: first.run_id });
    expect(stored).toHaveLength(6);

    const second = await runEval(store, opts);
    expect(second.results.every((r) => r.cached)).toBe(true);
    expect(second.results.map((r) => r.value)).toEqual(first.results.map((r) => r.value));
    expect(store.getRun(second.run_id)!.summary).toMatchObject({ computed: 0, reused: 2 });

    const forced = await runEval(store, { ...opts, force: true });
    expect(forced.results.every((r) => !r.cached)).toBe(true);
    // computed again on the same weights, the same way: the same numbers exactly
    expect(forced.results.map((r) => r.value)).toEqual(first.results.map((r) => r.value));
    expect(getEvalResults(store, { runId: forced.run_id })).toHaveLength(6);

    // another setup is another benchmark key: --limit 2 and --shots 1 are computed, not reused
    const limited = await runEval(store, { ...opts, benchmarks: [mcFile], limit: 2, shots: 1 });
    expect(limited.results[0]).toMatchObject({ cached: false, n: 2, shots: 1, limit: 2 });
    expect(limited.results[0].benchmark_key).toMatch(/^general_mc@[0-9a-f]{12}\/1shot\/limit2$/);

    // the store's checkpoint hash ignores the tokenizer files; the weights fingerprint does not
    const cfgFile = join(ckA, 'tokenizer_config.json');
    const { readFile } = await import('node:fs/promises');
    await writeFile(cfgFile, (await readFile(cfgFile, 'utf8')).replace(/\n$/, ' \n'));
    const afterEdit = await runEval(store, { ...opts, benchmarks: [mcFile] });
    expect(afterEdit.results.every((r) => !r.cached)).toBe(true);
    expect(afterEdit.results[0].checkpoint_id).toBe(first.results[0].checkpoint_id);
  });

  it('refuses a folder that is not a checkpoint before recording it', async () => {
    const before = store.listCheckpoints().length;
    await expect(runEval(store, { models: [join(root, 'nope')], benchmarks: [mcFile] })).rejects.toThrow(/nope: no such folder/);
    expect(store.listCheckpoints()).toHaveLength(before);
  });

  it('compares against the base with positive delta = forgetting on old-domain and gain on new-domain benchmarks', async () => {
    const real = await compareForgetting(store, ckA, [ckB, ckA], [mcFile, pplFile], { batch: 4 });
    expect(real.checkpoints).toEqual([ckB, ckA]);
    expect(real.rows.map((r) => [r.benchmark, r.metric, r.flag])).toEqual([
      ['general_mc', 'acc_norm', 'forgetting'],
      ['code_ppl', 'bits_per_byte', 'gain'],
    ]);
    for (const row of real.rows) {
      const self = row.checkpoints.find((c) => c.checkpoint === ckA)!;
      expect(self.delta).toBe(0);
      // acc_norm on an old-domain benchmark: forgetting = base − tuned (higher is better);
      // bits_per_byte on a new-domain one: gain = base − tuned (lower is better)
      const b = row.checkpoints.find((c) => c.checkpoint === ckB)!;
      expect(b.delta).toBeCloseTo(row.base.value! - b.value!, 12);
    }

    // set the stored values (same runs, so still reusable) and read the signs off known numbers
    const results = (await runEval(store, { models: [ckA, ckB], benchmarks: [mcFile, pplFile] })).results;
    const set = (ck: string, bench: string, metric: string, value: number) => {
      const r = results.find((x) => x.checkpoint === ck && x.benchmark === bench && x.metric === metric)!;
      const row = getEvalResults(store, { checkpointId: r.checkpoint_id, benchmarkId: r.benchmark_id }).find((x) => x.metric === metric)!;
      saveEvalResults(store, { runId: row.runId, checkpointId: r.checkpoint_id, benchmarkId: r.benchmark_id, metrics: [{ metric, value, stderr: null, nItems: r.n }] });
    };
    set(ckA, 'general_mc', 'acc_norm', 0.6);
    set(ckB, 'general_mc', 'acc_norm', 0.45); // tuned lost 0.15 on the old domain: forgetting +0.15
    set(ckA, 'code_ppl', 'bits_per_byte', 3.0);
    set(ckB, 'code_ppl', 'bits_per_byte', 2.5); // tuned compresses code better: gain +0.5
    const known = await compareForgetting(store, ckA, [ckB], [mcFile, pplFile]);
    const delta = (bench: string) => known.rows.find((r) => r.benchmark === bench)!.checkpoints[0].delta!;
    expect(delta('general_mc')).toBeCloseTo(0.15, 12);
    expect(delta('code_ppl')).toBeCloseTo(0.5, 12);
    // one family per mean: bits per byte on the new domain, accuracy (in points) on the old; never 0.5 and 0.15 averaged
    expect(known.summary).toEqual([{ checkpoint: ckB, mean_gain: expect.closeTo(0.5, 12), mean_forgetting: null, new_benchmarks: 1, old_benchmarks: 0 }]);
    expect(known.forgetting!.means.map((m) => [m.role, m.family, m.mean])).toEqual([
      ['new', 'bits_per_byte', expect.closeTo(0.5, 12)],
      ['old', 'accuracy', expect.closeTo(15, 10)],
    ]);
    expect(known.delta_note).toMatch(/delta > 0/);
  });
});
