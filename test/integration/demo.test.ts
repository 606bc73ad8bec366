/**
 * `blocklab demo` end to end on the bundled files, with a tiny budget: every piece runs for
 * real (expansion, four supervised trainings, evaluation, comparison, report), only shorter.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runDemo } from '../../src/main/demo/run-demo.js';
import { ExperimentStore } from '../../src/main/store/index.js';
import { testDir } from '../helpers/tmp.js';

describe('blocklab demo', () => {
  it('expands, tunes four ways on the same tokens, evaluates against the base and writes the report', async () => {
    const root = await testDir('demo');
    const store = ExperimentStore.open(join(root, 'store.sqlite'));
    const lines: string[] = [];
    const r = await runDemo({ out: join(root, 'demo'), store, steps: 3, limit: 4, pdf: false, log: (l) => lines.push(l) });

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
});
