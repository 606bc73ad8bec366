/**
 * The browser tests' harness: a real `blocklab serve` (node bin/blocklab.mjs, the built UI in
 * out/renderer, a fresh store) and Debian's Chromium driven by playwright-core. Screenshots go
 * to $BLOCKLAB_SCREENSHOTS (default test/.tmp/screenshots) for a person to look at.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { CHROMIUM_ARGS, chromiumPath } from '../../src/main/report/pdf.js';
import { REPO_ROOT } from '../helpers/cli-runner.js';

export const SCREENSHOTS = process.env.BLOCKLAB_SCREENSHOTS ?? join(REPO_ROOT, 'test', '.tmp', 'screenshots');

export interface Served {
  url: string;
  port: number;
  token: string;
  proc: ChildProcess;
  /** everything the server wrote to stderr (for failure messages) */
  log(): string;
  stop(): Promise<void>;
}

/** Starts `blocklab serve --port 0` on its own store; resolves with the URL it prints. */
export async function startServe(storePath: string): Promise<Served> {
  if (!existsSync(join(REPO_ROOT, 'out', 'renderer', 'index.html'))) {
    throw new Error('out/renderer is missing: the browser tests need the built UI (npm test builds it; or run npm run build)');
  }
  const proc = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'blocklab.mjs'), '--store', storePath, 'serve', '--port', '0'], {
    cwd: REPO_ROOT,
    env: { ...process.env, NO_COLOR: '1', BLOCKLAB_STORE: storePath },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`blocklab serve printed no URL in 60 s: ${err}`)), 60_000);
    proc.stdout!.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const m = /http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]+/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[0]);
      }
    });
    proc.once('exit', (code) => reject(new Error(`blocklab serve exited (${code}): ${err}`)));
  });
  const u = new URL(url);
  return {
    url,
    port: Number(u.port),
    token: u.searchParams.get('token')!,
    proc,
    log: () => err,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
        setTimeout(() => proc.kill('SIGKILL'), 20_000).unref();
      }),
  };
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: chromiumPath(), args: CHROMIUM_ARGS, headless: true });
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: false });
}

/** Collects what the page logs as errors and what requests leave 127.0.0.1 (there must be none). */
export function watchPage(page: Page, origin: string): { errors: string[]; foreignRequests: string[] } {
  const errors: string[] = [];
  const foreignRequests: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(origin) && !u.startsWith('ws://127.0.0.1') && !u.startsWith('data:') && !u.startsWith('blob:')) foreignRequests.push(u);
  });
  return { errors, foreignRequests };
}

/**
 * Waits until a notebook cell's status (its data-status) is one of `phases`; fails at once
 * with the cell's error text when it fails (unless 'failed' is awaited), and after `timeout`
 * with the server's log.
 */
export async function waitForStatus(cell: Locator, phases: string[], opts: { timeout?: number; log?: () => string } = {}): Promise<string> {
  const timeout = opts.timeout ?? 120_000;
  const deadline = Date.now() + timeout;
  for (;;) {
    const status = (await cell.getAttribute('data-status')) ?? '';
    if (phases.includes(status)) return status;
    if (status === 'failed') throw new Error(`the ${await cell.getAttribute('data-kind')} cell failed: ${await cell.locator('[data-testid="cell-error"]').innerText().catch(() => '?')}`);
    if (Date.now() > deadline) throw new Error(`the cell stayed "${status}" for ${timeout / 1000} s\n${opts.log?.().slice(-2000) ?? ''}`);
    await cell.page().waitForTimeout(200);
  }
}

/** Replaces the text of a Monaco editor (its wrapper) as a person would: click, select all, type. */
export async function setEditor(editor: Locator, text: string): Promise<void> {
  const page = editor.page();
  for (let i = 0; i < 150 && (await editor.getAttribute('data-ready')) !== 'true'; i++) await page.waitForTimeout(200);
  await editor.locator('.view-lines').click();
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText(text);
}

/** The text a Monaco editor shows (its visible lines), with its non-breaking spaces as spaces. */
export async function editorText(editor: Locator): Promise<string> {
  return (await editor.locator('.view-lines').innerText()).replace(/\u00a0/g, ' ');

}

