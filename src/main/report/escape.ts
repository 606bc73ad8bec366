/**
 * Escaping for the report. Every string that comes from data (run names, paths, benchmark
 * names, notes) is untrusted: it goes through escapeHtml (HTML) or the Markdown escapes below
 * before it reaches the output, and the notes' Markdown is rendered by a small renderer that
 * knows only paragraphs, headings, lists, **bold**, *italic* and `code` — no raw HTML, no links,
 * no images (nothing that could make the report fetch something or run a script).
 */

import { escapeHtml } from '../../shared/html.js';

export { escapeHtml };

/** Inline Markdown (already-escaped text in, HTML out): `code`, **bold**, *italic* / _italic_. */
function inlineHtml(text: string): string {
  // Code spans first, so that their contents are not formatted.
  const parts = text.split(/(`+)([\s\S]*?[^`])\1(?!`)/);
  let out = '';
  for (let i = 0; i < parts.length; i++) {
    if (i % 3 === 0) {
      out += escapeHtml(parts[i])
        .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, '<strong>$1</strong>')
        .replace(/__(?=\S)([\s\S]*?\S)__/g, '<strong>$1</strong>')
        .replace(/(^|[^*\w])\*(?=\S)([^*]*?\S)\*(?![*\w])/g, '$1<em>$2</em>')
        .replace(/(^|[^_\w])_(?=\S)([^_]*?\S)_(?![_\w])/g, '$1<em>$2</em>');
    } else if (i % 3 === 2) {
      out += `<code>${escapeHtml(parts[i].replace(/^ (.*) $/s, '$1'))}</code>`;
    }
  }
  return out;
}

type Block = { kind: 'p' | 'h'; level?: number; lines: string[] } | { kind: 'ul' | 'ol'; items: string[] } | { kind: 'pre'; lines: string[] };

function parseBlocks(md: string): Block[] {
  const blocks: Block[] = [];
  const lines = md.replace(/\r\n?/g, '\n').split('\n');
  let cur: Block | null = null;
  let fence: string | null = null;
  const close = () => {
    if (cur) blocks.push(cur);
    cur = null;
  };
  for (const line of lines) {
    if (fence !== null) {
      if (line.trim().startsWith(fence)) {
        fence = null;
        close();
      } else (cur as Extract<Block, { kind: 'pre' }>).lines.push(line);
      continue;
    }
    const fenceOpen = /^\s*(```+|~~~+)/.exec(line);
    if (fenceOpen) {
      close();
      fence = fenceOpen[1];
      cur = { kind: 'pre', lines: [] };
      continue;
    }
    if (line.trim() === '') {
      close();
      continue;
    }
    const heading = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading) {
      close();
      blocks.push({ kind: 'h', level: heading[1].length, lines: [heading[2]] });
      continue;
    }
    const ul = /^\s{0,3}[-*+]\s+(.*)$/.exec(line);
    const ol = /^\s{0,3}\d{1,9}[.)]\s+(.*)$/.exec(line);
    if (ul || ol) {
      const kind = ul ? 'ul' : 'ol';
      const c = cur as Block | null;
      if (c?.kind !== kind) {
        close();
        cur = { kind, items: [] };
      }
      (cur as unknown as { items: string[] }).items.push((ul ?? ol)![1]);
      continue;
    }
    const c = cur as Block | null;
    if (c && (c.kind === 'ul' || c.kind === 'ol')) {
      // a continuation line of the last item
      c.items[c.items.length - 1] += ' ' + line.trim();
      continue;
    }
    if (c?.kind !== 'p') {
      close();
      cur = { kind: 'p', lines: [] };
    }
    (cur as unknown as { lines: string[] }).lines.push(line.trim());
  }
  close();
  return blocks;
}

/**
 * Renders a note's Markdown to safe HTML. Headings are demoted below the report's own
 * (# → h4). Anything else — raw HTML, links, images — comes out as the literal text.
 */
export function markdownToSafeHtml(md: string): string {
  return parseBlocks(md)
    .map((b) => {
      switch (b.kind) {
        case 'p':
          return `<p>${inlineHtml(b.lines.join('\n'))}</p>`;
        case 'h': {
          const level = Math.min(6, (b.level ?? 1) + 3);
          return `<h${level}>${inlineHtml(b.lines[0])}</h${level}>`;
        }
        case 'ul':
        case 'ol':
          return `<${b.kind}>${b.items.map((i) => `<li>${inlineHtml(i)}</li>`).join('')}</${b.kind}>`;
        case 'pre':
          return `<pre><code>${escapeHtml(b.lines.join('\n'))}</code></pre>`;
      }
    })
    .join('\n');
}

/**
 * Escapes text for a Markdown table cell or inline in a line of Markdown (never at the start of
 * a line): backslash-escapes the characters that start emphasis, code, HTML, links or images,
 * and cell breaks, and flattens newlines.
 */
export function escapeMarkdown(value: unknown): string {
  return String(value ?? '')
    .replace(/[\r\n]+/g, ' ')
    .replace(/([\\`*_[\]<>|~])/g, '\\$1');
}

/**
 * A note's Markdown, kept as Markdown but made inert: `<`, `>`, `[`, `]` and `!` are
 * backslash-escaped outside code spans and fences, so no raw HTML, link or image survives.
 */
export function neutraliseMarkdown(md: string): string {
  const lines = md.replace(/\r\n?/g, '\n').split('\n');
  let fence: string | null = null;
  return lines
    .map((line) => {
      const f = /^\s*(```+|~~~+)/.exec(line);
      if (fence !== null) {
        if (line.trim().startsWith(fence)) fence = null;
        return line;
      }
      if (f) {
        fence = f[1];
        return line;
      }
      return line
        .split(/(`+[\s\S]*?`+)/)
        .map((part, i) => (i % 2 === 1 ? part : part.replace(/([\\<>[\]!])/g, '\\$1')))
        .join('');
    })
    .join('\n');
}

/** A Markdown code fence longer than any run of backticks in `text`. */
export function fenceFor(text: string): string {
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((s) => s.length));
  return '`'.repeat(Math.max(3, longest + 1));
}
