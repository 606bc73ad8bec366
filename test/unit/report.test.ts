/**
 * Rendering a report from hand-made data: the charts are inline SVG, the numbers are in the
 * tables, every untrusted string is escaped, and nothing in the HTML can load or run anything.
 */
import { describe, expect, it } from 'vitest';
import { renderReport } from '../../src/main/report/index.js';
import { escapeMarkdown, markdownToSafeHtml, neutraliseMarkdown } from '../../src/main/report/escape.js';
import { fmtDelta, fmtSeconds, fmtValue, sparkline } from '../../src/shared/format.js';
import { lineageForest } from '../../src/main/report/html.js';
import type { ReportData } from '../../src/shared/report.js';

const HOSTILE = '<script>alert(1)</script>';

function curve(n: number, start: number, end: number, every = 1): [number, number][] {
  const pts: [number, number][] = [];
  for (let i = every; i <= n; i += every) pts.push([i, end + (start - end) * Math.exp(-i / (n / 4)) + 0.05 * Math.sin(i)]);
  return pts;
}

/** 2 runs, 4 benchmarks, 3 checkpoints, hostile strings in names, paths, configs and notes. */
function fixture(): ReportData {
  const ck = ['expanded (untrained)', 'blocks · interleave +2', '{c} full fine-tune'];
  return {
    title: 'Blocks vs full <b>bold</b>',
    createdAt: '2026-11-28T10:15:00.000Z',
    environment: { 'Training backend': 'wasm', 'Node.js': 'v20.20.2', Homepage: 'https://example.com/not-a-link' },
    checkpoints: [
      { label: 'tiny-base', path: '/models/tiny-base', madeBy: 'import', parent: null, detail: 'llama, 4 layers' },
      { label: 'expanded', path: '/models/expanded', madeBy: 'expand', parent: 'tiny-base', detail: 'interleave: 4 → 6 layers, new 2←1, 5←3' },
      { label: 'blocks/model', path: '/runs/blocks/model', madeBy: 'train', parent: 'expanded' },
      { label: 'full/model', path: '/runs/"><svg onload=alert(1)>/model', madeBy: 'train', parent: 'expanded' },
    ],
    runs: [
      {
        id: 1,
        label: 'blocks (interleave +2)',
        method: 'blocks',
        status: 'completed',
        config: { model: '/models/expanded', method: { kind: 'blocks' }, steps: 400, note: '</pre><script>alert(2)</script>' },
        steps: 400,
        firstLoss: 4.8123,
        lastLoss: 2.3456,
        valLoss: 2.4567,
        tokensPerSecond: 2890.4,
        trainableParams: 1_234_567,
        totalParams: 3_703_701,
        seconds: 185.2,
        base: 'expanded',
        result: 'blocks/model',
        curves: [
          { name: 'loss', points: curve(400, 4.8, 2.3) },
          { name: 'val_loss', points: curve(400, 4.7, 2.45, 50) },
        ],
      },
      {
        id: 2,
        label: HOSTILE,
        method: 'full',
        status: 'completed',
        config: { model: '/models/expanded', method: { kind: 'full' } },
        steps: 400,
        firstLoss: 4.8011,
        lastLoss: 2.1234,
        valLoss: 2.3012,
        tokensPerSecond: 1510.7,
        trainableParams: 3_703_701,
        totalParams: 3_703_701,
        seconds: 352.9,
        base: 'expanded',
        result: 'full/model',
        curves: [
          { name: 'loss', points: curve(400, 4.8, 2.1) },
          { name: 'val_loss', points: curve(400, 4.7, 2.3, 50) },
        ],
      },
    ],
    forgetting: {
      base: 'tiny-base',
      checkpoints: ck,
      benchmarks: [
        { name: 'general-ppl', kind: 'perplexity', domain: 'general', role: 'old', metric: 'word_perplexity', higherIsBetter: false },
        { name: 'general-mc', kind: 'multiple_choice', domain: 'general', role: 'old', metric: 'acc_norm', higherIsBetter: true },
        { name: 'code-ppl', kind: 'perplexity', domain: 'code', role: 'new', metric: 'word_perplexity', higherIsBetter: false },
        { name: '<img src=x onerror=alert(1)>', kind: 'multiple_choice', domain: 'code', role: 'new', metric: 'acc', higherIsBetter: true },
      ],
      rows: [
        {
          benchmark: 'general-ppl',
          base: 41.37,
          values: [
            { checkpoint: ck[0], value: 41.37, stderr: null, delta: 0, flag: 'forgetting' },
            { checkpoint: ck[1], value: 43.91, stderr: null, delta: 2.54, flag: 'forgetting' },
            { checkpoint: ck[2], value: 57.2, stderr: null, delta: 15.83, flag: 'forgetting' },
          ],
        },
        {
          benchmark: 'general-mc',
          base: 0.612,
          values: [
            { checkpoint: ck[0], value: 0.612, stderr: 0.021, delta: 0, flag: 'forgetting' },
            { checkpoint: ck[1], value: 0.604, stderr: 0.021, delta: 0.008, flag: 'forgetting' },
            { checkpoint: ck[2], value: 0.538, stderr: 0.022, delta: 0.074, flag: 'forgetting' },
          ],
        },
        {
          benchmark: 'code-ppl',
          base: 88.4,
          values: [
            { checkpoint: ck[0], value: 88.4, stderr: null, delta: 0, flag: 'gain' },
            { checkpoint: ck[1], value: 52.6, stderr: null, delta: 35.8, flag: 'gain' },
            { checkpoint: ck[2], value: 49.1, stderr: null, delta: 39.3, flag: 'gain' },
          ],
        },
        {
          benchmark: '<img src=x onerror=alert(1)>',
          base: 0.41,
          values: [
            { checkpoint: ck[0], value: 0.41, stderr: 0.03, delta: 0, flag: 'gain' },
            { checkpoint: ck[1], value: 0.523, stderr: 0.031, delta: 0.113, flag: 'gain' },
            { checkpoint: ck[2], value: 0.547, stderr: 0.031, delta: 0.137, flag: 'gain' },
          ],
        },
      ],
      summary: [
        { checkpoint: ck[0], meanGain: 0, meanForgetting: 0 },
        { checkpoint: ck[1], meanGain: 0.263, meanForgetting: 0.037 },
        { checkpoint: ck[2], meanGain: 0.29, meanForgetting: 0.252 },
      ],
      deltaNote: 'Positive Δ = better on new-domain benchmarks, and = forgot on old-domain ones.',
      summaryFamily: 'accuracy',
      families: {
        means: [
          { checkpoint: ck[1], role: 'old', family: 'accuracy', mean: 0.8, stderr: 2.97, benchmarks: ['general-mc'], clear: false },
          { checkpoint: ck[2], role: 'old', family: 'accuracy', mean: 7.4, stderr: 3.04, benchmarks: ['general-mc'], clear: true },
        ],
        verdicts: [{ role: 'old', family: 'accuracy', winner: null, tied: [ck[1], ck[2]], statement: 'Least forgetting on old-domain benchmarks: no clear difference <b>here</b>.' }],
        note: 'Means within one metric family only.',
      },
    },
    notes: [
      'The **blocks** method gained almost as much on code as `full` while forgetting far less.',
      '- only 400 steps\n- see [the paper](https://arxiv.org/abs/2401.02415) ![x](http://evil.example/p.png)',
      `Hostile: ${HOSTILE} <img src="http://evil.example/x.png"> <style>@import url(http://evil.example/a.css);</style> & done`,
    ],
  };
}

