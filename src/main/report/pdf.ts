/**
 * HTML → PDF through Chromium, driven by playwright-core (STACK.md: Debian's chromium, never a
 * downloaded browser). The page may load nothing: every request is recorded and aborted, and
 * any request at all fails the step — which is also the proof that the report opens offline.
 * The Electron app will use `webContents.printToPDF` instead.
 */
import { constants } from 'node:fs';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { escapeHtml } from './escape.js';

export const DEFAULT_CHROMIUM = '/usr/bin/chromium';

/** The launch flags seen working with Debian's chromium (STACK.md). */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Where Chromium is looked for: $BLOCKLAB_CHROMIUM, else /usr/bin/chromium. */
export function chromiumPath(): string {
  return process.env.BLOCKLAB_CHROMIUM || DEFAULT_CHROMIUM;
}

/** Null when Chromium can be run from `path`, else a one-line reason with the fix. */
export async function chromiumMissing(path = chromiumPath()): Promise<string | null> {
  try {
    await access(path, constants.X_OK);
    return null;
  } catch {
    return `no Chromium at ${path}, so no PDF was made: install it (\`apt-get install chromium\`) or set BLOCKLAB_CHROMIUM to a Chromium or Chrome binary`;
  }
}

/** A PDF step that cannot finish; the message is one line for the user. */
export class PdfError extends Error {
  constructor(
    message: string,
    readonly requests: string[] = [],
  ) {
    super(message);
    this.name = 'PdfError';
  }
}

export interface PdfOptions {
  executablePath?: string;
  /** shown in the page footer */
  title?: string;
  /** overall limit for launching, loading and printing (default 60 s) */
  timeoutMs?: number;
}

export interface PdfOutput {
  pdf: Buffer;
  /** every request the page attempted (must be empty for a PDF to come back) */
  requests: string[];
  ms: number;
}

/**
 * Prints `html` to an A4 PDF with backgrounds, page numbers in the footer. Runs Chromium with
 * a fresh temporary profile (removed afterwards), JavaScript off, the network emulated offline
 * and every request routed to an abort. Throws PdfError when Chromium cannot run or when the
 * page tried to load anything.
 */
export async function htmlToPdf(html: string, opts: PdfOptions = {}): Promise<PdfOutput> {
  const t0 = performance.now();
  const executablePath = opts.executablePath ?? chromiumPath();
  const missing = await chromiumMissing(executablePath);
  if (missing) throw new PdfError(missing);
  const timeout = opts.timeoutMs ?? 60_000;

  const { chromium } = await import('playwright-core');
  const profile = await mkdtemp(join(tmpdir(), 'blocklab-pdf-'));
  const requests: string[] = [];
  let context: Awaited<ReturnType<typeof chromium.launchPersistentContext>> | undefined;
  try {
    try {
      context = await chromium.launchPersistentContext(profile, {
        executablePath,
        headless: true,
        args: CHROMIUM_ARGS,
        timeout,
        javaScriptEnabled: false,
        offline: true,
        serviceWorkers: 'block',
        acceptDownloads: false,
      });
    } catch (e) {
      const first = String((e as Error).message ?? e).split('\n')[0];
      throw new PdfError(`could not start Chromium at ${executablePath} (${first}); check the install (\`apt-get install chromium\`) or set BLOCKLAB_CHROMIUM`);
    }
    context.setDefaultTimeout(timeout);
    context.on('request', (r) => {
      const url = r.url();
      if (!url.startsWith('data:')) requests.push(url);
    });
    await context.route('**/*', (route) => {
      const url = route.request().url();
      return url.startsWith('data:') ? route.continue() : route.abort('blockedbyclient');
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('websocket', (ws) => requests.push(ws.url()));
    await page.setContent(html, { waitUntil: 'load' });
    const footer = `<div style="width:100%;font-size:8px;color:#6b7078;padding:0 12mm;display:flex;justify-content:space-between;font-family:Helvetica,Arial,sans-serif"><span>${escapeHtml(
      (opts.title ?? '').slice(0, 120),
    )}</span><span><span class="pageNumber"></span> / <span class="totalPages"></span></span></div>`;
    const pdf = await page.pdf({
      format: 'A4',
      printBackground: true,
      displayHeaderFooter: true,
      headerTemplate: '<span></span>',
      footerTemplate: footer,
      margin: { top: '14mm', bottom: '16mm', left: '12mm', right: '12mm' },
    });
    if (requests.length > 0) {
      const shown = requests.slice(0, 3).join(', ') + (requests.length > 3 ? ` and ${requests.length - 3} more` : '');
      throw new PdfError(`the report tried to load ${requests.length} resource(s) (${shown}); it must open offline, so no PDF was written`, requests);
    }
    return { pdf, requests, ms: performance.now() - t0 };
  } finally {
    await context?.close().catch(() => undefined);
    await rm(profile, { recursive: true, force: true }).catch(() => undefined);
  }
}
