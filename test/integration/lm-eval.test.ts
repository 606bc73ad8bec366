/**
 * lm-evaluation-harness's formats both ways. The results file below is shaped as the harness
 * writes it (EleutherAI/lm-evaluation-harness: lm_eval/evaluator_utils.py `_to_eval_results` and
 * `_compute_task_aggregations` for "results" {"name", "alias", "sample_len", "acc,none",
 * "acc_stderr,none"…, "N/A" for perplexity stderrs}, "group_subtasks", "configs", "versions",
 * "n-shot", "higher_is_better", "n-samples" {"original", "effective"}; lm_eval/evaluator.py
 * `simple_evaluate` for "config", "git_hash", "date"; lm_eval/loggers/evaluation_tracker.py for
 * the model identity, "task_hashes", the results_<date>.json / samples_<task>_<date>.jsonl names
 * and the sanitised samples (str()-ed resps, "arguments": {"gen_args_N": {"arg_0", "arg_1"}})).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeTinyCheckpoint } from '../../src/main/engine/index.js';
import { compareForgetting, runEval } from '../../src/main/engine/eval.js';
import { bitsPerByteStderr } from '../../src/main/engine/benchmarks.js';
import { importHarnessResults, pyFloat, sanitizeModelName } from '../../src/main/interop/lm-eval.js';
import { ExperimentStore } from '../../src/main/store/index.js';
import { testDir } from '../helpers/tmp.js';

let root: string;
let base: string;
let tuned: string;
let mcFile: string;
let pplFile: string;

const sha = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

/** A results file as lm_eval 0.4.x (HEAD of the harness) writes it for hellaswag, wikitext and the arc group. */
function harnessResults(o: { hellaswag: [number, number, number, number]; bpb: number }) {
  const [acc, accSe, accNorm, accNormSe] = o.hellaswag;
  return {
    results: {
      arc: { name: 'arc', alias: 'arc', sample_len: 0, 'acc,none': 0.3, 'acc_stderr,none': 0.01 },
      arc_easy: { name: 'arc_easy', alias: ' - arc_easy', sample_len: 2376, 'acc,none': 0.4, 'acc_stderr,none': 0.0101, 'acc_norm,none': 0.38, 'acc_norm_stderr,none': 0.0099 },
      hellaswag: { name: 'hellaswag', alias: 'hellaswag', sample_len: 10042, 'acc,none': acc, 'acc_stderr,none': accSe, 'acc_norm,none': accNorm, 'acc_norm_stderr,none': accNormSe },
      wikitext: {
        name: 'wikitext',
        alias: 'wikitext',
        sample_len: 62,
        'word_perplexity,none': 48.2,
        'word_perplexity_stderr,none': 'N/A',
        'byte_perplexity,none': 2 ** o.bpb,
        'byte_perplexity_stderr,none': 'N/A',
        'bits_per_byte,none': o.bpb,
        'bits_per_byte_stderr,none': 'N/A',
      },
      bleu_task: { name: 'bleu_task', alias: 'bleu_task', sample_len: 10, 'bleu,none': 12.5, 'bleu_stderr,none': 0.5 },
    },
    group_subtasks: { arc: ['arc_easy'], hellaswag: [], wikitext: [], bleu_task: [] },
    configs: {
      arc_easy: { task: 'arc_easy', dataset_path: 'allenai/ai2_arc', output_type: 'multiple_choice', num_fewshot: 0, metadata: { version: 1.0 } },
      hellaswag: { task: 'hellaswag', dataset_path: 'Rowan/hellaswag', output_type: 'multiple_choice', num_fewshot: 0, metadata: { version: 1.0 } },
      wikitext: { task: 'wikitext', dataset_path: 'EleutherAI/wikitext_document_level', output_type: 'loglikelihood_rolling', num_fewshot: 0, metadata: { version: 2.0 } },
      bleu_task: { task: 'bleu_task', output_type: 'generate_until', metadata: { version: 1.0 } },
    },
    versions: { arc: 1.0, arc_easy: 1.0, bleu_task: 1.0, hellaswag: 1.0, wikitext: 2.0 },
    'n-shot': { arc_easy: 0, bleu_task: 0, hellaswag: 0, wikitext: 0 },
    higher_is_better: { hellaswag: { acc: true, acc_norm: true }, wikitext: { word_perplexity: false, byte_perplexity: false, bits_per_byte: false } },
    'n-samples': { arc_easy: { original: 2376, effective: 2376 }, hellaswag: { original: 10042, effective: 10042 }, wikitext: { original: 62, effective: 62 }, bleu_task: { original: 10, effective: 10 } },
    config: { model: 'hf', model_args: 'pretrained=/cluster/ckpt', batch_size: 'auto', batch_sizes: [64], device: 'cuda:0', use_cache: null, limit: null, bootstrap_iters: 100000, gen_kwargs: null, random_seed: 0, numpy_seed: 1234, torch_seed: 1234, fewshot_seed: 1234 },
    git_hash: 'abc1234',
    date: 1764700000.123,
    pretty_env_info: 'PyTorch version: 2.11.0',
    transformers_version: '5.17.0',
    lm_eval_version: '0.4.9',
    upper_git_hash: null,
    task_hashes: {},
    model_source: 'hf',
    model_name: '/cluster/ckpt',
    model_name_sanitized: '__cluster__ckpt',
    system_instruction: null,
    system_instruction_sha: null,
    fewshot_as_multiturn: false,
    chat_template: null,
    chat_template_sha: null,
    total_evaluation_time_seconds: '812.5',
  };
}