/** Every real tag in the HTML (escaped text holds &lt;, never <). */
function tags(html: string): string[] {
  return html.match(/<[a-zA-Z][^>]*>/g) ?? [];
}

/** The attributes of one tag, [lower-case name, value]. */
function attributes(tag: string): [string, string][] {
  const body = tag.replace(/^<[a-zA-Z][\w-]*/, '').replace(/\/?>$/, '');
  return [...body.matchAll(/\s*([^\s=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?/g)].map((m) => [m[1].toLowerCase(), m[2] ?? m[3] ?? m[4] ?? '']);
}

/** The text between the tags of a cell whose text starts with `start`. */
function cellWith(html: string, start: string): string {
  const m = new RegExp(`<td class="([^"]*)">${start.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`).exec(html);
  return m ? m[1] : '';
}

describe('renderReport', () => {
  const data = fixture();
  const { html, markdown } = renderReport(data);

  it('inlines the charts as SVG: loss curves, one panel per benchmark, the trade-off', () => {
    expect(html.match(/<svg/g)!.length).toBe(1 + 4 + 1);
    expect(html).toContain('aria-label="Training and validation loss by step"');
    expect(html).toContain('aria-label="Trade-off: mean new-domain gain against mean old-domain forgetting, per checkpoint"');
    // the val_loss series are dashed
    expect(html).toMatch(/stroke-dasharray="5[ ,]4"/);
    // ECharts' process-wide ids are replaced by stable per-chart ones
    expect(html).not.toMatch(/zr\d+-/);
    expect(html).toContain('clip-path="url(#loss-c0)"');
    // the trade-off labels each point; ECharts templates in names ({c}) are not expanded
    expect(html).toContain('3. {c} full fine-tune');
    expect(html).toContain('ideal: gain without forgetting');
    // the font stack holds no quotes (ECharts writes it unescaped into a quoted attribute)
    const svgs = html.match(/<svg[\s\S]*?<\/svg>/g)!;
    for (const svg of svgs) expect(svg).not.toMatch(/font-family:[^;"]*"/);
    // nothing is left of ECharts' hover stylesheet
    for (const svg of svgs) expect(svg).not.toContain('<style');
  });

  it('has the numbers of the run table and the forgetting table, deltas coloured by direction', () => {
    for (const s of ['4.812 → 2.346', '4.801 → 2.123', '2.457', '2,890', '1,511', '1.23 M / 3.70 M', '33% trainable', '3 min 05 s', '5 min 53 s']) {
      expect(html).toContain(s);
    }
    for (const s of ['41.37', '43.91', '57.20', '0.604', '88.40', '49.10', '0.547', 'Δ +15.83', 'Δ +39.30']) expect(html).toContain(s);
    // means only within a metric family, with their standard errors; no mean over mixed units (perplexity and accuracy)
    expect(html).toContain('Summary by metric family');
    expect(cellWith(html, '+0.8 ± 3.0 points')).toBe('num bad weak');
    expect(cellWith(html, '+7.4 ± 3.0 points')).toBe('num bad');
    expect(html).toContain('Least forgetting on old-domain benchmarks: no clear difference &lt;b&gt;here&lt;/b&gt;.');
    expect(html).not.toContain('+0.263');
    expect(cellWith(html, '57.20')).toBe('num bad'); // perplexity up on the old domain: forgot
    expect(cellWith(html, '49.10')).toBe('num good'); // perplexity down on the new domain: gained
    expect(cellWith(html, '0.604')).toBe('num bad weak'); // worse, but within one standard error
    expect(cellWith(html, '0.547')).toBe('num good');
    expect(html).toContain('Positive Δ = better on new-domain benchmarks');
    // configs are collapsible JSON; lineage is a nested list
    expect(html).toMatch(/<details><summary>.*blocks \(interleave \+2\)/);
    expect(html).toContain('&quot;kind&quot;: &quot;blocks&quot;');
    expect(html).toMatch(/<ul class="tree"><li><div class="node"><span class="badge import">import<\/span><strong>tiny-base<\/strong>.*?<ul><li><div class="node"><span class="badge expand">expand<\/span><strong>expanded<\/strong>/s);
    expect(html).toContain('wasm');
  });

  it('escapes every string from the data; no script, no event handler, no external resource', () => {
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(html).toContain('/runs/&quot;&gt;&lt;svg onload=alert(1)&gt;/model');
    expect(html).toContain('&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;');
    expect(html).toContain('Blocks vs full &lt;b&gt;bold&lt;/b&gt;');
    expect(html).not.toMatch(/<script/i);
    expect(html.match(/<style/g)!.length).toBe(1); // the report's own stylesheet only
    const all = tags(html);
    const names = new Set(all.map((t) => /^<([a-zA-Z][\w-]*)/.exec(t)![1].toLowerCase()));
    for (const bad of ['script', 'img', 'iframe', 'object', 'embed', 'link', 'image', 'use', 'foreignobject', 'base', 'form']) expect(names.has(bad), bad).toBe(false);
    expect(all.flatMap(attributes).filter(([n]) => n === 'href').length).toBe(6); // the table of contents
    expect(attributes('<a href="#x" onclick=\'y\' title=z>')).toEqual([['href', '#x'], ['onclick', 'y'], ['title', 'z']]);
    for (const t of all) {
      const attrs = attributes(t);
      for (const [name, value] of attrs) {
        expect(name, t).not.toMatch(/^on/);
        expect(name, t).not.toMatch(/^(src|srcset|action|formaction|poster|xlink:href|data|background)$/);
        if (name === 'href') expect(value, t).toMatch(/^#/);
        if (name === 'http-equiv') expect(value.toLowerCase()).toBe('content-security-policy');
        // the URLs in the data (notes, environment) are text, never an attribute
        if (name !== 'aria-label') expect(value, t).not.toMatch(/https?:|\/\/[a-z]/i);
      }
    }
    const css = [...html.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]).join('');
    expect(css).not.toMatch(/url\(|@import|https?:/i);
    // the https:// left in the document is escaped text from the data
    expect(html).toContain('<dd>https://example.com/not-a-link</dd>');
    expect(html).toContain(`<meta http-equiv="Content-Security-Policy" content="default-src 'none';`);
  });

  it('renders notes as safe Markdown: bold, code, lists; no HTML, links or images', () => {
    expect(html).toContain('<p>The <strong>blocks</strong> method gained almost as much on code as <code>full</code> while forgetting far less.</p>');
    expect(html).toContain('<ul><li>only 400 steps</li><li>see [the paper](https://arxiv.org/abs/2401.02415) ![x](http://evil.example/p.png)</li></ul>');
    expect(html).toContain('Hostile: &lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=&quot;http://evil.example/x.png&quot;&gt;');
  });

  it('is deterministic', () => {
    expect(renderReport(fixture())).toEqual({ html, markdown });
  });

  it('the Markdown version has the same tables, escaped', () => {
    expect(markdown).toContain('| 1. blocks (interleave +2) | blocks | completed | 400 | 4.812 → 2.346 | 2.457 | 2,890 | 1.23 M / 3.70 M (33%) | 3 min 05 s | expanded → blocks/model |');
    expect(markdown).toContain('| 2. \\<script\\>alert(1)\\</script\\> | full | completed | 400 | 4.801 → 2.123 | 2.301 | 1,511 | 3.70 M / 3.70 M (100%) | 5 min 53 s |');
    expect(markdown).toContain('| general-ppl | general (old: forgetting) | word\\_perplexity ↓ | 41.37 | 41.37 (Δ ±0) | 43.91 (Δ +2.540 ▼) | 57.20 (Δ +15.83 ▼) |');
    expect(markdown).toContain('| general-mc | general (old: forgetting) | acc\\_norm ↑ | 0.612 | 0.612 ± 0.0210 (Δ ±0) | 0.604 ± 0.0210 (Δ +0.0080 ≈) | 0.538 ± 0.0220 (Δ +0.0740 ▼) |');
    expect(markdown).toContain('| \\<img src=x onerror=alert(1)\\> | code (new: gain) | acc ↑ | 0.410 |');
    expect(markdown).toContain('| forgetting, old domain (accuracy-type, 1) | — | +0.8 ± 3.0 points ≈ | +7.4 ± 3.0 points |');
    expect(markdown).toContain('- Least forgetting on old-domain benchmarks: no clear difference \\<b\\>here\\</b\\>.');
    expect(markdown).not.toContain('**Mean gain, new domain**');
    expect(markdown).toContain('| {c} full fine-tune | +0.290 | +0.252 |');
    expect(markdown).toMatch(/^  - \*\*expanded\*\* \(expand\) — interleave: 4 → 6 layers, new 2←1, 5←3: `\/models\/expanded`$/m);
    expect(markdown).toMatch(/^- 1\\\. blocks \(interleave \+2\): loss `[▁▂▃▄▅▆▇█]{32}` · val_loss `[▁▂▃▄▅▆▇█]{8}`$/m);
    expect(markdown).toContain('see &#91;the paper&#93;(https://arxiv.org/abs/2401.02415) &#33;&#91;x&#93;(http://evil.example/p.png)');
    // outside code fences, no raw HTML survives
    const prose = markdown.replace(/^(`{3,})json\n[\s\S]*?\n\1$/gm, '').replace(/`[^`\n]*`/g, '');
    expect(prose).not.toMatch(/(^|[^\\])<[a-z/]/im);
    expect(markdown).toContain('"note": "</pre><script>alert(2)</script>"'); // inside a fence: code, shown as is
  });

  it('renders without evaluation, without runs, and with a cycle in the lineage', () => {
    const noEval = renderReport({ ...fixture(), forgetting: null });
    expect(noEval.html.match(/<svg/g)!.length).toBe(1);
    expect(noEval.html).toContain('No evaluation in this report');
    expect(noEval.markdown).toContain('No evaluation in this report');

    const empty = renderReport({ title: 't', createdAt: 'x', environment: {}, checkpoints: [], runs: [], forgetting: null, notes: [] });
    expect(empty.html).not.toContain('<svg');
    expect(empty.html).toContain('No training runs in this report.');

    const cyclic = [
      { label: 'a', path: '/a', madeBy: 'train', parent: 'b' },
      { label: 'b', path: '/b', madeBy: 'train', parent: 'a' },
      { label: 'c', path: '/c', madeBy: 'train', parent: 'c' },
    ];
    const forest = lineageForest(cyclic);
    expect(forest.roots.map((r) => r.label)).toEqual(['a', 'b', 'c']);
    expect(renderReport({ ...fixture(), checkpoints: cyclic }).html).toContain('<strong>c</strong>');
  });
});

describe('report helpers', () => {
  it('formats numbers for tables', () => {
    expect(fmtValue(0.61234)).toBe('0.612');
    expect(fmtValue(0.008)).toBe('0.0080');
    expect(fmtValue(41.372)).toBe('41.37');
    expect(fmtValue(1234.5)).toBe('1235');
    expect(fmtValue(null)).toBe('—');
    expect(fmtValue(NaN)).toBe('NaN');
    expect(fmtDelta(-0.5)).toBe('−0.500');
    expect(fmtDelta(2.54)).toBe('+2.540');
    expect(fmtSeconds(42.12)).toBe('42.1 s');
    expect(fmtSeconds(7300)).toBe('2 h 01 min');
    expect(sparkline([3, 2, 1, 0])).toBe('█▆▃▁');
  });

  it('Markdown escapes', () => {
    expect(markdownToSafeHtml('a <b>x</b> **y** `<i>` _z_ snake_case_name\n\n1. one\n2. two\n\n```\n<p>\n```')).toBe(
      '<p>a &lt;b&gt;x&lt;/b&gt; <strong>y</strong> <code>&lt;i&gt;</code> <em>z</em> snake_case_name</p>\n<ol><li>one</li><li>two</li></ol>\n<pre><code>&lt;p&gt;</code></pre>',
    );
    expect(escapeMarkdown('a|b <c> [d](e) *f*\nnext')).toBe('a\\|b \\<c\\> \\[d\\](e) \\*f\\* next');
    expect(neutraliseMarkdown('**ok** <b> `kept` `<i>` ![i](http://x)')).toBe('**ok** &lt;b&gt; `kept` &#96;&lt;i&gt;&#96; &#33;&#91;i&#93;(http://x)');
  });
});

describe('report.md stays inert (issue 11, item 9)', () => {
  /** HTML elements that Markdown rendering of the neutralised text produced, other than its own. */
  async function rawTags(note: string): Promise<string[]> {
    const { marked } = await import('marked');
    const { neutraliseMarkdown } = await import('../../src/main/report/escape.js');
    const html = marked.parse(neutraliseMarkdown(note), { async: false, gfm: true }) as string;
    // a URL in the text may be autolinked by GFM (a link to what it shows): nothing else may appear
    const autolinks = html.replace(/<a href="(https?:|mailto:)[^"<>]*">[^<]*<\/a>/g, '');
    return (autolinks.match(/<\/?([a-zA-Z][\w-]*)/g) ?? []).map((t) => t.replace(/[</]/g, '').toLowerCase()).filter((t) => !['p', 'code', 'em', 'strong', 'del', 'br', 'ul', 'ol', 'li', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'pre', 'blockquote', 'hr', 'table', 'thead', 'tbody', 'tr', 'th', 'td'].includes(t));
  }

  it('a run name with backtick runs of different lengths does not open a code span that hides raw HTML', async () => {
    expect(await rawTags('Run 3 (`` <img src=x onerror=alert(1)> `) ended **failed**.')).toEqual([]);
    expect(await rawTags('``` <img src=x onerror=alert(1)> ``')).toEqual([]);
    expect(await rawTags('`a` <script>x</script> ``b``` <a href="javascript:x">y</a>')).toEqual([]);
    // a plain code span stays a code span
    const { neutraliseMarkdown } = await import('../../src/main/report/escape.js');
    expect(neutraliseMarkdown('run `blocklab compare --base x` here')).toBe('run `blocklab compare --base x` here');
  });

  it('fuzz: no mixture of backticks, brackets and tags yields a raw element (seeded, 500 inputs)', async () => {
    const fc = (await import('fast-check')).default;
    const piece = fc.constantFrom('`', '``', '```', '\\', '<img src=x onerror=x>', '<a href="javascript:x">', '</a>', '[l](javascript:x)', '![i](http://e/x.png)', '<http://e>', '<!-- c -->', '*', '_', ' ', 'x', '\n', '<', '>', '!', '[', ']', '&lt;', '<svg onload=x>');
    const notes = fc.sample(fc.array(piece, { maxLength: 20 }).map((p) => p.join('')), { numRuns: Number(process.env.BLOCKLAB_FUZZ_RUNS ?? 500), seed: Number(process.env.BLOCKLAB_FUZZ_SEED ?? 9) });
    for (const n of notes) expect(await rawTags(n), JSON.stringify(n)).toEqual([]);
  });
});
