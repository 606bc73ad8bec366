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
 * One line made inert outside its code spans. A code span is what CommonMark says it is: a run
 * of N backticks closed by the next run of exactly N (`` `` x ` `` is not one — its backticks
 * are literal, and what follows them is ordinary text); the backticks of a run that is never
 * closed are escaped, so no span can open later and swallow an escape.
 */
function inertLine(line: string): string {
  let out = '';
  let i = 0;
  const runAt = (k: number) => {
    let n = 0;
    while (line[k + n] === '`') n++;
    return n;
  };
  while (i < line.length) {
    if (line[i] === '`') {
      const n = runAt(i);
      let close = -1;
      for (let j = i + n; j < line.length; ) {
        if (line[j] !== '`') {
          j++;
          continue;
        }
        const m = runAt(j);
        if (m === n) {
          close = j;
          break;
        }
        j += m;
      }
      const content = close >= 0 ? line.slice(i + n, close) : '';
      if (close >= 0 && !/[<>&[\]!\\]/.test(content)) {
        // a code span with nothing a renderer could take for markup kept as code (one with, say,
        // `<b>` is written as inert text instead: an autolinking renderer can break a span open)
        out += line.slice(i, close + n);
        i = close + n;
      } else if (close >= 0) {
        out += '&#96;'.repeat(n) + [...content].map((c) => INERT[c] ?? c).join('') + '&#96;'.repeat(n);
        i = close + n;
      } else {
        out += '&#96;'.repeat(n);
        i += n;
      }
      continue;
    }
    out += INERT[line[i]] ?? line[i];
    i++;
  }
  return out;
}

/**
 * Outside code spans these characters become character references: they read the same, and —
 * unlike a backslash escape, which a renderer's URL autolinking can swallow along with the URL
 * before it — a reference can never start a tag, a link or an image, or close anything.
 */
const INERT: Record<string, string> = { '<': '&lt;', '>': '&gt;', '&': '&amp;', '[': '&#91;', ']': '&#93;', '!': '&#33;', '\\': '&#92;' };

/**
 * A note's Markdown, kept as Markdown but made inert: outside code spans and fences, `<`, `>`,
 * `&`, `[`, `]`, `!` and `\` become character references, so no raw HTML, link or image
 * survives. A fence is what CommonMark takes for one (a backtick fence's info string has no
 * backtick; otherwise the line is ordinary text, made inert).
 */
export function neutraliseMarkdown(md: string): string {
  const lines = md.replace(/\r\n?/g, '\n').split('\n');
  let fence: string | null = null;
  return lines
    .map((line) => {
      const f = /^ {0,3}(```+)[^`]*$|^ {0,3}(~~~+)/.exec(line)?.slice(1).find(Boolean);
      if (fence !== null) {
        if (line.trim().startsWith(fence)) fence = null;
        return line;
      }
      if (f) {
        fence = f;
        return line;
      }
      return inertLine(line);
    })
    .join('\n');
}

/** A Markdown code fence longer than any run of backticks in `text`. */
export function fenceFor(text: string): string {
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((s) => s.length));
  return '`'.repeat(Math.max(3, longest + 1));
}
