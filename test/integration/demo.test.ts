/**
 * `blocklab demo` end to end on the bundled files, with a tiny budget: every piece runs for
 * real (expansion, four supervised trainings, evaluation, comparison, report), only shorter;
 * and run again, the same forgetting table to the last digit (the README: "deterministic, so
 * these are the numbers you get").
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runDemo, type DemoResult } from '../../src/main/demo/run-demo.js';
import { formatCompareTable } from '../../src/main/engine/eval.js';
import { ExperimentStore } from '../../src/main/store/index.js';
import { testDir } from '../helpers/tmp.js';

const BUDGET = { steps: 3, limit: 4, pdf: false } as const;
let first: DemoResult | null = null;

describe('blocklab demo', () => {
  it('expands, tunes four ways on the same tokens, evaluates against the base and writes the report', async () => {
    const root = await testDir('demo');
    const store = ExperimentStore.open(join(root, 'store.sqlite'));
    const lines: string[] = [];
    const r = await runDemo({ out: join(root, 'demo'), store, ...BUDGET, log: (l) => lines.push(l) });
    first = r;

    expect(r.runs.map((x) => x.name)).toEqual(['blocks', 'top', 'full', 'lora']);
    expect(r.tokensPerMethod).toBe(3 * 4 * 128);
    const params = Object.fromEntries(r.runs.map((x) => [x.name, x.trainableParams!]));
    expect(params.blocks).toBe(params.top); // two copied blocks either way
    expect(params.blocks).toBeLessThan(params.full);
    expect(params.lora).toBeLessThan(params.blocks);

    expect(r.compare.base).toBe('base');
    expect(r.compare.checkpoints).toEqual(['blocks', 'top', 'full', 'lora']);
    expect(new Set(r.compare.rows.map((x) => x.benchmark))).toEqual(new Set(['general-ppl', 'general-mc', 'code-ppl', 'code-mc']));
    // the expansions were identities before training (checked on write, recorded in the store)
    const expansions = store.listCheckpoints().filter((c) => c.madeBy === 'expand');
    expect(expansions).toHaveLength(2);
    for (const e of expansions) expect(store.getExpansion(e.id)!.identityMaxAbsLogitDiff).toBe(0);
    // the scatter's means stay within one metric family: bits per byte (code-ppl, general-ppl)
    expect(r.compare.summary_family).toBe('bits_per_byte');
    for (const s of r.compare.summary) {
      expect(s.new_benchmarks).toBe(1);
      expect(s.old_benchmarks).toBe(1);
    }
    // and the summary has both families for every method, each with a standard error
    expect(r.compare.forgetting!.means).toHaveLength(4 * 2 * 2);
    for (const m of r.compare.forgetting!.means) expect(m.stderr).toEqual(expect.any(Number));

    const html = readFileSync(r.report.html, 'utf8');
    expect(html).toContain('lora');
    expect((html.match(/<svg/g) ?? []).length).toBeGreaterThanOrEqual(3);
    expect(existsSync(r.report.markdown)).toBe(true);
    expect(store.listRuns({ kind: 'train' })).toHaveLength(4);
    store.close();
  }, 300_000);

  it('prints the same forgetting table when run again with the same seed (a fresh folder and store)', async () => {
    expect(first, 'the first demo run').not.toBeNull();
    const root = await testDir('demo-again');
    const store = ExperimentStore.open(join(root, 'store.sqlite'));
    try {
      const again = await runDemo({ out: join(root, 'demo'), store, ...BUDGET, seed: 0 });
      // the table `blocklab demo` prints, character for character, and the numbers under it
      const table = formatCompareTable(first!.compare);
      expect(formatCompareTable(again.compare)).toBe(table);
      expect(table).toMatch(/general-ppl/);
      expect(again.compare.rows).toEqual(first!.compare.rows);
      expect(again.compare.summary).toEqual(first!.compare.summary);
      for (const [a, b] of again.runs.map((x, i) => [x, first!.runs[i]] as const)) {
        expect({ name: a.name, first: a.firstLoss, last: a.lastLoss, val: a.valLoss }).toEqual({ name: b.name, first: b.firstLoss, last: b.lastLoss, val: b.valLoss });
      }
    } finally {
      store.close();
    }
  }, 300_000);
});
