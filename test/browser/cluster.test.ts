/**
 * The round trip to a cluster in the real UI (blocklab serve + Chromium): a Train cell's
 * "Run on a cluster…" shows which layers LLaMA-Factory would train before anything is written,
 * exports a run (a Parquet corpus read through its text column), and refuses a layout
 * LLaMA-Factory cannot express; an Eval cell compares lm-evaluation-harness results imported from
 * a cluster and its forgetting summary averages within one metric family, with standard errors,
 * naming a winner only beyond the combined standard error.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parquetWriteFile } from 'hyparquet-writer';
import type { Browser, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expandModel, makeTinyCheckpoint } from '../../src/main/engine/index.js';
import { importHarnessResults } from '../../src/main/interop/lm-eval.js';
import { ExperimentStore } from '../../src/main/store/index.js';
import { testDir } from '../helpers/tmp.js';
import { launchBrowser, screenshot, startServe, watchPage, type Served } from './harness.js';

let dir: string;
let served: Served;
let browser: Browser;
let page: Page;
let watched: ReturnType<typeof watchPage>;
let base: string;
let interleaved: string;
let top: string;
let positions: string;
let parquet: string;

/** A results file shaped as lm_eval writes it (see test/integration/lm-eval.test.ts for the sources), one per checkpoint. */
function results(arcAccNorm: number, hellaswagAccNorm: number) {
  const task = (name: string, n: number, accNorm: number) => ({ name, alias: name, sample_len: n, 'acc,none': accNorm - 0.02, 'acc_stderr,none': 0.0099, 'acc_norm,none': accNorm, 'acc_norm_stderr,none': accNorm === 0 ? 0 : name === 'arc_easy' ? 0.0099 : 0.0049 });
  return {
    results: { arc_easy: task('arc_easy', 2376, arcAccNorm), hellaswag: task('hellaswag', 10042, hellaswagAccNorm) },
    group_subtasks: { arc_easy: [], hellaswag: [] },
    configs: { arc_easy: { task: 'arc_easy', output_type: 'multiple_choice', num_fewshot: 0 }, hellaswag: { task: 'hellaswag', output_type: 'multiple_choice', num_fewshot: 0 } },
    versions: { arc_easy: 1.0, hellaswag: 1.0 },
    'n-shot': { arc_easy: 0, hellaswag: 0 },
    higher_is_better: { arc_easy: { acc: true, acc_norm: true }, hellaswag: { acc: true, acc_norm: true } },
    'n-samples': { arc_easy: { original: 2376, effective: 2376 }, hellaswag: { original: 10042, effective: 10042 } },
    config: { model: 'hf', model_args: 'pretrained=/cluster/x', batch_size: 'auto', limit: null, bootstrap_iters: 100000, fewshot_seed: 1234 },
    git_hash: null,
    date: 1764700000.5,
    model_source: 'hf',
    model_name: '/cluster/x',
    model_name_sanitized: '__cluster__x',
    task_hashes: {},
    total_evaluation_time_seconds: '100.0',
  };
}

beforeAll(async () => {
  dir = await testDir('browser-cluster');
  base = join(dir, 'base');
  await makeTinyCheckpoint(base, { layers: 4, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64 });
  interleaved = join(dir, 'interleaved');
  await expandModel(base, { blocks: 2 }, { out: interleaved }); // new layers 2 and 5
  top = join(dir, 'top');
  await expandModel(base, { blocks: 2, placement: 'top' }, { out: top });
  positions = join(dir, 'positions');
  await expandModel(base, { positions: [{ position: 1 }, { position: 3 }] }, { out: positions }); // new layers 1 and 4
  parquet = join(dir, 'code-00000-of-00001.parquet');
  const texts = Array.from({ length: 12 }, (_, i) => `def f${i}(x):\n    return x + ${i}\n`);
  parquetWriteFile({ filename: parquet, columnData: [{ name: 'repo', data: texts.map(() => 'r'), type: 'STRING' }, { name: 'content', data: texts, type: 'STRING' }], rowGroupSize: 5 });
  // evaluations done on a cluster, imported before the app starts
  const storePath = join(dir, 'store', 'blocklab.sqlite');
  const store = ExperimentStore.open(storePath);
  try {
    for (const [model, arc, hs] of [
      [base, 0.38, 0.6],
      [interleaved, 0.375, 0.62],
      [top, 0.3, 0.621],
    ] as const) {
      const file = join(dir, `results-${model.split('/').pop()}.json`);
      writeFileSync(file, JSON.stringify(results(arc, hs), null, 2));
      await importHarnessResults(store, file, { model, newTasks: ['hellaswag'], domain: 'commonsense' });
    }
  } finally {
    store.close();
  }
  served = await startServe(storePath);
  browser = await launchBrowser();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  watched = watchPage(page, `http://127.0.0.1:${served.port}`);
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await served?.stop();
}, 60_000);