/** A served notebook and a Chromium page on it: a fresh store under `dir`, a 1280 × 860 page, watched. */
export async function startSession(dir: string): Promise<{ served: Served; browser: Browser; page: Page; watched: ReturnType<typeof watchPage>; stop(): Promise<void> }> {
  const served = await startServe(join(dir, 'store', 'blocklab.sqlite'));
  const browser = await launchBrowser();
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  const watched = watchPage(page, `http://127.0.0.1:${served.port}`);
  return {
    served,
    browser,
    page,
    watched,
    stop: async () => {
      await browser.close();
      await served.stop();
    },
  };
}

/** One series as the ECharts instance on a chart holds it: what it draws. */
export interface DrawnSeries {
  id: string;
  name: string;
  type: string;
  data: unknown[];
}

/**
 * The series a chart draws, read from its ECharts instance (`getOption()`, exposed on the
 * chart's div by lib/charts.ts), not from what the component meant to pass it.
 */
export async function chartSeries(chart: Locator): Promise<DrawnSeries[]> {
  const option = await chartOption(chart);
  return ((option.series ?? []) as Record<string, unknown>[]).map((s) => ({ id: String(s.id ?? ''), name: String(s.name ?? ''), type: String(s.type), data: (s.data ?? []) as unknown[] }));
}

/** A chart's whole option as its ECharts instance holds it (functions, such as formatters, left out). */
export async function chartOption(chart: Locator): Promise<Record<string, unknown>> {
  return chart.evaluate((el) => {
    const read = (el as unknown as { chartOption?: () => unknown }).chartOption;
    if (!read) throw new Error('this element holds no chart (no chartOption on it)');
    return JSON.parse(JSON.stringify(read() ?? {})) as Record<string, unknown>;
  });
}

/** A line series' points as [x, y] (ECharts keeps them as given: [step, value] pairs). */
export function points(series: DrawnSeries | undefined): [number, number][] {
  if (!series) throw new Error('no such series in the chart');
  return series.data.map((p) => {
    if (!Array.isArray(p) || p.length !== 2) throw new Error(`not an [x, y] point: ${JSON.stringify(p)}`);
    return [Number(p[0]), Number(p[1])];
  });
}

/** Runs `sql` on the server's store, opened read-only (the test reads what the app recorded; it writes nothing). */
export function storeRows<T = Record<string, unknown>>(storePath: string, sql: string, ...params: unknown[]): T[] {
  const db = new Database(storePath, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}

/**
 * Records every value a cell's data-status takes from now on (a MutationObserver in the page),
 * so a test can assert the cell went through "running" however quickly a run ended. `seen()`
 * returns the values in order, the one at the start first.
 */
export async function recordStatus(cell: Locator, key: string): Promise<{ seen(): Promise<string[]> }> {
  // the page's globals (this file is typed without the DOM's)
  type PageGlobals = { __statusLog?: Record<string, string[]>; MutationObserver: new (cb: () => void) => { observe(el: unknown, o: unknown): void } };
  await cell.evaluate((el, k) => {
    const w = globalThis as unknown as PageGlobals;
    w.__statusLog ??= {};
    const log = (w.__statusLog[k] = [el.getAttribute('data-status') ?? '']);
    new w.MutationObserver(() => {
      const s = el.getAttribute('data-status') ?? '';
      if (log[log.length - 1] !== s) log.push(s);
    }).observe(el, { attributes: true, attributeFilter: ['data-status'] });
  }, key);
  return { seen: () => cell.page().evaluate((k) => (globalThis as unknown as PageGlobals).__statusLog?.[k] ?? [], key) };
}

/**
 * Waits until the statuses `recordStatus` saw went through "running" and ended "done" (fails at
 * once with the cell's error if it failed, and after `timeout` with the server's log); returns
 * what it saw from "running" on, for the test to assert.
 */
export async function untilDone(cell: Locator, statuses: { seen(): Promise<string[]> }, opts: { timeout?: number; log?: () => string } = {}): Promise<string[]> {
  const timeout = opts.timeout ?? 240_000;
  const deadline = Date.now() + timeout;
  for (;;) {
    const seen = await statuses.seen();
    if (seen.includes('failed')) await waitForStatus(cell, ['done'], opts); // throws the cell's error
    const from = seen.indexOf('running');
    if (from >= 0 && seen[seen.length - 1] === 'done') return seen.slice(from);
    if (Date.now() > deadline) throw new Error(`the cell went ${seen.join(' → ')} and not through "running" to "done" in ${timeout / 1000} s\n${opts.log?.().slice(-2000) ?? ''}`);
    await cell.page().waitForTimeout(300);
  }
}
