/**
 * The notebook as a researcher's daily tool (issue 13), in Chromium at 1024 px against a real
 * `blocklab serve` on its own store, checking what a person sees: every working cell shows the
 * `blocklab …` command that reproduces it (copyable); the Train form checks each field as it
 * is typed and has every option; one word for each run state in the cell, the sidebar, Compare
 * and the run page; readouts and elapsed time that survive leaving the notebook and resuming;
 * stale and refused results that do not linger; a question before an expansion replaces a model
 * other checkpoints came from; the divergence warning's Stop; the metric panels on three x axes;
 * one eval progress; Monaco taking the keys after Shift+Enter; the skip link; the chat's modes
 * and sampling settings; the SQL cell's highlighting, completion, rounding and CSV. Screenshots
 * of both themes go to test/.tmp/screenshots (daily-*.png).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoDir } from '../../src/main/engine/resources.js';
import { testDir } from '../helpers/tmp.js';
import { launchBrowser, recordStatus, untilDone, screenshot, setEditor, startServe, waitForStatus as waitFor, watchPage, type Served } from './harness.js';

let dir: string;
let work: string;
let served: Served;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let watched: ReturnType<typeof watchPage>;

const demo = () => demoDir();
const code = () => join(demo(), 'corpora', 'code', 'train.jsonl');

/** The notebook this file works in: small runs on the bundled model, and a chat turn saved with an empty answer. */
function notebookFile() {
  const trainBase = { model: join(work, 'expanded'), data: [code()], batch: 2, seq: 64 };
  return {
    format: 'blocklab-notebook',
    version: 1,
    name: 'Daily tool',
    cells: [
      { id: 'base', kind: 'model', source: '', state: { path: join(demo(), 'base-model') } },
      { id: 'expand', kind: 'expansion', source: '{\n  "blocks": 2,\n  "placement": "interleave"\n}\n', state: { model: join(demo(), 'base-model'), out: join(work, 'expanded') } },
      { id: 'tr', kind: 'train', source: '', state: { ...trainBase, method: 'blocks', steps: 12, lr: 0.001, evalEvery: 4, name: 'small', out: join(work, 'run-a') } },
      { id: 'div', kind: 'train', source: '', state: { ...trainBase, method: 'full', steps: 200, lr: 1, warmup: 0, clip: 0, name: 'too hot', out: join(work, 'run-div') } },
      {
        id: 'ev',
        kind: 'eval',
        source: '',
        state: { base: join(demo(), 'base-model'), checkpoints: [join(work, 'expanded'), join(work, 'run-a', 'model')], benchmarks: ['builtin:general-mc', 'builtin:code-ppl'], limit: 6 },
      },
      {
        id: 'chat',
        kind: 'chat',
        source: '',
        state: {
          models: [join(demo(), 'base-model')],
          settings: { mode: 'completion', temperature: 0, maxTokens: 6 },
          transcripts: [
            [
              { role: 'user', content: 'def f():' },
              { role: 'assistant', content: '', stats: { tokensPerSecond: 0, tokens: 1, finishReason: 'eos' } },
            ],
          ],
        },
      },
      { id: 'cmp', kind: 'compare', source: '', state: { runIds: [] } },
      { id: 'sql', kind: 'sql', source: 'SELECT 1', state: {} },
    ],
  };
}

beforeAll(async () => {
  dir = await testDir('daily');
  work = join(dir, 'work');
  served = await startServe(join(dir, 'store', 'blocklab.sqlite'));
  browser = await launchBrowser();
  context = await browser.newContext({ viewport: { width: 1024, height: 860 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: `http://127.0.0.1:${served.port}` });
  page = await context.newPage();
  watched = watchPage(page, `http://127.0.0.1:${served.port}`);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await served?.stop();
}, 60_000);

const cellById = (id: string): Locator => page.locator(`[data-testid="cell"][data-cell-id="${id}"]`);
const runItem = (name: string): Locator => page.locator('[data-testid="run-item"]', { hasText: name });

const waitForStatus = (c: Locator, phases: string[], timeout = 180_000) => waitFor(c, phases, { timeout, log: () => served.log() });

async function fillField(c: Locator, testid: string, value: string): Promise<void> {
  await c.locator(`[data-testid="${testid}"]`).fill(value);
}

/** The stroke opacities of an SVG chart's lines (attribute or style, as ECharts writes them). */
function strokeOpacities(paths: Locator): Promise<string[]> {
  return paths.evaluateAll((ps) => ps.map((p) => p.getAttribute('stroke-opacity') ?? p.getAttribute('opacity') ?? (p as unknown as { style: { strokeOpacity: string } }).style.strokeOpacity).filter((v): v is string => !!v));
}

/** "1m 5s" / "42s" → seconds */
function seconds(text: string): number {
  const m = /(?:(\d+)h\s*)?(?:(\d+)m\s*)?(\d+)s/.exec(text);
  if (!m) throw new Error(`not a duration: ${text}`);
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3]);
}