const cells = (kind: string): Locator => page.locator(`[data-testid="cell"][data-kind="${kind}"]`);

async function waitForStatus(c: Locator, phases: string[], timeout = 120_000): Promise<void> {
  await expect
    .poll(
      async () => {
        const s = (await c.getAttribute('data-status')) ?? '';
        if (s === 'failed') throw new Error(`the cell failed: ${await c.locator('[data-testid="cell-error"]').innerText().catch(() => '?')}`);
        return s;
      },
      { timeout, interval: 250 },
    )
    .toSatisfy((s: string) => phases.includes(s));
}

describe('Run on a cluster… and the forgetting summary, in Chromium', () => {
  it('previews the trainable layers, exports a LLaMA-Factory run from a Parquet corpus, and refuses an inexpressible layout', async () => {
    await page.goto(served.url);
    await expect.poll(() => page.locator('[data-testid="cell"]').count(), { timeout: 30_000 }).toBeGreaterThanOrEqual(8);
    await page.locator('[data-testid="add-cell-train"]').last().click();
    const tr = cells('train').last();
    await tr.scrollIntoViewIfNeeded();
    const modelInput = tr.locator('[data-testid="train-model"] [data-testid="folder-input"]');
    await modelInput.fill(interleaved);
    await modelInput.press('Enter');
    await tr.locator('[data-testid="train-data-text"]').fill(parquet);
    await tr.locator('[data-testid="train-data-text"]').blur();
    await tr.locator('[data-testid="train-text-column"]').fill('content');
    await tr.locator('[data-testid="train-text-column"]').blur();
    await tr.locator('[data-testid="train-cluster"]').click();
    const panel = tr.locator('[data-testid="cluster-export"]');
    await expect.poll(() => panel.locator('[data-testid="cluster-layers"]').innerText(), { timeout: 30_000 }).toBe('2, 5');
    expect(await panel.locator('[data-testid="cluster-plan"]').innerText()).toContain('use_llama_pro: true, freeze_trainable_layers: 2');
    const out = join(dir, 'to-the-cluster');
    await panel.locator('input.bl-mono').first().fill(out);
    await panel.locator('[data-testid="cluster-export-run"]').click();
    await expect.poll(() => panel.locator('[data-testid="cluster-result"]').count(), { timeout: 90_000 }).toBe(1);
    expect(await panel.locator('[data-testid="cluster-out"]').innerText()).toBe(out);
    expect(await panel.locator('[data-testid="cluster-single"]').innerText()).toBe('FORCE_TORCHRUN=1 llamafactory-cli train train.yaml');
    expect(await panel.locator('[data-testid="cluster-multi"]').innerText()).toMatch(/^FORCE_TORCHRUN=1 NNODES=2 NODE_RANK=0 .*\nFORCE_TORCHRUN=1 NNODES=2 NODE_RANK=1 /);
    await screenshot(page, 'cluster-01-exported');
    // what was written: the YAML trains exactly the new blocks; the corpus came from the Parquet column
    const yaml = readFileSync(join(out, 'train.yaml'), 'utf8');
    expect(yaml).toMatch(/^use_llama_pro: true$/m);
    expect(yaml).toMatch(/^freeze_trainable_layers: 2$/m);
    const docs = readFileSync(join(out, 'data', 'corpus.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l).text);
    expect(docs).toHaveLength(12);
    expect(docs[11]).toBe('def f11(x):\n    return x + 11\n');

    // a layout LLaMA-Factory cannot express: refused before anything is written, with what would have trained
    await modelInput.fill(positions);
    await modelInput.press('Enter');
    await panel.getByRole('button', { name: 'Check again' }).click();
    await expect.poll(() => panel.locator('[data-testid="cluster-refusal"]').count(), { timeout: 30_000 }).toBe(1);
    const refusal = await panel.locator('[data-testid="cluster-refusal"]').innerText();
    expect(refusal).toContain('cannot train exactly layers 1, 4 of 6');
    expect(refusal).toContain('use_llama_pro: true, freeze_trainable_layers: 2 would train layers 2, 5');
    expect(await panel.locator('[data-testid="cluster-export-run"]').isDisabled()).toBe(true);
    await screenshot(page, 'cluster-02-refused');
  }, 180_000);

  it('compares imported cluster evaluations: means within a family ± standard error, a winner only beyond the combined standard error', async () => {
    await page.locator('[data-testid="add-cell-eval"]').last().click();
    const ev = cells('eval').last();
    await ev.scrollIntoViewIfNeeded();
    const baseInput = ev.locator('[data-testid="eval-base"] [data-testid="folder-input"]');
    await baseInput.fill(base);
    await baseInput.press('Enter');
    const add = ev.locator('input[placeholder^="a checkpoint folder"]');
    for (const ck of [interleaved, top]) {
      await add.fill(ck);
      await add.press('Enter');
    }
    for (const task of ['arc_easy', 'hellaswag']) await ev.locator('label.bench', { hasText: task }).locator('input[type="checkbox"]').check();
    await ev.locator('[data-testid="cell-run"]').click();
    await waitForStatus(ev, ['done'], 120_000);
    const summary = ev.locator('[data-testid="forgetting-summary"]');
    await expect.poll(() => summary.count(), { timeout: 30_000 }).toBe(1);
    const rows = await ev.locator('[data-testid="forgetting-summary-row"]').allInnerTexts();
    // hellaswag acc_norm: 0.60 → 0.62 / 0.621, each ± 0.0049: +2.0 / +2.1 points ± sqrt(2)·0.49
    expect(rows.find((r) => r.startsWith('mean gain'))).toMatch(/accuracy-type · 1 benchmark · ± standard error\s+—\s+\+2\.0 ± 0\.7 points\s+\+2\.1 ± 0\.7 points/);
    // arc_easy acc_norm: 0.38 → 0.375 / 0.30: forgot +0.5 / +8.0 points ± sqrt(2)·0.99
    expect(rows.find((r) => r.startsWith('mean forgetting'))).toMatch(/\+0\.5 ± 1\.4 points\s+\+8\.0 ± 1\.4 points/);
    const verdicts = await ev.locator('[data-testid="forgetting-verdicts"] li').allInnerTexts();
    expect(verdicts).toHaveLength(2);
    expect(verdicts.find((v) => v.startsWith('Most gain'))).toMatch(/no clear difference between 2 · top and 1 · interleaved .*difference 0\.1, within the combined standard error 0\.7/);
    expect(verdicts.find((v) => v.startsWith('Least forgetting'))).toMatch(/: 1 · interleaved \+0\.5 ± 1\.4 points, ahead of every other checkpoint by more than the combined standard error \(closest: 2 · top, difference 7\.5 > 1\.4\)/);
    // no mean over mixed units anywhere in the cell
    expect(await ev.innerText()).not.toContain('mean gain / mean forgetting');
    await summary.scrollIntoViewIfNeeded();
    await screenshot(page, 'cluster-03-forgetting-summary');
    expect(watched.errors).toEqual([]);
    expect(watched.foreignRequests).toEqual([]);
  }, 180_000);
});
