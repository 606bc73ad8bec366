/**
 * Reports (issue 4, DESIGN.md §7): a self-contained HTML page with server-rendered SVG charts,
 * a Markdown version, and a PDF printed by Chromium — built from ReportData, which comes from
 * the store (buildRunReport) or from the eval engine's comparison.
 */
export { renderReport, writeReport, type RenderedReport, type WriteReportOptions, type WrittenReport } from './write.js';
export { renderHtml, REPORT_CSP, type RenderHtmlOptions } from './html.js';
export { renderMarkdown } from './markdown.js';
export { buildRunReport, checkpointLabel, expansionDetail, type BuildRunReportOptions } from './build.js';
export { forgettingFromCompare } from './forgetting.js';
export { htmlToPdf, chromiumPath, chromiumMissing, PdfError, CHROMIUM_ARGS, DEFAULT_CHROMIUM, type PdfOptions, type PdfOutput } from './pdf.js';
export { escapeHtml, escapeMarkdown, markdownToSafeHtml } from './escape.js';
export type * from '../../shared/report.js';