beforeAll(async () => {
  root = await testDir('lm-eval');
  base = join(root, 'base');
  await makeTinyCheckpoint(base, { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, seed: 1 });
  tuned = join(root, 'tuned');
  await makeTinyCheckpoint(tuned, { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, seed: 2 });
  mcFile = join(root, 'tiny-mc.jsonl');
  writeFileSync(
    mcFile,
    [
      { blocklab_benchmark: { name: 'tiny-mc', kind: 'multiple_choice', domain: 'code', role: 'new' } },
      { context: 'The cat sat on the', choices: ['mat', 'moon', 'idea'], gold: 0 },
      { context: 'One, two,', choices: ['three', 'blue'], gold: 0 },
      { context: 'def f(x):', choices: ['return x', 'banana'], gold: 0 },
    ]
      .map((x) => JSON.stringify(x))
      .join('\n') + '\n',
  );
  pplFile = join(root, 'tiny-ppl.jsonl');
  writeFileSync(pplFile, [{ blocklab_benchmark: { name: 'tiny-ppl', kind: 'perplexity', domain: 'general', role: 'old' } }, { text: 'A short text.' }, { text: 'Another, longer text with more words in it.' }, { text: 'é ü' }].map((x) => JSON.stringify(x)).join('\n') + '\n');
}, 60_000);

describe("Python's float spelling", () => {
  it('matches repr()', () => {
    expect([1, 100, 0.0001, 0.00001, 1e16, 1234567890123456, -2.5e-7, 0.1 + 0.2, -0, 0, 1.5e300].map(pyFloat)).toEqual([
      '1.0',
      '100.0',
      '0.0001',
      '1e-05',
      '1e+16',
      '1234567890123456.0',
      '-2.5e-07',
      '0.30000000000000004',
      '-0.0',
      '0.0',
      '1.5e+300',
    ]);
  });
});

