/** Writes a report folder: report.html, report.md and (optionally) report.pdf, as one atomic folder. */
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFolderAtomically } from '../engine/atomic.js';
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
  /** replace a report folder Blocklab wrote earlier (never a folder of anything else) */
  overwrite?: boolean;
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
 * Writes report.html, report.md and, with `pdf`, report.pdf into the folder `outDir`, which must
 * be new, empty, or (with `overwrite`) a report folder Blocklab wrote — never a folder of the
 * user's, whose files are never touched. The folder appears complete or not at all (built
 * beside it, then renamed into place), so it never pairs a new HTML with an old PDF. A failed
 * PDF step — no Chromium, Chromium failing, or the page trying to load anything — does not
 * throw: `pdf` is null and `pdfError` says why.
 */
export async function writeReport(data: ReportData, outDir: string, opts: WriteReportOptions): Promise<WrittenReport> {
  const dir = resolve(outDir);
  const paths = { html: join(dir, 'report.html'), markdown: join(dir, 'report.md'), pdf: join(dir, 'report.pdf') };
  return writeFolderAtomically(
    dir,
    opts.overwrite ?? false,
    async (tmp): Promise<WrittenReport> => {
      const { html, markdown } = renderReport(data);
      await writeFile(join(tmp, 'report.html'), html);
      await writeFile(join(tmp, 'report.md'), markdown);
      if (!opts.pdf) return { html: paths.html, markdown: paths.markdown, pdf: null };
      try {
        // For print, the configurations' <details> are rendered open.
        const out = await htmlToPdf(renderHtml(data, { expandDetails: true }), { executablePath: opts.chromium, title: data.title });
        await writeFile(join(tmp, 'report.pdf'), out.pdf);
        return { html: paths.html, markdown: paths.markdown, pdf: paths.pdf, pdfStats: { ms: out.ms, bytes: out.pdf.length, requests: out.requests } };
      } catch (e) {
        const requests = e instanceof PdfError ? e.requests : [];
        const message = e instanceof PdfError ? e.message : `the PDF step failed: ${String((e as Error)?.message ?? e).split('\n')[0]}`;
        return { html: paths.html, markdown: paths.markdown, pdf: null, pdfError: message, ...(requests.length ? { pdfStats: { ms: 0, bytes: 0, requests } } : {}) };
      }
    },
    'report',
  );
}
