/**
 * The memory plan in the notebook (src/renderer/src/components/MemoryPlan.svelte), in Chromium
 * against a real `blocklab serve`: the Model cell shows whether chatting with the checkpoint
 * fits; the Train cell re-plans as its settings change, and a batch far too large for the wasm
 * heap turns the plan red with what would fit, before anything is run.
 */
import type { Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDir } from '../helpers/tmp.js';
import { screenshot, startSession } from './harness.js';

let session: Awaited<ReturnType<typeof startSession>>;
let page: Page;

beforeAll(async () => {
  session = await startSession(await testDir('browser-plan'));
  page = session.page;
}, 120_000);

afterAll(async () => {
  await session?.stop();
}, 60_000);

const cell = (kind: string): Locator => page.locator(`[data-testid="cell"][data-kind="${kind}"]`).first();

describe('the memory plan in the cells', () => {
  it('the Model cell says chatting with the demo model fits, resident on the backend', async () => {
    await page.goto(session.served.url);
    const plan = cell('model').locator('[data-testid="memory-plan-chat"]');
    await expect.poll(() => plan.count(), { timeout: 60_000 }).toBe(1);
    expect(await plan.getAttribute('data-fits')).toBe('true');
    await plan.locator('summary').click();
    const text = await plan.innerText();
    expect(text).toMatch(/fits/);
    expect(text).toMatch(/every weight float32 on the backend/);
    expect(text).toMatch(/KV cache .* at 512 tokens/);
  }, 90_000);

  it('the Train cell plans its settings: a batch far too large is refused before Run, with what would fit', async () => {
    // the Train cell trains the expansion's output: make it
    const ex = cell('expansion');
    await ex.scrollIntoViewIfNeeded();
    await ex.locator('[data-testid="cell-run"]').click();
    await expect.poll(() => ex.getAttribute('data-status'), { timeout: 120_000 }).toBe('done');

    const tr = cell('train');
    await tr.scrollIntoViewIfNeeded();
    const plan = tr.locator('[data-testid="memory-plan-training"]');
    await expect.poll(() => plan.getAttribute('data-fits'), { timeout: 60_000 }).toBe('true');
    expect(await plan.locator('summary').innerText()).toMatch(/blocks, batch 4 × 128/);

    const batch = tr.locator('[data-testid="train-batch"]');
    await batch.fill('4096');
    await batch.press('Tab');
    await expect.poll(() => plan.getAttribute('data-fits'), { timeout: 30_000 }).toBe('false');
    expect(await plan.locator('summary').innerText()).toMatch(/does not fit/);
    const advice = await tr.locator('[data-testid="memory-plan-advice"]').innerText();
    expect(advice).toMatch(/wasm heap/);
    expect(advice).toMatch(/--batch \d+ fits/);
    await screenshot(page, 'memory-plan-train-refused');

    await batch.fill('4');
    await batch.press('Tab');
    await expect.poll(() => plan.getAttribute('data-fits'), { timeout: 30_000 }).toBe('true');
  }, 240_000);

  it('threw no page errors and made no request outside 127.0.0.1', () => {
    expect(session.watched.errors).toEqual([]);
    expect(session.watched.foreignRequests).toEqual([]);
  });
});
