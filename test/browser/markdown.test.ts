/**
 * The Markdown sanitiser (src/renderer/src/lib/markdown.ts) in a real Chromium: the module is
 * bundled with esbuild and run on a blank page, so DOMPurify works on a real DOM. Known bypasses
 * (issue 11, item 7: SVG and image-map links, DOM clobbering) and a seeded fuzz over hostile
 * fragments must leave only allow-listed elements and attributes, links only to http(s)/mailto,
 * and nothing that runs or navigates.
 */
import { build } from 'esbuild';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { REPO_ROOT } from '../helpers/cli-runner.js';
import { chromiumMissing, chromiumPath } from '../../src/main/report/pdf.js';
import { launchBrowser } from './harness.js';

const skip = (await chromiumMissing(chromiumPath())) !== null && !process.env.CI;

let browser: Browser;
let page: Page;

beforeAll(async () => {
  if (skip) return;
  const bundle = await build({
    entryPoints: [`${REPO_ROOT}/src/renderer/src/lib/markdown.ts`],
    bundle: true,
    format: 'iife',
    globalName: 'BL',
    write: false,
    platform: 'browser',
    logLevel: 'silent',
  });
  browser = await launchBrowser();
  page = await browser.newPage();
  await page.setContent('<!doctype html><html><body><div id="host"></div></body></html>');
  await page.addScriptTag({ content: bundle.outputFiles[0].text });
});

afterAll(async () => {
  await browser?.close();
});

const ALLOWED_TAGS = new Set(['P', 'BR', 'HR', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'BLOCKQUOTE', 'PRE', 'CODE', 'EM', 'STRONG', 'DEL', 'S', 'SUB', 'SUP', 'KBD', 'MARK', 'ABBR', 'SPAN', 'UL', 'OL', 'LI', 'A', 'IMG', 'TABLE', 'THEAD', 'TBODY', 'TFOOT', 'TR', 'TH', 'TD', 'DETAILS', 'SUMMARY']);
const ALLOWED_ATTRS = new Set(['href', 'title', 'src', 'alt', 'class', 'start', 'align', 'open', 'target', 'rel']);

interface Rendered {
  html: string;
  tags: string[];
  attrs: string[];
  hrefs: string[];
  srcs: string[];
  error: string | null;
}

/** Renders each source in the page and reports what the result contains. */
async function render(sources: string[]): Promise<Rendered[]> {
  return page.evaluate((list) => {
    interface El {
      tagName: string;
      attributes: ArrayLike<{ name: string }>;
      getAttribute(name: string): string | null;
    }
    const g = globalThis as unknown as { BL: { renderMarkdown(s: string): string }; document: { getElementById(id: string): { innerHTML: string; querySelectorAll(q: string): ArrayLike<El> } } };
    return list.map((source) => {
      try {
        const html = g.BL.renderMarkdown(source);
        const host = g.document.getElementById('host');
        host.innerHTML = html;
        const els = Array.from(host.querySelectorAll('*'));
        const out = {
          html,
          tags: els.map((e) => e.tagName),
          attrs: els.flatMap((e) => Array.from(e.attributes).map((a) => a.name)),
          hrefs: els.map((e) => e.getAttribute('href') ?? e.getAttribute('xlink:href')).filter((h): h is string => h !== null),
          srcs: els.map((e) => e.getAttribute('src')).filter((h): h is string => h !== null),
          error: null as string | null,
        };
        host.innerHTML = '';
        return out;
      } catch (e) {
        return { html: '', tags: [], attrs: [], hrefs: [], srcs: [], error: String(e) };
      }
    });
  }, sources);
}

