/**
 * A small glob matcher for corpus folders (include / exclude filters), matched against paths
 * relative to the folder with `/` separators. Case-sensitive; dot files are matched like any
 * other file (there is no special rule for names starting with `.`).
 *
 *   *        any run of characters within one path segment (not `/`)
 *   ?        one character, not `/`
 *   **       as a whole segment: zero or more segments (`**\/*.py` matches `a.py` and `x/y/a.py`;
 *            `docs/**` matches everything under docs/); elsewhere it behaves like `*`
 *   [abc] [a-z] [!a-z] [^a-z]   one character of (or not of) a class, never `/`
 *   {a,b,c}  alternatives, which may nest and may hold `/` (`src/{lib,bin}/**`)
 *   \x       the character x, literally
 *
 * A pattern without `/` matches at the top level only (`*.py` matches `a.py`, not `x/a.py`);
 * write `**\/*.py` for any depth. A leading `./` is ignored; a trailing `/` means everything under
 * that folder (`build/` = `build/**`).
 */
import { BlocklabError } from './errors.js';

const MAX_EXPANSIONS = 4096;

/** Expands `{a,b}` groups (nested ones too) into the list of brace-free patterns. */
export function expandBraces(pattern: string): string[] {
  const out: string[] = [];
  const rec = (p: string) => {
    const group = findBraceGroup(p);
    if (!group) {
      out.push(p);
      if (out.length > MAX_EXPANSIONS) {
        throw new BlocklabError(`the glob ${JSON.stringify(pattern)} expands to more than ${MAX_EXPANSIONS} patterns; simplify its {a,b} groups`);
      }
      return;
    }
    const { start, end, alternatives } = group;
    const head = p.slice(0, start);
    const tail = p.slice(end + 1);
    for (const alt of alternatives) rec(head + alt + tail);
  };
  rec(pattern);
  return out;
}

/** The first `{...}` group holding a top-level comma, or null. Escapes and `[...]` are respected. */
function findBraceGroup(p: string): { start: number; end: number; alternatives: string[] } | null {
  let i = 0;
  while (i < p.length) {
    const c = p[i];
    if (c === '\\') {
      i += 2;
      continue;
    }
    if (c === '[') {
      const close = classEnd(p, i);
      if (close > 0) {
        i = close + 1;
        continue;
      }
    }
    if (c === '{') {
      // find the matching close brace and the top-level commas
      let depth = 0;
      const commas: number[] = [];
      let j = i;
      let end = -1;
      while (j < p.length) {
        const d = p[j];
        if (d === '\\') {
          j += 2;
          continue;
        }
        if (d === '[') {
          const close = classEnd(p, j);
          if (close > 0) {
            j = close + 1;
            continue;
          }
        }
        if (d === '{') depth++;
        else if (d === '}') {
          depth--;
          if (depth === 0) {
            end = j;
            break;
          }
        } else if (d === ',' && depth === 1) commas.push(j);
        j++;
      }
      if (end < 0) return null; // unclosed: the rest is literal
      if (commas.length > 0) {
        const alternatives: string[] = [];
        let from = i + 1;
        for (const k of [...commas, end]) {
          alternatives.push(p.slice(from, k));
          from = k + 1;
        }
        return { start: i, end, alternatives };
      }
      // {a} without a comma is literal; look for groups after its opening brace
    }
    i++;
  }
  return null;
}

/** Index of the `]` closing the class opened at `open`, or -1 when it does not close (then `[` is literal). */
function classEnd(p: string, open: number): number {
  let j = open + 1;
  if (p[j] === '!' || p[j] === '^') j++;
  if (p[j] === ']') j++; // a leading ] is a member
  while (j < p.length) {
    if (p[j] === '\\') {
      j += 2;
      continue;
    }
    if (p[j] === '/') return -1;
    if (p[j] === ']') return j;
    j++;
  }
  return -1;
}

const REGEX_SPECIAL = /[.*+?^${}()|[\]\\/]/;

function escapeChar(c: string): string {
  return REGEX_SPECIAL.test(c) ? `\\${c}` : c;
}

/** One path segment (no `/`, no braces) as regex source. */
function segmentSource(seg: string): string {
  let s = '';
  let i = 0;
  while (i < seg.length) {
    const c = seg[i];
    if (c === '\\') {
      if (i + 1 < seg.length) s += escapeChar(seg[i + 1]);
      else s += '\\\\';
      i += 2;
    } else if (c === '*') {
      while (seg[i] === '*') i++;
      s += '[^/]*';
    } else if (c === '?') {
      s += '[^/]';
      i++;
    } else if (c === '[') {
      const close = classEnd(seg, i);
      if (close < 0) {
        s += '\\[';
        i++;
        continue;
      }
      let j = i + 1;
      let negate = false;
      if (seg[j] === '!' || seg[j] === '^') {
        negate = true;
        j++;
      }
      let body = '';
      for (; j < close; j++) {
        const d = seg[j];
        if (d === '\\') {
          j++;
          body += `\\${seg[j]}`;
        } else if (d === '-') body += '-';
        else if (d === ']' || d === '[' || d === '^') body += `\\${d}`;
        else body += d;
      }
      s += negate ? `[^/${body}]` : `[${body}]`;
      i = close + 1;
    } else {
      s += escapeChar(c);
      i++;
    }
  }
  return s;
}

/** A brace-free pattern as regex source (anchored). */
function patternSource(pattern: string): string {
  let p = pattern.replace(/\\\//g, '/'); // an escaped '/' is just '/'
  while (p.startsWith('./')) p = p.slice(2);
  if (p.startsWith('/')) p = p.replace(/^\/+/, '');
  if (p.endsWith('/')) p += '**';
  const segs = p.split('/').filter((s, i, all) => s !== '' && !(s === '**' && all[i - 1] === '**'));
  // split() on '/' is safe: a class never holds '/' (classEnd refuses it) and '\/' only escapes '/'
  if (segs.length === 0) return '^$';
  let re = '';
  let prevGlobstar = false;
  segs.forEach((seg, i) => {
    const last = i === segs.length - 1;
    if (seg === '**') {
      if (segs.length === 1) re += '.*';
      else if (i === 0) re += '(?:.*/)?';
      else if (last) re += '(?:/.*)?';
      else re += '(?:/.*)?/';
      prevGlobstar = true;
      return;
    }
    if (i > 0 && !prevGlobstar) re += '/';
    re += segmentSource(seg);
    prevGlobstar = false;
  });
  return `^${re}$`;
}

/** Compiles a glob to a RegExp that tests a relative `/`-separated path. */
export function globToRegExp(pattern: string): RegExp {
  const sources = expandBraces(pattern).map(patternSource);
  return new RegExp(sources.length === 1 ? sources[0] : sources.map((s) => `(?:${s})`).join('|'), 's');
}

/** A predicate for `path` (relative, `/`-separated) matching any of `patterns`. */
export function globMatcher(patterns: readonly string[]): (path: string) => boolean {
  const res = patterns.map(globToRegExp);
  return (path: string) => res.some((r) => r.test(path));
}

/** Whether `path` matches `pattern`. */
export function globMatch(pattern: string, path: string): boolean {
  return globToRegExp(pattern).test(path);
}
