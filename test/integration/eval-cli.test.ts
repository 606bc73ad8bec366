/**
 * `blocklab eval` and `blocklab compare` as a user runs them: the documented JSON documents,
 * results reused from the store on the second call, the human tables, and a refusal. Spawns
 * cost ~1.5 s each, so the file makes two tiny checkpoints in-process and spawns four times.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeTinyCheckpoint } from '../../src/main/engine/index.js';
import { CompareReportSchema, EvalReportSchema } from '../../src/shared/benchmarks.js';
import { oneJson, runCli, stackLines, stderrLines } from '../helpers/cli-runner.js';
import { testDir } from '../helpers/tmp.js';

const TINY = { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, maxPositions: 64 } as const;
const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

let root: string;
let store: string;
let base: string;
let tuned: string;
let mc: string;
let ppl: string;

beforeAll(async () => {
  root = await testDir('eval-cli');
  store = join(root, 'store.sqlite');
  base = join(root, 'base');
  tuned = join(root, 'tuned');
  await makeTinyCheckpoint(base, { ...TINY, seed: 1 });
  await makeTinyCheckpoint(tuned, { ...TINY, seed: 2 });
  mc = join(root, 'general_mc.jsonl');
  await writeFile(mc, jsonl([{ context: 'The sky is', choices: ['blue', 'loud'], gold: 0 }, { context: '2 + 2 =', choices: ['4', 'fish'], gold: 0 }, { context: 'Ice is', choices: ['cold', 'hot'], gold: 0 }]));
  ppl = join(root, 'code_ppl.jsonl');
  await writeFile(ppl, jsonl([{ text: 'def add(a, b):\n    return a + b\n' }, { text: 'for i in range(3):\n    print(i)\n' }]));
  await writeFile(join(root, 'code_ppl.json'), JSON.stringify({ blocklab_benchmark: { name: 'code_ppl', kind: 'perplexity', domain: 'code' } }));
});

describe('blocklab eval / compare', () => {
  it('eval --json prints {run_id, results} and compare --json reuses the stored base results', async () => {
    const first = await runCli(['--store', store, 'eval', base, '--bench', mc, ppl, '--batch', '4', '--json']);
    expect(first.code, first.stderr).toBe(0);
    const doc = EvalReportSchema.parse(oneJson(first));
    expect(doc.results.map((r) => [r.checkpoint, r.benchmark, r.kind, r.domain, r.role, r.metric, r.cached])).toEqual([
      [base, 'general_mc', 'multiple_choice', 'general', 'old', 'acc', false],
      [base, 'general_mc', 'multiple_choice', 'general', 'old', 'acc_norm', false],
      [base, 'code_ppl', 'perplexity', 'code', 'new', 'word_perplexity', false],
      [base, 'code_ppl', 'perplexity', 'code', 'new', 'byte_perplexity', false],
      [base, 'code_ppl', 'perplexity', 'code', 'new', 'bits_per_byte', false],
      [base, 'code_ppl', 'perplexity', 'code', 'new', 'token_perplexity', false],
    ]);
    expect(doc.results[0]).toMatchObject({ n: 3, stderr: expect.any(Number) });
    expect(doc.results[4]).toMatchObject({ n: 2, stderr: expect.any(Number), value: expect.any(Number) }); // bits per byte: the ratio estimator's standard error
    expect(doc.results[2]).toMatchObject({ n: 2, stderr: null }); // word perplexity: N/A, as in the harness

    const cmp = await runCli(['--store', store, 'compare', '--base', base, tuned, '--bench', mc, ppl, '--json']);
    expect(cmp.code, cmp.stderr).toBe(0);
    const report = CompareReportSchema.parse(oneJson(cmp));
    expect(report.run_id).toBeGreaterThan(doc.run_id);
    expect([report.base, report.checkpoints]).toEqual([base, [tuned]]);
    expect(report.rows.map((r) => [r.benchmark, r.metric, r.flag, r.higher_is_better])).toEqual([
      ['general_mc', 'acc_norm', 'forgetting', true],
      ['code_ppl', 'bits_per_byte', 'gain', false],
    ]);
    const bpb = report.rows[1];
    expect(bpb.base.value).toBeCloseTo(doc.results[4].value!, 10); // the stored base result
    expect(bpb.checkpoints[0].delta).toBeCloseTo(bpb.base.value! - bpb.checkpoints[0].value!, 12);
    const acc = report.rows[0];
    expect(acc.checkpoints[0].delta).toBeCloseTo(acc.base.value! - acc.checkpoints[0].value!, 12);
    // the scatter's means never mix units: bits per byte (new domain) and acc_norm (old) are different families
    expect(report.summary_family).toBe('bits_per_byte');
    expect(report.summary).toEqual([{ checkpoint: tuned, mean_gain: bpb.checkpoints[0].delta, mean_forgetting: null, new_benchmarks: 1, old_benchmarks: 0 }]);
    expect(report.forgetting!.means.map((m) => [m.role, m.family, m.mean])).toEqual([
      ['new', 'bits_per_byte', expect.closeTo(bpb.checkpoints[0].delta!, 12)],
      ['old', 'accuracy', expect.closeTo(100 * acc.checkpoints[0].delta!, 10)],
    ]);
    expect(report.delta_note).toMatch(/positive|delta > 0/);
  });

  it('prints tables without --json, and refuses an unknown builtin with one line', async () => {
    const [table, refusal] = await Promise.all([
      runCli(['--store', store, 'eval', base, tuned, '--bench', mc]),
      runCli(['--store', store, 'eval', base, '--bench', 'builtin:no_such_benchmark', '--json']),
    ]);
    expect(table.code, table.stderr).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^benchmark\s+metric\s+\S*base\s+\S*tuned$/);
    expect(lines[1]).toMatch(/^general_mc \(multiple_choice, old, 0-shot, n=3\)\s+acc ↑\s+\d\.\d{4} ± \d\.\d{4} \*\s+\d\.\d{4} ± \d\.\d{4} \*$/);
    expect(table.stdout).toMatch(/reused from the store \(marked \*; --force recomputes\)/);

    expect(refusal.code).toBe(1);
    expect(JSON.parse(refusal.stdout).error).toMatch(/builtin benchmark/);
    const err = stderrLines(refusal);
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(/^blocklab: .*(no builtin benchmark "no_such_benchmark"; available|builtin benchmarks are not installed)/);
    expect(stackLines(refusal.stderr)).toEqual([]);
  });
});