describe('the notebook as a daily tool', () => {
  it('opens the notebook; the skip link jumps past the sidebar', async () => {
    await page.goto(served.url);
    await expect.poll(() => page.locator('[data-testid="cell"]').count(), { timeout: 30_000 }).toBeGreaterThan(0);
    const file = join(dir, 'daily.blocklab.json');
    await writeFile(file, JSON.stringify(notebookFile()));
    await page.locator('[data-testid="notebook-import"]').setInputFiles(file);
    await expect.poll(() => page.locator('[data-testid="notebook-name"]').inputValue(), { timeout: 30_000 }).toBe('Daily tool');
    // keyboard only, from a fresh page: the first Tab reaches the skip link, Enter lands in the notebook's first cell
    await page.reload();
    await expect.poll(() => cellById('base').count(), { timeout: 30_000 }).toBe(1);
    await page.keyboard.press('Tab');
    expect(await page.evaluate("document.activeElement && document.activeElement.getAttribute('data-testid')")).toBe('skip-link');
    expect(await page.locator('[data-testid="skip-link"]').isVisible()).toBe(true);
    await page.keyboard.press('Enter');
    expect(await page.evaluate(`document.activeElement.closest('[data-testid="cell"]').getAttribute('data-cell-id')`)).toBe('base');
  }, 60_000);

  it('the SQL cell highlights, completes the store\'s tables, rounds numbers and exports CSV at full precision', async () => {
    const sql = cellById('sql');
    await sql.scrollIntoViewIfNeeded();
    const editor = sql.locator('[data-testid="sql-source"]');
    await setEditor(editor, 'SELECT * FROM run');
    await page.keyboard.press('Control+Space');
    const suggest = page.locator('.suggest-widget .monaco-list-row');
    await expect.poll(() => suggest.allInnerTexts(), { timeout: 10_000 }).toEqual(expect.arrayContaining([expect.stringContaining('runs'), expect.stringContaining('run_events')]));
    await page.keyboard.press('Escape');
    await setEditor(editor, 'SELECT 0.123456789 AS x, 1.0 / 3 AS third, 7 AS n');
    // SELECT and AS are keywords: Monaco colours them differently from the numbers
    const classes = await editor.locator('.view-line span span').evaluateAll((spans) => spans.map((s) => `${s.textContent}|${s.className}`));
    const cls = (word: string) => classes.find((c) => c.startsWith(`${word}|`))?.split('|')[1];
    expect(cls('SELECT')).toBeTruthy();
    expect(cls('SELECT')).toBe(cls('AS'));
    expect(cls('SELECT')).not.toBe(cls('0.123456789'));
    // the first query starts the SQL engine process: its start (slow on a busy machine) is not the query's time
    await sql.locator('[data-testid="cell-run"]').click();
    await waitForStatus(sql, ['done']);
    const cells = await sql.locator('[data-testid="sql-result"] tbody td').allInnerTexts();
    expect(cells).toEqual(['0.123457', '0.333333', '7']);
    expect(await sql.locator('[data-testid="sql-result"] tbody td').first().getAttribute('title')).toBe('0.123456789');
    const [download] = await Promise.all([page.waitForEvent('download'), sql.locator('[data-testid="sql-csv"]').click()]);
    const path = join(dir, 'query.csv');
    await download.saveAs(path);
    expect(await readFile(path, 'utf8')).toBe('x,third,n\r\n0.123456789,0.3333333333333333,7\r\n');
    await screenshot(page, 'daily-10-sql');
  }, 120_000);

  it('Shift+Enter in the cell above leaves the expansion editor typeable; a fixed config is no longer "failed"', async () => {
    const ex = cellById('expand');
    await expect.poll(() => ex.locator('[data-testid="expansion-source"]').getAttribute('data-ready'), { timeout: 30_000 }).toBe('true');
    await expect.poll(() => ex.locator('[data-testid="block-diagram"] [data-block="new"]').count(), { timeout: 30_000 }).toBe(2);
    // the Model cell runs and moves focus into the editor below: the next keys go into the config
    await cellById('base').focus();
    await page.keyboard.press('Shift+Enter');
    await waitForStatus(cellById('base'), ['done']);
    await page.keyboard.press('Control+A');
    await page.keyboard.type('{"blocks": 1}');
    await expect.poll(() => ex.locator('[data-testid="block-diagram"] [data-block="new"]').count(), { timeout: 10_000 }).toBe(1);
    // a broken config fails the run; fixing it clears the failure (its error no longer applies)
    await setEditor(ex.locator('[data-testid="expansion-source"]'), '{"blocks": 2,');
    await ex.locator('[data-testid="cell-run"]').click();
    await waitForStatus(ex, ['failed']);
    expect(await ex.locator('[data-testid="cell-error"]').innerText()).toMatch(/not valid JSON/);
    await setEditor(ex.locator('[data-testid="expansion-source"]'), '{"blocks": 2, "placement": "interleave"}');
    await expect.poll(() => ex.getAttribute('data-status')).toBe('idle');
    expect(await ex.locator('[data-testid="cell-status"]').innerText()).toBe('edited');
    expect(await ex.locator('[data-testid="cell-error"]').count()).toBe(0);
    // the command, whole and copyable, before Run
    const cmd = await ex.locator('[data-testid="expansion-command-text"]').innerText();
    expect(cmd).toBe(`blocklab expand ${join(demo(), 'base-model')} --out ${join(work, 'expanded')} --blocks 2 --placement interleave --overwrite`);
    await ex.locator('[data-testid="expansion-command-copy"]').click();
    expect(await page.evaluate('navigator.clipboard.readText()')).toBe(cmd);
    await ex.locator('[data-testid="cell-run"]').click();
    await waitForStatus(ex, ['done']);
    expect(await ex.locator('[data-testid="expand-identity"]').innerText()).toMatch(/passed/);
  }, 180_000);

  it('checks the Train form field by field as it is typed, with every option under Advanced', async () => {
    const tr = cellById('tr');
    await tr.scrollIntoViewIfNeeded();
    await fillField(tr, 'train-steps', '0');
    await fillField(tr, 'train-lr', '1e9');
    await fillField(tr, 'train-batch', '100000');
    expect(await tr.locator('[data-testid="train-steps-error"]').innerText()).toBe('must be at least 1');
    expect(await tr.locator('[data-testid="train-lr-error"]').innerText()).toBe('must be at most 1 (typical: 1e-5 to 1e-3)');
    expect(await tr.locator('[data-testid="train-batch-error"]').innerText()).toBe('must be at most 4,096');
    await screenshot(page, 'daily-01-train-validation');
    // Run refuses with all three at once, and starts nothing
    await tr.locator('[data-testid="cell-run"]').click();
    await waitForStatus(tr, ['failed']);
    expect(await tr.locator('[data-testid="cell-error"]').innerText()).toBe('fix the settings first: Steps must be at least 1; Learning rate must be at most 1 (typical: 1e-5 to 1e-3); Batch must be at most 4,096');
    expect(await tr.locator('[data-testid="train-resume"]').count()).toBe(0);
    await fillField(tr, 'train-steps', '40');
    await fillField(tr, 'train-lr', '0.001');
    await fillField(tr, 'train-batch', '2');
    // no field errors left (the memory plan's note is not one: it may still show the refused batch's plan)
    expect(await tr.locator('[data-testid^="train-"][data-testid$="-error"]').count()).toBe(0);
    // the rarely changed options, folded; the command follows them
    await tr.locator('[data-testid="train-advanced"] summary').click();
    for (const id of ['train-warmup', 'train-min-lr-ratio', 'train-weight-decay', 'train-beta1', 'train-beta2', 'train-clip', 'train-grad-accum', 'train-save-every', 'train-keep-checkpoints', 'train-eval-batches', 'train-val-fraction', 'train-layers']) {
      expect(await tr.locator(`[data-testid="${id}"]`).count(), id).toBe(1);
    }
    await fillField(tr, 'train-warmup', '50');
    expect(await tr.locator('[data-testid="train-warmup-error"]').innerText()).toBe('must not be longer than the run (40 steps)');
    await fillField(tr, 'train-warmup', '3');
    await fillField(tr, 'train-seed', '5');
    // the run pauses itself after step 3 (with a checkpoint): the pause below cannot lose a race with a fast machine
    await fillField(tr, 'train-stop-after', '40');
    expect(await tr.locator('[data-testid="train-stop-after-error"]').innerText()).toBe('must be before the last step (40)');
    await fillField(tr, 'train-stop-after', '3');
    await expect
      .poll(() => tr.locator('[data-testid="train-command-text"]').innerText())
      .toBe(`blocklab train ${join(work, 'expanded')} --data ${code()} --out ${join(work, 'run-a')} --method blocks --steps 40 --lr 0.001 --batch 2 --seq 64 --warmup 3 --seed 5 --eval-every 4 --stop-after 3 --name small`);
  }, 120_000);

  let pausedElapsed = 0;
  let readouts: string[] = [];

  it('trains: cell and sidebar show the same step; a pause reads "paused" everywhere; readouts survive leaving the notebook', async () => {
    const tr = cellById('tr');
    await tr.locator('[data-testid="cell-run"]').click();
    // at the same moment, the sidebar's run says the step the cell says
    await expect.poll(() => tr.locator('[data-testid="train-step"]').count(), { timeout: 120_000 }).toBe(1);
    for (let i = 0; i < 3; i++) {
      // both read in one go, so they are the same moment
      const [cellStep, sidebar] = (await page.evaluate(`[
        document.querySelector('[data-cell-id="tr"] [data-testid="train-stats"]')?.textContent ?? '',
        [...document.querySelectorAll('[data-testid="run-item"]')].find((e) => e.textContent.includes('small'))?.querySelector('[data-testid="run-item-meta"]')?.textContent ?? '',
      ]`)) as [string, string];
      const m = /step\s*(\d+)\s*\/\s*(\d+)/.exec(cellStep.replace(/\u2009/g, ''));
      expect(m, cellStep).not.toBeNull();
      expect(sidebar).toContain(`${m![1]}/${m![2]}`);
      await page.waitForTimeout(300);
    }
    await expect.poll(() => tr.locator('[data-testid="cell-status"]').innerText(), { timeout: 120_000 }).toBe('paused');
    expect(Number(await tr.locator('[data-testid="loss-chart"]').getAttribute('data-points'))).toBe(3);
    await expect.poll(() => runItem('small').locator('[data-testid="run-item-meta"]').innerText(), { timeout: 10_000 }).toMatch(/· paused ·/);
    expect(await tr.locator('[data-testid="train-run-status"]').innerText()).toBe('paused');
    expect(await tr.locator('[data-testid="train-resume"]').innerText()).toMatch(/Resume run \d+/);
    const cmp = cellById('cmp');
    await expect.poll(() => cmp.locator('[data-testid="compare-runs"]').innerText(), { timeout: 10_000 }).toMatch(/small #\d+\s+blocks\s+paused/);
    expect(await page.locator('body').innerText()).not.toMatch(/cancelled/i);
    // lr, grad norm, tokens/s and elapsed, before leaving the notebook and after coming back
    const read = () => Promise.all(['train-lr-readout', 'train-grad-readout', 'train-tps-readout', 'train-elapsed', 'train-step'].map((id) => cellById('tr').locator(`[data-testid="${id}"]`).innerText()));
    readouts = await read();
    pausedElapsed = seconds(readouts[3]!);
    expect(readouts[0]).toMatch(/lr\s*\d/);
    await page.locator('[data-testid="new-notebook"]').click();
    await expect.poll(() => page.locator('[data-testid="cell"]').count(), { timeout: 10_000 }).toBe(0);
    await page.locator('[data-testid="notebook-item"]', { hasText: 'Daily tool' }).click();
    await expect.poll(() => cellById('tr').locator('[data-testid="train-step"]').count(), { timeout: 30_000 }).toBe(1);
    await expect.poll(read, { timeout: 10_000 }).toEqual(readouts);
    // and after a reload, from what the store recorded
    await page.reload();
    await expect.poll(() => cellById('tr').locator('[data-testid="train-step"]').count(), { timeout: 30_000 }).toBe(1);
    await expect.poll(read, { timeout: 10_000 }).toEqual(readouts);
    await screenshot(page, 'daily-02-paused');
  }, 300_000);

  it('resumes: elapsed time continues from the pause; lr, grad norm and tokens/s are charted on steps, tokens or time', async () => {
    const tr = cellById('tr');
    await tr.scrollIntoViewIfNeeded();
    // every status the cell takes from here: "running", then "done", however quickly the rest of the run goes
    const statuses = await recordStatus(tr, 'resume');
    await tr.locator('[data-testid="train-resume"]').click();
    expect(await untilDone(tr, statuses, { timeout: 240_000, log: () => served.log() })).toEqual(['running', 'done']);
    expect(await tr.locator('[data-testid="cell-status"]').innerText()).toBe('done');
    expect(seconds(await tr.locator('[data-testid="train-elapsed"]').innerText())).toBeGreaterThanOrEqual(pausedElapsed);
    // the val loss readout is the last validation (step 40), as the run page and the store have it
    const stats = await tr.locator('[data-testid="train-stats"]').innerText();
    const val = Number(/val loss\s*([\d.]+)/.exec(stats)?.[1]);
    expect(val).toBeGreaterThan(0);
    expect(await tr.locator('[data-testid="train-val-readout"]').getAttribute('data-step')).toBe('40');
    for (const panel of ['loss-chart', 'train-plot-lr', 'train-plot-grad_norm', 'train-plot-tokens_per_second', 'train-plot-backend_bytes']) {
      await expect.poll(async () => Number(await tr.locator(`[data-testid="${panel}"]`).getAttribute('data-points')), { timeout: 10_000 }).toBe(40);
    }
    // the backend's memory after the last step (the wasm heap here), as W&B's system panel shows it
    expect(await tr.locator('[data-testid="train-memory-readout"]').innerText()).toMatch(/^memory\s*[\d.]+ (MiB|GiB)$/);
    await tr.locator('[data-testid="train-plot-x-tokens"]').click();
    await expect.poll(() => tr.locator('[data-testid="train-plot-charts"]').getAttribute('data-x')).toBe('tokens');
    // 40 steps × 2 × 64 tokens = 5120: the axis reads in thousands
    await expect.poll(() => tr.locator('[data-testid="loss-chart"] svg text').allTextContents(), { timeout: 10_000 }).toContain('tokens seen');
    expect((await tr.locator('[data-testid="loss-chart"] svg text').allTextContents()).some((t) => /^[1-5](\.\d+)?k$/.test(t))).toBe(true);
    await tr.locator('[data-testid="train-plot-x-time"]').click();
    await expect.poll(async () => (await tr.locator('[data-testid="loss-chart"] svg text').allTextContents()).some((t) => /^\d+s$/.test(t)), { timeout: 10_000 }).toBe(true);
    await tr.locator('[data-testid="train-plot-x-step"]').click();
    await screenshot(page, 'daily-03-trained');
  }, 300_000);

  it('warns when a run diverges, and its Stop stops it: "stopped" in the cell, the sidebar and Compare', async () => {
    const dv = cellById('div');
    await dv.scrollIntoViewIfNeeded();
    await dv.locator('[data-testid="cell-run"]').click();
    const warning = dv.locator('[data-testid="train-divergence"]');
    await expect.poll(() => warning.count(), { timeout: 180_000 }).toBe(1);
    expect(await warning.innerText()).toMatch(/diverging:\s+the loss is [\d.]+ \(mean of the last 3 steps, at step \d+\), far above the [\d.]+ it started at/);
    await screenshot(page, 'daily-04-divergence');
    await dv.locator('[data-testid="train-divergence-stop"]').click();
    await expect.poll(() => dv.locator('[data-testid="cell-status"]').innerText(), { timeout: 120_000 }).toBe('stopped');
    expect(await dv.locator('[data-testid="train-run-status"]').innerText()).toBe('stopped');
    await expect.poll(() => runItem('too hot').locator('[data-testid="run-item-meta"]').innerText(), { timeout: 10_000 }).toMatch(/· stopped ·/);
    await expect.poll(() => cellById('cmp').locator('[data-testid="compare-runs"]').innerText(), { timeout: 10_000 }).toMatch(/too hot #\d+\s+full\s+stopped/);
    expect(await page.locator('body').innerText()).not.toMatch(/cancelled/i);
  }, 300_000);

  it('compares the runs: the count it says is the count ticked; lr, grad norm and tokens/s overlaid; the config diff', async () => {
    const cmp = cellById('cmp');
    await cmp.scrollIntoViewIfNeeded();
    const boxes = cmp.locator('[data-testid="compare-runs"] input[type="checkbox"]');
    await expect.poll(() => boxes.count(), { timeout: 30_000 }).toBe(2);
    await boxes.nth(0).check();
    await expect.poll(() => cmp.locator('[data-testid="cell-message"]').innerText()).toBe('1 run compared');
    await boxes.nth(1).check();
    await expect.poll(() => cmp.locator('[data-testid="cell-message"]').innerText()).toBe('2 runs compared');
    for (const panel of ['compare-chart', 'compare-lr', 'compare-grad_norm', 'compare-tokens_per_second', 'compare-backend_bytes']) {
      await expect.poll(() => cmp.locator(`[data-testid="${panel}"]`).getAttribute('data-runs'), { timeout: 20_000 }).toBe('2');
    }
    const diff = await cmp.locator('[data-testid="config-diff"]').innerText();
    for (const key of ['lr', 'warmup', 'clip', 'method.kind', 'seed']) expect(diff).toMatch(new RegExp(`^${key.replace('.', '\\.')}\\t`, 'm'));
    await cmp.locator('[data-testid="compare-charts"]').scrollIntoViewIfNeeded();
    await screenshot(page, 'daily-05-compare');
  }, 120_000);

  it('opens a run page from the sidebar: config, summary, command, lineage, checkpoints, status history, charts', async () => {
    const command = await cellById('tr').locator('[data-testid="train-command-text"]').innerText();
    await runItem('small').click();
    try {
      await runPage(command);
    } finally {
      // back to the notebook for what follows, whatever happened here
      if (await page.locator('[data-testid="run-page-close"]').count()) await page.locator('[data-testid="run-page-close"]').click();
    }
    await expect.poll(() => cellById('tr').count(), { timeout: 10_000 }).toBe(1);
  }, 120_000);

  async function runPage(command: string): Promise<void> {
    const rp = page.locator('[data-testid="run-page"]');
    await expect.poll(() => rp.locator('[data-testid="run-page-history"]').count(), { timeout: 30_000 }).toBe(1);
    expect(await rp.locator('[data-testid="run-page-status"]').innerText()).toBe('completed');
    const history = await rp.locator('[data-testid="run-page-history"] tbody tr').allInnerTexts();
    expect(history.map((r) => r.split('\t')[1])).toEqual(['running', 'paused', 'resumed', 'completed']);
    expect(history[3]).toMatch(/\t40\t/);
    const config = await rp.locator('[data-testid="run-page-config"]').innerText();
    expect(config).toMatch(/^warmup\t3$/m);
    expect(config).toMatch(/^adamw\.beta2\t0\.95$/m);
    expect(config).toMatch(/^seed\t5$/m);
    expect(await rp.locator('[data-testid="run-page-command-text"]').innerText()).toBe(command);
    expect(await rp.locator('[data-testid="run-page-summary"]').innerText()).toMatch(/last loss\s+[\d.]+\s+validation loss\s+[\d.]+/);
    expect(await rp.locator('[data-testid="run-page-lineage"]').innerText()).toMatch(/expanded[\s\S]*this run[\s\S]*run-a\/model/);
    expect(await rp.locator('[data-testid="run-page-checkpoints"] tbody tr').count()).toBeGreaterThanOrEqual(2);
    await expect.poll(async () => Number(await rp.locator('[data-testid="run-page-lr"]').getAttribute('data-points')), { timeout: 20_000 }).toBe(40);
    await screenshot(page, 'daily-06-run-page');
    await page.locator('[data-testid="theme-toggle"]').click();
    await screenshot(page, 'daily-07-run-page-dark');
    await page.locator('[data-testid="theme-toggle"]').click();
  }

  it('asks before an expansion replaces a model that checkpoints were trained from, offering a new folder', async () => {
    const ex = cellById('expand');
    await ex.scrollIntoViewIfNeeded();
    await ex.locator('[data-testid="expansion-source"] .view-lines').click();
    await page.keyboard.press('Shift+Enter');
    const ask = ex.locator('[data-testid="expansion-confirm"]');
    await expect.poll(() => ask.count(), { timeout: 30_000 }).toBe(1);
    expect(await ask.innerText()).toMatch(/run-a\/model \(train\)/);
    expect(await ex.locator('[data-testid="expansion-confirm-new"]').innerText()).toBe('Write to a new folder (expanded-2)');
    await screenshot(page, 'daily-08-expansion-confirm');
    await ex.locator('[data-testid="expansion-confirm-new"]').click();
    await waitForStatus(ex, ['done']);
    expect(await ex.locator('[data-testid="expand-out"]').innerText()).toBe(join(work, 'expanded-2'));
    expect(await ex.locator('[data-testid="expansion-command-text"]').innerText()).toContain(`--out ${join(work, 'expanded-2')}`);
  }, 180_000);

  it('the Model cell drops the old card for a folder that is not a model, and says so once', async () => {
    const m = cellById('base');
    await m.scrollIntoViewIfNeeded();
    expect(await m.locator('[data-testid="model-info"]').count()).toBe(1);
    expect(await m.locator('[data-testid="export-command-text"]').innerText()).toBe(`blocklab export ${join(demo(), 'base-model')} --format gguf --out <out-file.gguf>`);
    const input = m.locator('[data-testid="folder-input"]');
    await input.fill(work);
    await input.press('Enter');
    await expect.poll(() => m.locator('[data-testid="model-info"]').count(), { timeout: 10_000 }).toBe(0);
    await expect.poll(() => m.locator('[data-testid="model-pick-error"]').count(), { timeout: 10_000 }).toBe(1);
    await m.locator('[data-testid="cell-run"]').click();
    await waitForStatus(m, ['failed']);
    // one failure, not the same one twice
    expect(await m.locator('.error-box').count()).toBe(1);
    await input.fill(join(demo(), 'base-model'));
    await input.press('Enter');
    await expect.poll(() => m.locator('[data-testid="model-info"]').count(), { timeout: 10_000 }).toBe(1);
    expect(await m.locator('.error-box').count()).toBe(0);
  }, 60_000);

  it('evaluates with one overall progress and counts that agree', async () => {
    const ev = cellById('ev');
    await ev.scrollIntoViewIfNeeded();
    expect(await ev.locator('[data-testid="eval-command-text"]').innerText()).toBe(
      `blocklab compare --base ${join(demo(), 'base-model')} ${join(work, 'expanded')} ${join(work, 'run-a', 'model')} --limit 6 --bench builtin:general-mc builtin:code-ppl`,
    );
    await ev.locator('[data-testid="cell-run"]').click();
    const seen: string[] = [];
    while ((await ev.getAttribute('data-status')) === 'running' || seen.length === 0) {
      const [text, width] = (await page.evaluate(`(() => {
        const c = document.querySelector('[data-cell-id="ev"]');
        const bar = c?.querySelector('[data-testid="cell-progress"] > div');
        return [c?.querySelector('[data-testid="cell-progress-text"]')?.textContent ?? '', bar ? parseFloat(bar.style.width) : -1];
      })()`)) as [string, number];
      if (text) {
        seen.push(text);
        const m = /(\d+)\/(\d+)\s+evaluations/.exec(text);
        expect(m, text).not.toBeNull();
        expect(Number(m![2])).toBe(6); // 3 checkpoints (the base too) × 2 benchmarks
        // the bar is the same overall share the text counts: between done and done + 1 of 6
        expect(width).toBeGreaterThanOrEqual((100 * Number(m![1])) / 6 - 0.01);
        expect(width).toBeLessThanOrEqual((100 * (Number(m![1]) + 1)) / 6 + 0.01);
      }
      if ((await ev.getAttribute('data-status')) === 'failed') break;
      await page.waitForTimeout(150);
    }
    await waitForStatus(ev, ['done'], 240_000);
    // the current evaluation beside the whole while it is under way (general-mc: 4 choices × 6 items = 24 requests, 8 a batch)
    expect(seen.some((t) => /^\d\/6 evaluations · now (base-model|expanded|run-a\/model) × general-mc: \d+\/24 requests( · ETA .+)?$/.test(t)), seen.join(' | ')).toBe(true);
    expect(await ev.locator('[data-testid="cell-message"]').innerText()).toMatch(/^6\/6 evaluations \(3 checkpoints × 2 benchmarks\)/);
  }, 300_000);

  it('chats in completion mode with top-k, repetition penalty and seed; shows the command; an empty answer says so', async () => {
    const ch = cellById('chat');
    await ch.scrollIntoViewIfNeeded();
    // the saved turn whose answer was empty
    expect(await ch.locator('[data-testid="chat-answer-empty"]').innerText()).toBe('(empty answer: the model wrote no text — its first token was the end of text)');
    await ch.locator('summary', { hasText: 'Sampling settings' }).click();
    await fillField(ch, 'chat-top-k', '-1');
    expect(await ch.locator('[data-testid="chat-top-k-error"]').innerText()).toBe('must be 0 (off) or more');
    await fillField(ch, 'chat-top-k', '5');
    await fillField(ch, 'chat-repetition-penalty', '1.3');
    await fillField(ch, 'chat-seed', '7');
    await ch.locator('[data-testid="chat-input"]').fill('The meaning of');
    const command = `blocklab generate ${join(demo(), 'base-model')} --prompt 'The meaning of' --max-tokens 6 --temperature 0 --top-p 0.95 --top-k 5 --repetition-penalty 1.3 --seed 7`;
    await expect.poll(() => ch.locator('[data-testid="chat-command-0-text"]').innerText()).toBe(command);
    await ch.locator('[data-testid="chat-send"]').click();
    await expect.poll(() => ch.locator('[data-testid="chat-tps"]').count(), { timeout: 90_000 }).toBe(1);
    expect((await ch.locator('[data-testid="chat-answer"]').innerText()).length).toBeGreaterThan(0);
    expect(await ch.locator('[data-testid="chat-settings-line"]').innerText()).toBe('completion · temperature 0 · top-p 0.95 · top-k 5 · repetition penalty 1.3 · seed 7 · max 6 tokens');
    // after the answer, the command that wrote it
    expect(await ch.locator('[data-testid="chat-command-0-text"]').innerText()).toBe(command);
    await screenshot(page, 'daily-09-chat');
  }, 120_000);

  it('draws raw lines visibly in the dark theme; both themes at 1024 px', async () => {
    const tr = cellById('tr');
    await tr.scrollIntoViewIfNeeded();
    await tr.locator('[data-testid="train-plot-smoothing"]').fill('0.8');
    await page.locator('[data-testid="theme-toggle"]').click();
    await expect.poll(() => page.evaluate('document.documentElement.dataset.theme')).toBe('dark');
    // the raw line behind the smoothed one: half opaque on the dark background
    await expect
      .poll(() => strokeOpacities(tr.locator('[data-testid="loss-chart"] path')), { timeout: 10_000 })
      .toContain('0.5');
    await tr.locator('[data-testid="train-plot-charts"]').scrollIntoViewIfNeeded();
    await screenshot(page, 'daily-11-train-dark');
    await cellById('tr').locator('[data-testid="train-command"]').scrollIntoViewIfNeeded();
    await screenshot(page, 'daily-12-train-form-dark');
    await page.locator('[data-testid="theme-toggle"]').click();
    await expect
      .poll(() => strokeOpacities(tr.locator('[data-testid="loss-chart"] path')), { timeout: 10_000 })
      .toContain('0.3');
  }, 60_000);

  it('made no request outside 127.0.0.1 and threw no page errors', () => {
    expect(watched.foreignRequests).toEqual([]);
    expect(watched.errors).toEqual([]);
  });
});
