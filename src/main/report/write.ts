/** Writes a report folder: report.html, report.md and (optionally) report.pdf, each atomically. */
import { mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFileAtomically } from '../engine/atomic.js';
import type { ReportData } from '../../shared/report.js';
import { renderHtml } from './html.js';
import { renderMarkdown } from './markdown.js';
import { htmlToPdf, PdfError } from './pdf.js';

export interface RenderedReport {
  html: string;
  markdown: string;
}

/** The report as a self-contained HTML page and as Markdown. Pure: same data, same output. */
export function renderReport(data: ReportData): RenderedReport {
  return { html: renderHtml(data), markdown: renderMarkdown(data) };
}

export interface WriteReportOptions {
  pdf: boolean;
  /** Chromium binary (default $BLOCKLAB_CHROMIUM or /usr/bin/chromium) */
  chromium?: string;
}

export interface WrittenReport {
  html: string;
  markdown: string;
  /** null when not asked for or when the PDF step failed (see pdfError) */
  pdf: string | null;
  /** one line: why there is no PDF */
  pdfError?: string;
  /** how the PDF step went: time, size, and the requests the page attempted (none, or it fails) */
  pdfStats?: { ms: number; bytes: number; requests: string[] };
}

/**
 * Writes report.html, report.md and, with `pdf`, report.pdf into `outDir` (created if needed).
 * Each file appears complete or not at all (temp + fsync + rename). A failed PDF step — no
 * Chromium, Chromium failing, or the page trying to load anything — does not throw: `pdf` is
 * null and `pdfError` says why. A report.pdf left from an earlier report is removed then (and
 * when no PDF is asked for), so the folder never pairs a new HTML with an old PDF.
 */
export async function writeReport(data: ReportData, outDir: string, opts: WriteReportOptions): Promise<WrittenReport> {
  const dir = resolve(outDir);
  await mkdir(dir, { recursive: true });
  const { html, markdown } = renderReport(data);
  const paths = { html: join(dir, 'report.html'), markdown: join(dir, 'report.md'), pdf: join(dir, 'report.pdf') };
  await writeFileAtomically(paths.html, html);
  await writeFileAtomically(paths.markdown, markdown);
  if (!opts.pdf) {
    await rm(paths.pdf, { force: true });
    return { html: paths.html, markdown: paths.markdown, pdf: null };
  }
  try {
    // For print, the configurations' <details> are rendered open.
    const out = await htmlToPdf(renderHtml(data, { expandDetails: true }), { executablePath: opts.chromium, title: data.title });
    await writeFileAtomically(paths.pdf, out.pdf);
    return { html: paths.html, markdown: paths.markdown, pdf: paths.pdf, pdfStats: { ms: out.ms, bytes: out.pdf.length, requests: out.requests } };
  } catch (e) {
    await rm(paths.pdf, { force: true });
    const requests = e instanceof PdfError ? e.requests : [];
    const message = e instanceof PdfError ? e.message : `the PDF step failed: ${String((e as Error)?.message ?? e).split('\n')[0]}`;
    return { html: paths.html, markdown: paths.markdown, pdf: null, pdfError: message, ...(requests.length ? { pdfStats: { ms: 0, bytes: 0, requests } } : {}) };
  }
}