describe('blocklab eval --output-path --log-samples', () => {
  it("writes the harness's results file and samples, whose numbers check line by line", async () => {
    const store = ExperimentStore.open(join(root, 'out.sqlite'));
    try {
      const out = join(root, 'harness-out');
      const report = await runEval(store, { models: [base], benchmarks: [mcFile, pplFile], output: { dir: out, logSamples: true } });
      const folder = join(out, sanitizeModelName(base));
      expect(folder).toContain('__');
      const files = readdirSync(folder).sort();
      expect(files).toHaveLength(3);
      expect(files[0]).toMatch(/^results_\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{6}\.json$/);
      expect(files.slice(1).map((f) => f.replace(/_\d{4}-.*$/, ''))).toEqual(['samples_tiny_mc', 'samples_tiny_ppl']);
      const r = JSON.parse(readFileSync(join(folder, files[0]), 'utf8'));
      for (const key of ['results', 'group_subtasks', 'configs', 'versions', 'n-shot', 'higher_is_better', 'n-samples', 'config', 'date', 'model_name', 'model_name_sanitized', 'task_hashes', 'total_evaluation_time_seconds']) {
        expect(r, key).toHaveProperty(key);
      }
      expect(Object.keys(r.results['tiny-mc'])).toEqual(['name', 'alias', 'sample_len', 'acc,none', 'acc_stderr,none', 'acc_norm,none', 'acc_norm_stderr,none']);
      expect(r.results['tiny-ppl']['bits_per_byte_stderr,none']).toBe('N/A'); // the harness computes none
      expect(r['n-samples']['tiny-mc']).toEqual({ original: 3, effective: 3 });
      expect(r.configs['tiny-mc'].output_type).toBe('multiple_choice');
      expect(r.configs['tiny-ppl'].output_type).toBe('loglikelihood_rolling');

      // multiple choice: each line's acc / acc_norm follow from its per-choice log-likelihoods
      const mc = readFileSync(join(folder, files[1]), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
      expect(mc).toHaveLength(3);
      expect(Object.keys(mc[0])).toEqual(['doc_id', 'doc', 'target', 'arguments', 'resps', 'filtered_resps', 'filter', 'metrics', 'doc_hash', 'prompt_hash', 'target_hash', 'acc', 'acc_norm']);
      let accSum = 0;
      for (const s of mc) {
        const lls = s.filtered_resps.map((x: [string, string]) => Number(x[0]));
        expect(s.resps.map((x: [[string, string]]) => x[0])).toEqual(s.filtered_resps);
        expect(s.filtered_resps.every((x: [string, string]) => x[1] === 'True' || x[1] === 'False')).toBe(true);
        const choices: string[] = s.doc.choices;
        expect(Object.keys(s.arguments)).toEqual(choices.map((_, j) => `gen_args_${j}`));
        expect(s.arguments.gen_args_1).toEqual({ arg_0: s.doc.context, arg_1: ` ${choices[1]}` }); // target_delimiter " " + choice
        const argmax = (xs: number[]) => xs.indexOf(Math.max(...xs));
        expect(s.acc).toBe(argmax(lls) === s.doc.gold ? 1 : 0);
        expect(s.acc_norm).toBe(argmax(lls.map((ll: number, j: number) => ll / [...choices[j]].length)) === s.doc.gold ? 1 : 0);
        expect(s.target).toBe(String(s.doc.gold));
        expect(s.prompt_hash).toBe(sha(s.doc.context));
        expect(s.target_hash).toBe(sha(s.target));
        expect(s.doc_hash).toBe(sha(JSON.stringify(s.doc, null, 2)));
        accSum += s.acc;
      }
      expect(r.results['tiny-mc']['acc,none']).toBeCloseTo(accSum / 3, 12);
      // the acc/acc_norm lines are written as Python floats: 1.0 / 0.0
      expect(readFileSync(join(folder, files[1]), 'utf8')).toMatch(/"acc": [01]\.0, "acc_norm": [01]\.0\}/);

      // perplexity: [loglikelihood, bytes] per document reproduce bits per byte, and its standard error in the store
      const ppl = readFileSync(join(folder, files[2]), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
      const lls = ppl.map((s) => s.bits_per_byte[0] as number);
      const bytes = ppl.map((s) => s.bits_per_byte[1] as number);
      expect(bytes).toEqual(ppl.map((s) => Buffer.byteLength(s.doc.text)));
      expect(ppl.map((s) => Number(s.filtered_resps[0]))).toEqual(lls);
      const bpb = -lls.reduce((a, b) => a + b, 0) / bytes.reduce((a, b) => a + b, 0) / Math.LN2;
      expect(r.results['tiny-ppl']['bits_per_byte,none']).toBeCloseTo(bpb, 10);
      const stored = report.results.find((x) => x.benchmark === 'tiny-ppl' && x.metric === 'bits_per_byte')!;
      expect(stored.stderr).toBeCloseTo(bitsPerByteStderr(lls, bytes)!, 12);
      expect(r.task_hashes['tiny-mc']).toBe(sha(mc.map((s) => s.doc_hash + s.prompt_hash + s.target_hash).join('')));

      // and back: importing what was written gives the same numbers (bits per byte's standard error from the samples)
      const back = await importHarnessResults(store, join(folder, files[0]), { model: base, newTasks: ['tiny-mc'] });
      const t = Object.fromEntries(back.tasks.map((x) => [x.task, x]));
      expect(t['tiny-mc'].metrics.acc.value).toBeCloseTo(r.results['tiny-mc']['acc,none'], 15);
      expect(t['tiny-ppl'].metrics.bits_per_byte.stderr).toBeCloseTo(stored.stderr!, 12);
    } finally {
      store.close();
    }
  }, 120_000);
});

describe('blocklab import-eval', () => {
  it("stores a harness results file as the checkpoint's results, and compares them by lm-eval:TASK", async () => {
    const store = ExperimentStore.open(join(root, 'import.sqlite'));
    try {
      const baseDir = join(root, 'base-results');
      mkdirSync(baseDir);
      writeFileSync(join(baseDir, 'results_2026-11-30T10-00-00.123456.json'), JSON.stringify(harnessResults({ hellaswag: [0.5, 0.005, 0.6, 0.0049], bpb: 0.9 }), null, 2));
      const tunedDir = join(root, 'tuned-results');
      mkdirSync(tunedDir);
      const tunedFile = join(tunedDir, 'results_2026-12-01T10-00-00.123456.json');
      writeFileSync(tunedFile, JSON.stringify(harnessResults({ hellaswag: [0.49, 0.005, 0.59, 0.0049], bpb: 0.95 }), null, 2));
      // the samples file for wikitext, as save_results_samples writes it: [loglikelihood, bytes] per document
      const docs: [number, number][] = [
        [-700, 1000],
        [-1400, 1800],
        [-300, 500],
      ];
      writeFileSync(
        join(tunedDir, 'samples_wikitext_2026-12-01T10-00-00.123456.jsonl'),
        docs
          .map(([ll, b], i) =>
            JSON.stringify({ doc_id: i, doc: { page: 'x' }, target: 'x', arguments: { gen_args_0: { arg_0: 'x' } }, resps: [[String(ll)]], filtered_resps: [String(ll)], filter: 'none', metrics: ['word_perplexity', 'byte_perplexity', 'bits_per_byte'], doc_hash: '', prompt_hash: '', target_hash: '', word_perplexity: [ll, 10], byte_perplexity: [ll, b], bits_per_byte: [ll, b] }),
          )
          .join('\n') + '\n',
      );
      const b = await importHarnessResults(store, join(baseDir, readdirSync(baseDir)[0]), { model: base, newTasks: ['hellaswag'], domain: 'commonsense' });
      const t = await importHarnessResults(store, tunedFile, { model: tuned, newTasks: ['hellaswag'], domain: 'commonsense' });
      expect(t.tasks.map((x) => [x.task, x.kind, x.role, x.n])).toEqual([
        ['arc_easy', 'multiple_choice', 'old', 2376],
        ['hellaswag', 'multiple_choice', 'new', 10042],
        ['wikitext', 'perplexity', 'old', 62],
      ]);
      expect(t.skipped.map((s) => s.task)).toEqual(['arc', 'bleu_task']); // a group aggregate; a metric Blocklab does not compare
      expect(t.tasks[1].metrics).toEqual({ acc: { value: 0.49, stderr: 0.005 }, acc_norm: { value: 0.59, stderr: 0.0049 } });
      // "N/A" in the file; the ratio estimator's standard error from the samples beside it: hand-computed
      // R = -2400/3300; residuals -700+R·1000, -1400+R·1800, -300+R·500; sqrt(3/2 Σr²) / 3300 / ln 2
      const R = -2400 / 3300;
      const ss = (-700 - R * 1000) ** 2 + (-1400 - R * 1800) ** 2 + (-300 - R * 500) ** 2;
      expect(t.tasks[2].metrics.bits_per_byte.stderr).toBeCloseTo(Math.sqrt(1.5 * ss) / 3300 / Math.LN2, 12);
      expect(b.tasks[2].metrics.bits_per_byte.stderr).toBeNull(); // no samples beside the base's file: unknown, not invented

      const c = await compareForgetting(store, base, [tuned], ['lm-eval:hellaswag', 'lm-eval:wikitext']);
      expect(c.rows.map((r) => [r.benchmark, r.metric, r.flag])).toEqual([
        ['hellaswag', 'acc_norm', 'gain'],
        ['wikitext', 'bits_per_byte', 'forgetting'],
      ]);
      expect(c.rows[0].checkpoints[0].delta).toBeCloseTo(-0.01, 12);
      expect(c.rows[1].checkpoints[0].delta).toBeCloseTo(0.05, 12);
      expect(c.forgetting!.means.find((m) => m.family === 'accuracy')!.stderr).toBeCloseTo(Math.sqrt(0.0049 ** 2 * 2) * 100, 10);
      await expect(compareForgetting(store, base, [join(root, 'nowhere')], ['lm-eval:hellaswag'])).rejects.toThrow(/no such folder/);
      await expect(compareForgetting(store, base, [tuned], ['lm-eval:mmlu'])).rejects.toThrow(/no imported lm-evaluation-harness task "mmlu"/);
      await expect(importHarnessResults(store, join(root, 'nothing.json'), { model: base })).rejects.toThrow(/cannot be read/);
      writeFileSync(join(root, 'not-results.json'), JSON.stringify({ hello: 1 }));
      await expect(importHarnessResults(store, join(root, 'not-results.json'), { model: base })).rejects.toThrow(/is not an lm-evaluation-harness results file: results/);
      await expect(importHarnessResults(store, tunedFile, { model: tuned, newTasks: ['mmlu'] })).rejects.toThrow(/has no task "mmlu"/);
    } finally {
      store.close();
    }
  }, 60_000);
});
