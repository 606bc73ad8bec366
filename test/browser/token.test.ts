/**
 * The server token in a real browser (issue 11, item 8): the printed URL's ?token= leaves the
 * address bar and the history after the first load, a reload still reaches the API (the tab
 * keeps the token in sessionStorage), and what the browser sends to another port on 127.0.0.1
 * — cookies are not port-isolated — opens neither the API nor anything else.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { Browser, Page } from 'playwright-core';
import { chromiumMissing, chromiumPath } from '../../src/main/report/pdf.js';
import { testDir } from '../helpers/tmp.js';
import { launchBrowser, startServe, type Served } from './harness.js';

const skip = (await chromiumMissing(chromiumPath())) !== null && !process.env.CI;

let served: Served;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  if (skip) return;
  const dir = await testDir('token');
  served = await startServe(join(dir, 'store.sqlite'));
  browser = await launchBrowser();
  page = await (await browser.newContext()).newPage();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await served?.stop();
});

/** Waits for the sidebar to list the demo notebook: the page reached the API. */
async function apiReached(): Promise<void> {
  await page.locator('text=LLaMA Pro demo').first().waitFor({ timeout: 60_000 });
}

describe.skipIf(skip)('the token in the browser', () => {
  it('leaves the address bar after the first load, and a reload still reaches the API', async () => {
    await page.goto(served.url);
    await apiReached();
    expect(page.url()).not.toContain('token');
    expect(page.url()).not.toContain(served.token);
    // the history entry was replaced, not added to (the tab's first entry is about:blank)
    expect(await page.evaluate('history.length')).toBe(2);
    await page.reload();
    await apiReached();
    expect(page.url()).not.toContain(served.token);
  }, 120_000);

  it('sends another port on 127.0.0.1 nothing that opens the API', async () => {
    const seen: string[] = [];
    const other = createServer((req, res) => {
      seen.push(req.headers.cookie ?? '');
      res.end('another local server');
    });
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (other.address() as AddressInfo).port;
      const tab = await page.context().newPage();
      await tab.goto(`http://127.0.0.1:${port}/`);
      await tab.close();
      expect(seen.length).toBeGreaterThan(0);
      const cookies = seen.join('; ');
      expect(cookies).not.toContain(served.token);
      // whatever it got, it cannot open the API with it
      for (const part of cookies.split(';').map((c) => c.trim()).filter(Boolean)) {
        const value = part.split('=').slice(1).join('=');
        const ws = new WebSocket(`ws://127.0.0.1:${served.port}/api`, ['blocklab', `blocklab-token.${value}`]);
        const outcome = await new Promise<string>((resolve) => {
          ws.once('open', () => resolve('open'));
          ws.once('error', () => resolve('refused'));
          ws.once('unexpected-response', () => resolve('refused'));
        });
        ws.terminate();
        expect(outcome, part).toBe('refused');
      }
    } finally {
      other.close();
    }
  }, 60_000);
});