function expectSafe(r: Rendered, source: string): void {
  expect(r.error, source).toBeNull();
  for (const t of r.tags) expect(ALLOWED_TAGS.has(t), `<${t}> from ${source}`).toBe(true);
  for (const a of r.attrs) expect(ALLOWED_ATTRS.has(a), `${a}= from ${source}`).toBe(true);
  for (const h of r.hrefs) expect(h, source).toMatch(/^(https?:|mailto:)/i);
  for (const s of r.srcs) expect(s, source).toMatch(/^data:image\//i);
}

describe.skipIf(skip)('Markdown sanitising (allow-list)', () => {
  it('drops the review findings: SVG and image-map links, DOM clobbering, and the classic vectors', async () => {
    const cases = [
      '<svg><a xlink:href="http://evil.example/">svg link</a></svg>',
      '<svg><a href="http://evil.example/"><text>t</text></a></svg>',
      '<math><mtext><a href="http://evil.example/">m</a></mtext></math>',
      '<map name="m"><area href="http://evil.example/" shape="default"></map><img usemap="#m" src="data:image/png;base64,AA==">',
      '<a id="blocklab">clobber</a> <img name="getElementById"> <form id="x"><input name="attributes"></form>',
      '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> <a href="javascript:window.__pwned=3">j</a>',
      '[x](javascript:alert(1)) [y](data:text/html,hi) [z](/relative) [w](#frag) [ok](https://example.com/a)',
      '<iframe src="https://evil.example"></iframe><object data="x"></object><embed src="x"><base href="http://evil.example/">',
      '<a href="http://ok.example" target="_self" ping="http://evil.example" style="x">styled</a>',
      '<meta http-equiv="refresh" content="0;url=http://evil.example">',
      '<details open ontoggle="window.__pwned=4"><summary>s</summary>d</details>',
      '<code class="language-py onclick">x</code> <span class="x" data-x="1" aria-x="1">s</span>',
    ];
    const results = await render(cases);
    results.forEach((r, i) => expectSafe(r, cases[i]));
    const [svg, svgA, math, map, clobber] = results;
    for (const r of [svg, svgA, math, map]) expect(r.hrefs).toEqual([]);
    expect(clobber.attrs).not.toContain('id');
    expect(clobber.attrs).not.toContain('name');
    expect(results[6].hrefs).toEqual(['https://example.com/a']);
    expect(results[8].html).toContain('target="_blank"');
    expect(results[8].attrs).not.toContain('ping');
    expect(await page.evaluate(() => (globalThis as unknown as { __pwned?: unknown }).__pwned)).toBeUndefined();
    expect(page.url()).toBe('about:blank');
    // ordinary Markdown keeps its shape
    const [plain] = await render(['# Title\n\n**bold** *em* `code`\n\n| a | b |\n|---|--:|\n| 1 | 2 |\n\n1. one\n2. two\n\n```py\nx = 1\n```']);
    expect(plain.tags).toEqual(expect.arrayContaining(['H1', 'STRONG', 'EM', 'CODE', 'TABLE', 'TH', 'TD', 'OL', 'LI', 'PRE']));
  });

  it('fuzz: random mixtures of hostile HTML and Markdown stay inside the allow-list (seeded, 400 inputs)', async () => {
    const tag = fc.constantFrom('a', 'svg', 'math', 'map', 'area', 'img', 'iframe', 'form', 'input', 'button', 'script', 'style', 'object', 'embed', 'base', 'meta', 'link', 'details', 'video', 'template', 'noscript', 'xmp', 'plaintext', 'title', 'textarea', 'select', 'option', 'use', 'animate', 'set', 'foreignObject', 'mtext', 'annotation-xml', 'portal', 'dialog', 'table', 'p', 'span', 'code');
    const attr = fc.constantFrom('href', 'xlink:href', 'src', 'srcset', 'action', 'formaction', 'onerror', 'onload', 'onclick', 'ontoggle', 'onfocus', 'autofocus', 'id', 'name', 'style', 'class', 'data-x', 'is', 'target', 'ping', 'usemap', 'background', 'poster', 'http-equiv', 'content', 'open', 'values', 'to', 'attributeName');
    const value = fc.constantFrom('javascript:window.__pwned=9', 'JaVaScRiPt:window.__pwned=9', 'java&#x09;script:x', ' javascript:x', 'data:text/html,<script>x</script>', 'http://evil.example/', '//evil.example', '#blocklab', 'x', 'window.__pwned=9', 'getElementById', '&#106;avascript:x', 'vbscript:x', 'https://ok.example/');
    const element = fc.tuple(tag, fc.array(fc.tuple(attr, value), { maxLength: 3 }), fc.string({ maxLength: 8 })).map(([t, as, text]) => `<${t} ${as.map(([a, v]) => `${a}="${v}"`).join(' ')}>${text}</${t}>`);
    const markdown = fc.constantFrom('[l](javascript:x)', '![i](http://evil.example/x.png)', '<http://ok.example>', '`<img src=x onerror=x>`', '```html\n<script>x</script>\n```', '> <a href="javascript:x">q</a>', '| <svg onload=x> | b |\n|---|---|', '[r]: javascript:x\n[r]', '* <iframe srcdoc="<script>x</script>">', '<!-- <img src=x onerror=x> -->', '<![CDATA[<script>x</script>]]>');
    const doc = fc
      .tuple(fc.array(fc.oneof(element, markdown, fc.string({ maxLength: 12 })), { minLength: 1, maxLength: 8 }), fc.constantFrom('', '\n', '\n\n', ' '))
      .map(([parts, sep]) => parts.join(sep));
    const sources = fc.sample(doc, { numRuns: 400, seed: 11 });
    const results = await render(sources);
    results.forEach((r, i) => expectSafe(r, sources[i]));
    expect(await page.evaluate(() => (globalThis as unknown as { __pwned?: unknown }).__pwned)).toBeUndefined();
    expect(page.url()).toBe('about:blank');
  });
});
