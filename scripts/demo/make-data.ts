/**
 * `npm run demo:make-data`: builds the bundled demo data under resources/demo/ from texts that
 * Debian ships (see resources/demo/NOTICE for sources and terms):
 *
 *   corpora/general/{train,heldout}.txt   The Devil's Dictionary (dict-devil), the US Constitution
 *                                          and the Declaration of Independence (miscfiles)
 *   corpora/code/{train,heldout}.jsonl    Python 3.11 standard library modules, one file per line
 *   tokenizer/tokenizer.json (+ config)   byte-level BPE learned on the general train part only
 *   benchmarks/*.jsonl + *.json           perplexity and multiple-choice tasks from the held-out parts
 *   NOTICE, LICENSE-PYTHON.txt, README.md
 *
 * The output is committed; users never need to run this. It is deterministic: the same inputs
 * give byte-identical files (no dates, no machine names, seeded shuffles). `--check` builds
 * everything in memory and compares it with the files on disk instead of writing (exit 1 on a
 * difference).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { learnByteLevelMerges, makeByteLevelTokenizer, SPECIAL_TOKENS } from '../../src/main/engine/byte-tokenizer.js';
import { HfTokenizer } from '../../src/main/engine/tokenizer.js';
import { seededRandom } from '../../src/main/engine/random.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const OUT = join(ROOT, 'resources/demo');

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

const SRC = {
  devilDict: '/usr/share/dictd/devil.dict.dz',
  devilIndex: '/usr/share/dictd/devil.index',
  constitution: '/usr/share/state/us-constitution.gz',
  declaration: '/usr/share/state/us-declaration.gz',
  pythonLib: '/usr/lib/python3.11',
};

/** Python modules of the code corpus: plain, readable, self-contained library code. */
const CODE_TRAIN_MODULES = [
  'bisect', 'calendar', 'cmd', 'colorsys', 'copy', 'difflib', 'fnmatch', 'fractions', 'glob',
  'graphlib', 'heapq', 'linecache', 'numbers', 'queue', 'reprlib', 'sched', 'shlex', 'string',
  'textwrap',
];
/** Held-out modules: other modules, never seen in training. */
const CODE_HELDOUT_MODULES = ['genericpath', 'getopt', 'netrc', 'posixpath', 'quopri'];

/** Every HOLDOUT_EVERY-th general document (counting from 0, at offset HOLDOUT_AT) is held out. */
const HOLDOUT_EVERY = 10;
const HOLDOUT_AT = 9;

/** Total vocabulary (bytes + merges + special tokens) of the demo tokenizer. */
const TARGET_VOCAB = 1024;

const N_PPL = 40;
const N_MC = 60;
const PPL_MIN = 300;
const PPL_MAX = 800;
const CTX_MIN = 150;
const CTX_MAX = 300;
const CONT_MIN = 40;
const CONT_MAX = 120;

const SEED_GENERAL_MC = 0x6e1e7a1;
const SEED_CODE_MC = 0xc0de;

function missingPackagesHelp(): string | null {
  const need: { pkg: string; paths: string[] }[] = [
    { pkg: 'dict-devil', paths: [SRC.devilDict, SRC.devilIndex] },
    { pkg: 'miscfiles', paths: [SRC.constitution, SRC.declaration] },
    { pkg: 'libpython3.11-stdlib', paths: [SRC.pythonLib, join(SRC.pythonLib, 'LICENSE.txt'), ...[...CODE_TRAIN_MODULES, ...CODE_HELDOUT_MODULES].map((m) => join(SRC.pythonLib, `${m}.py`))] },
  ];
  const missing = need.filter((n) => n.paths.some((p) => !existsSync(p)));
  if (missing.length === 0) return null;
  const lines = missing.map((m) => `  ${m.pkg}: missing ${m.paths.filter((p) => !existsSync(p)).slice(0, 3).join(', ')}`);
  return [
    'demo:make-data needs texts from Debian packages that are not installed here:',
    ...lines,
    `Install them with:  sudo apt-get install ${missing.map((m) => m.pkg).join(' ')}`,
    '(The Python files must come from Python 3.11 (Debian 12 "bookworm"); another version gives a different code corpus.',
    ' The generated files are committed to the repository, so this is only needed to rebuild them.)',
  ].join('\n');
}

function debianVersion(pkg: string): string {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Version}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : 'unknown version';
}

// ---------------------------------------------------------------------------------------------
// General English
// ---------------------------------------------------------------------------------------------

interface Doc {
  /** where it came from, for the README */
  source: 'devil' | 'constitution' | 'declaration';
  title: string;
  text: string;
}

/** The base64 alphabet of dictd index offsets and lengths. */
const DICTD_B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
function dictdNumber(s: string): number {
  let n = 0;
  for (const ch of s) {
    const v = DICTD_B64.indexOf(ch);
    if (v < 0) throw new Error(`bad dictd number ${JSON.stringify(s)}`);
    n = n * 64 + v;
  }
  return n;
}

/**
 * Plain-text normalisation. Blocks are separated by blank lines. Prose is hard-wrapped at ~70
 * columns; its lines are joined into one paragraph per line, a paragraph starting at a line
 * indented more than the block's least indentation (in Bierce: a new paragraph, or a prose
 * quotation whose first line is indented further), or at a speaker's line in a dialogue set with
 * hanging indents, or after a short label ending in ':'. A block whose lines are all indented in
 * any other way is verse: its lines are kept. Right-aligned attributions are lines of their own.
 * All lines are trimmed and runs of spaces (the two after a full stop) become one. The result has
 * no blank lines.
 */
function reflow(raw: string): string {
  const out: string[] = [];
  const blocks = raw.replace(/\r\n?/g, '\n').replace(/\t/g, '    ').split(/\n[ ]*\n/);
  for (const block of blocks) {
    const lines = block.split('\n').filter((l) => l.trim() !== '');
    if (lines.length === 0) continue;
    const ind = (l: string) => l.length - l.trimStart().length;
    // right-aligned attributions ("        G.J.") stay lines of their own
    const isAttribution = (l: string) => ind(l) >= 20;
    const body = lines.filter((l) => !isAttribution(l));
    const min = Math.min(...body.map(ind));
    // how a paragraph starts: "deeper" = at a line indented more than the block's least
    // indentation (prose, possibly set off as a quotation); "shallow" = at a line at the least
    // indentation (a dialogue with hanging indents, "LUNARIAN:  Then ..."); null = verse
    let starts: 'deeper' | 'shallow' | null = 'deeper';
    if (min > 0 && body.length > 0) {
      const first = ind(body[0]);
      if (first > min && body.every((l) => ind(l) <= first)) starts = 'deeper';
      else if (first === min && body.filter((l) => ind(l) === min).every((l) => /^[A-Z][A-Z .]+:/.test(l.trim())) && body.some((l) => ind(l) > min)) starts = 'shallow';
      else starts = null;
    }
    let para: string[] = [];
    const flush = () => {
      if (para.length) out.push(para.join(' ').replace(/\s+/g, ' ').trim());
      para = [];
    };
    for (const l of lines) {
      const t = l.trim();
      if (starts === null || isAttribution(l)) {
        flush();
        out.push(t.replace(/\s+/g, ' '));
        continue;
      }
      if ((starts === 'deeper' && ind(l) > min) || (starts === 'shallow' && ind(l) === min)) flush();
      para.push(t);
      if (/:$/.test(t) && t.length < 40) flush();
    }
    flush();
  }
  return out.join('\n');
}

function readDevil(): Doc[] {
  const data = gunzipSync(readFileSync(SRC.devilDict)); // dictzip is gzip-compatible
  const index = readFileSync(SRC.devilIndex, 'utf8').split('\n').filter(Boolean);
  const docs: Doc[] = [];
  const seen = new Set<number>();
  const entries: { word: string; off: number; len: number }[] = [];
  for (const line of index) {
    const [word, off, len] = line.split('\t');
    entries.push({ word, off: dictdNumber(off), len: dictdNumber(len) });
  }
  // the preface is the tail of the 00-database-info entry, after the Wiretap edition header
  const info = entries.find((e) => e.word === '00databaseinfo');
  if (!info) throw new Error('devil.index has no 00databaseinfo entry');
  const infoText = data.subarray(info.off, info.off + info.len).toString('utf8');
  const p = infoText.search(/^\s*PREFACE\s*$/m);
  if (p < 0) throw new Error('no PREFACE in the Devil\'s Dictionary header');
  docs.push({ source: 'devil', title: 'PREFACE', text: reflow(infoText.slice(p)) });
  // entries in file order (alphabetical); headwords sharing one entry (BABE/BABY) give it once
  for (const e of entries.filter((e) => !e.word.startsWith('00database')).sort((a, b) => a.off - b.off)) {
    if (seen.has(e.off)) continue;
    seen.add(e.off);
    const text = reflow(data.subarray(e.off, e.off + e.len).toString('utf8'));
    if (text) docs.push({ source: 'devil', title: e.word.toUpperCase(), text });
  }
  return docs;
}

function readConstitution(): Doc[] {
  const lines = gunzipSync(readFileSync(SRC.constitution)).toString('utf8').split('\n');
  // split into documents: the preamble, each section of Articles I-VII (Article headings go with
  // their first section), the note before the amendments, each amendment (with its sections)
  const groups: { title: string; lines: string[] }[] = [{ title: 'Preamble', lines: [] }];
  let article: string | null = null;
  for (const line of lines) {
    const t = line.trim();
    let start: string | null = null;
    if (/^Article [IVX]+$/.test(t)) {
      article = t;
      start = t;
    } else if (/^Section \d+$/.test(t) && article !== null && t !== 'Section 1') {
      start = `${article}, ${t}`;
    } else if (t === 'Amendments') {
      article = null;
      start = t;
    } else if (/^Amendment [IVX]+$/.test(t)) {
      article = null;
      start = t;
    }
    if (start) groups.push({ title: start, lines: [] });
    groups[groups.length - 1].lines.push(line);
  }
  return groups
    .map((g) => ({ source: 'constitution' as const, title: `US Constitution: ${g.title}`, text: reflow(g.lines.join('\n')) }))
    .filter((d) => d.text);
}

function readDeclaration(): Doc[] {
  const text = gunzipSync(readFileSync(SRC.declaration)).toString('utf8');
  const cut = text.indexOf('The signers of the Declaration');
  if (cut < 0) throw new Error('unexpected us-declaration layout');
  return [
    { source: 'declaration', title: 'Declaration of Independence', text: reflow(text.slice(0, cut)) },
    { source: 'declaration', title: 'Declaration of Independence: signers', text: reflow(text.slice(cut)) },
  ];
}

// ---------------------------------------------------------------------------------------------
// Code
// ---------------------------------------------------------------------------------------------

interface CodeDoc {
  module: string;
  text: string;
}

function readModule(m: string): CodeDoc {
  const text = readFileSync(join(SRC.pythonLib, `${m}.py`), 'utf8'); // verbatim, notices included
  return { module: m, text };
}

/** Top-level functions and methods of top-level classes of a Python file, dedented, decorators included. */
function pythonFunctions(src: string): string[] {
  const lines = src.split('\n');
  const out: string[] = [];
  let topLevel = '';
  for (let i = 0; i < lines.length; i++) {
    if (/^\S/.test(lines[i]) && !lines[i].startsWith('#') && !lines[i].startsWith('@')) topLevel = lines[i];
    const m = /^( *)(async\s+)?def\s/.exec(lines[i]);
    // functions, and methods of top-level classes (not functions nested in functions)
    if (!m || !(m[1].length === 0 || (m[1].length === 4 && topLevel.startsWith('class ')))) continue;
    const indent = m[1].length;
    let start = i;
    while (start > 0 && lines[start - 1].startsWith(' '.repeat(indent) + '@')) start--;
    // the body starts after the signature (which may span lines); it ends at the next
    // non-blank line indented no deeper than the def
    let j = i;
    while (j < lines.length && !/:\s*(#.*)?$/.test(lines[j])) j++;
    j++;
    while (j < lines.length && (lines[j].trim() === '' || lines[j].length - lines[j].trimStart().length > indent)) j++;
    let end = j;
    while (end > i && lines[end - 1].trim() === '') end--;
    out.push(lines.slice(start, end).map((l) => l.slice(Math.min(indent, l.length - l.trimStart().length))).join('\n'));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------------------------

/** `count` items spread evenly over `xs` (deterministic, keeps order). */
function spread<T>(xs: T[], count: number): T[] {
  if (xs.length <= count) return xs.slice();
  return Array.from({ length: count }, (_, i) => xs[Math.floor((i * xs.length) / count)]);
}

/**
 * Splits a text into consecutive passages of PPL_MIN..PPL_MAX characters. A passage ends at a
 * "strong" cut when one is in range (general: end of a line; code: before a blank line or a
 * statement at the function body's level), else at
 * the last "weak" cut in range (general: a sentence end; code: any line end); a stretch with no
 * cut in range is skipped. Returns each passage's start offset and text (trailing space trimmed).
 */
function passages(text: string, kind: 'general' | 'code'): { start: number; text: string }[] {
  const strong: number[] = [];
  const weak: number[] = [];
  for (let i = 1; i <= text.length; i++) {
    const atEnd = i === text.length;
    if (kind === 'general') {
      if (atEnd || text[i] === '\n') strong.push(i);
      else if (text[i] === ' ' && /[.;!?]["')_]?$/.test(text.slice(Math.max(0, i - 2), i))) weak.push(i);
    } else if (atEnd || text[i] === '\n') {
      weak.push(i);
      // strong: before a blank line, or before a statement at the function body's level
      if (atEnd || /^\n([ ]*(\n|$)| {0,4}[^ )\]}\n])/.test(text.slice(i, i + 200))) strong.push(i);
    }
  }
  const out: { start: number; text: string }[] = [];
  let start = 0;
  const skipBlank = (i: number) => {
    // general: skip whitespace; code: skip to the start of the next non-blank line
    if (kind === 'general') return text.slice(i).search(/\S/) < 0 ? text.length : i + text.slice(i).search(/\S/);
    while (i < text.length && text[i] === '\n') i++;
    const m = /^([ ]*\n)*/.exec(text.slice(i))!;
    return i + m[0].length;
  };
  start = skipBlank(0);
  while (start < text.length) {
    const inRange = (c: number) => c - start >= PPL_MIN && c - start <= PPL_MAX;
    const cut = strong.filter(inRange).pop() ?? weak.filter(inRange).pop();
    if (cut === undefined) {
      const next = [...strong, ...weak].filter((c) => c > start).sort((x, y) => x - y)[0];
      if (next === undefined) break;
      start = skipBlank(next);
      continue;
    }
    out.push({ start, text: text.slice(start, cut).trimEnd() });
    start = skipBlank(cut);
  }
  return out;
}

interface McCandidate {
  doc: number;
  context: string;
  continuation: string;
}

/**
 * A continuation item from the start of a general document: the context is the first 150-300
 * characters, cut at a space inside a paragraph; the continuation is the next 40-120 characters
 * of the same line, ending at a sentence end where possible, else at a word end. Joined with one
 * space they give the document's text back exactly.
 */
function generalMcCandidate(full: string, from: number, doc: number): McCandidate | null {
  const text = full.slice(from);
  let best: { s: number; e: number; score: number } | null = null;
  for (let s = CTX_MIN; s <= Math.min(CTX_MAX, text.length - 1); s++) {
    if (text[s] !== ' ' || text[s - 1] === ' ' || text[s - 1] === '\n') continue;
    const lineEnd = text.indexOf('\n', s) < 0 ? text.length : text.indexOf('\n', s);
    for (let e = s + 1 + CONT_MIN; e <= Math.min(s + 1 + CONT_MAX, lineEnd); e++) {
      const atWordEnd = e === lineEnd || text[e] === ' ';
      if (!atWordEnd || /[\s,(\-]/.test(text[e - 1])) continue;
      const sentenceEnd = /[.;!?]["')_]?$/.test(text.slice(s + 1, e));
      const score = (sentenceEnd ? 0 : 60) + Math.abs(e - s - 1 - 80) + Math.abs(s - 225) / 4;
      if (!best || score < best.score) best = { s, e, score };
    }
  }
  if (!best) return null;
  return { doc, context: text.slice(0, best.s), continuation: text.slice(best.s + 1, best.e) };
}

/**
 * A continuation item from the start of a Python function: the context is its first lines
 * (150-300 characters, ending with a newline), the continuation the next whole non-blank lines
 * (40-120 characters, no final newline); context + continuation is the function's text.
 */
function codeMcCandidate(fn: string, from: number, doc: number): McCandidate | null {
  const lines = fn.slice(from).split('\n');
  let best: { k: number; m: number; score: number } | null = null;
  let ctxLen = 0;
  for (let k = 0; k < lines.length - 1; k++) {
    ctxLen += lines[k].length + 1;
    if (ctxLen < CTX_MIN) continue;
    if (ctxLen > CTX_MAX) break;
    let contLen = -1;
    for (let m = k + 1; m < lines.length; m++) {
      if (lines[m].trim() === '') break;
      contLen += lines[m].length + 1;
      if (contLen > CONT_MAX) break;
      if (contLen < CONT_MIN) continue;
      const cont = lines.slice(k + 1, m + 1).join('\n');
      if (!/[A-Za-z_]{2}/.test(cont) || /^\s*("""|''')\s*$/.test(lines[k + 1])) continue;
      const score = Math.abs(contLen - 70) + Math.abs(ctxLen - 225) / 4;
      if (!best || score < best.score) best = { k, m, score };
    }
  }
  if (!best) return null;
  return {
    doc,
    context: lines.slice(0, best.k + 1).join('\n') + '\n',
    continuation: lines.slice(best.k + 1, best.m + 1).join('\n'),
  };
}

function shuffle<T>(xs: T[], random: () => number): T[] {
  const a = xs.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/**
 * Multiple-choice items: each candidate's true continuation plus 3 distractors, the true
 * continuations of items from other documents. Distractors are picked to look alike (similar
 * length; the same kind of first character, or for code the same indentation), least-used first,
 * ties broken by the seeded random order. Gold positions are balanced (each index equally often)
 * and shuffled.
 */
function buildMc(cands: McCandidate[], seed: number, kind: 'general' | 'code') {
  const random = seededRandom(seed);
  const golds = shuffle(Array.from({ length: cands.length }, (_, i) => i % 4), random);
  const used = new Map<string, number>();
  const lead = (s: string) => (kind === 'code' ? /^\s*/.exec(s)![0] : /^[A-Z]/.test(s) ? 'A' : /^[a-z]/.test(s) ? 'a' : '.');
  return cands.map((c, i) => {
    const order = shuffle(cands.map((_, j) => j), random);
    const pool = order.filter((j) => cands[j].doc !== c.doc && cands[j].continuation !== c.continuation);
    const ratio = (j: number) => cands[j].continuation.length / c.continuation.length;
    const tiers = [
      (j: number) => lead(cands[j].continuation) === lead(c.continuation) && ratio(j) >= 2 / 3 && ratio(j) <= 3 / 2,
      (j: number) => ratio(j) >= 1 / 2 && ratio(j) <= 2,
      () => true,
    ];
    const picked: string[] = [];
    for (const ok of tiers) {
      const options = pool
        .filter((j) => ok(j) && !picked.includes(cands[j].continuation))
        .sort((a, b) => (used.get(cands[a].continuation) ?? 0) - (used.get(cands[b].continuation) ?? 0));
      for (const j of options) {
        if (picked.length === 3) break;
        if (picked.includes(cands[j].continuation)) continue;
        picked.push(cands[j].continuation);
      }
      if (picked.length === 3) break;
    }
    for (const p of picked) used.set(p, (used.get(p) ?? 0) + 1);
    const gold = golds[i];
    const choices = picked.slice();
    choices.splice(gold, 0, c.continuation);
    return { context: c.context, choices, gold };
  });
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

function jsonl(rows: object[]): string {
  return rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
}

function sidecar(name: string, kind: 'perplexity' | 'multiple_choice', domain: 'general' | 'code', description: string): string {
  return (
    JSON.stringify(
      {
        blocklab_benchmark: {
          name,
          kind,
          domain,
          role: domain === 'general' ? 'old' : 'new',
          description,
          target_delimiter: domain === 'general' ? ' ' : '',
        },
      },
      null,
      2,
    ) + '\n'
  );
}

function kb(n: number): string {
  return `${(n / 1024).toFixed(1)} KB`;
}

async function main(): Promise<void> {
  const checkOnly = process.argv.includes('--check');
  const help = missingPackagesHelp();
  if (help) {
    process.stderr.write(help + '\n');
    process.exit(1);
  }
  const t0 = performance.now();
  const files = new Map<string, string>();

  // --- general corpus
  // the source has one entry twice (PRECEDENT): keep the first copy, so that no document is
  // both in train and held out
  const texts = new Set<string>();
  const general = [...readDevil(), ...readConstitution(), ...readDeclaration()].filter((d) => {
    if (/\n\n/.test(d.text)) throw new Error(`blank line inside ${d.title}`);
    if (texts.has(d.text)) return false;
    texts.add(d.text);
    return true;
  });
  const genTrain = general.filter((_, i) => i % HOLDOUT_EVERY !== HOLDOUT_AT);
  const genHeld = general.filter((_, i) => i % HOLDOUT_EVERY === HOLDOUT_AT);
  // one document per paragraph block: documents are separated by one blank line and hold none
  files.set('corpora/general/train.txt', genTrain.map((d) => d.text).join('\n\n') + '\n');
  files.set('corpora/general/heldout.txt', genHeld.map((d) => d.text).join('\n\n') + '\n');

  // --- code corpus
  const codeTrain = CODE_TRAIN_MODULES.map(readModule);
  const codeHeld = CODE_HELDOUT_MODULES.map(readModule);
  const codeRow = (d: CodeDoc) => ({ text: d.text, source: `python3.11/Lib/${d.module}.py` });
  files.set('corpora/code/train.jsonl', jsonl(codeTrain.map(codeRow)));
  files.set('corpora/code/heldout.jsonl', jsonl(codeHeld.map(codeRow)));

  // --- tokenizer: learned on the general train part only (the base model's pretraining data)
  const tTok = performance.now();
  const numMerges = TARGET_VOCAB - 256 - SPECIAL_TOKENS.length;
  // a merge whose result already exists adds no token, so learn a few extra and keep the
  // shortest prefix that fills the vocabulary (a prefix is what learning fewer would give)
  const learned = learnByteLevelMerges(genTrain.map((d) => d.text), numMerges + 16);
  const seenTok = new Set<string>();
  let keep = 0;
  while (keep < learned.length && seenTok.size < numMerges) {
    seenTok.add(learned[keep][0] + learned[keep][1]);
    keep++;
  }
  const merges = learned.slice(0, keep);
  const learnSeconds = (performance.now() - tTok) / 1000;
  const { tokenizerJson, tokenizerConfig } = makeByteLevelTokenizer({ merges });
  files.set('tokenizer/tokenizer.json', JSON.stringify(tokenizerJson) + '\n');
  files.set('tokenizer/tokenizer_config.json', JSON.stringify(tokenizerConfig, null, 2) + '\n');
  const tok = HfTokenizer.fromJson(tokenizerJson, tokenizerConfig);
  const bytesPerToken = (t: string) => Buffer.byteLength(t) / tok.encode(t, { addSpecialTokens: false }).length;

  // --- benchmarks
  // passages: held-out general documents, and whole functions/methods of the held-out modules
  // (dedented), both cut into pieces of PPL_MIN..PPL_MAX characters where longer
  const genPassages = genHeld.map((d) => passages(d.text, 'general'));
  const heldFns = codeHeld.map((d) => pythonFunctions(d.text));
  const fnPassages = heldFns.map((fns) => fns.map((f) => (f.length <= PPL_MAX ? [{ start: 0, text: f }] : passages(f, 'code'))));
  // round-robin over the modules so that every held-out module contributes
  const interleave = <T,>(lists: T[][]): T[] => {
    const out: T[] = [];
    for (let i = 0; lists.some((l) => i < l.length); i++) for (const l of lists) if (i < l.length) out.push(l[i]);
    return out;
  };
  const generalPpl = spread(genPassages.flat().map((p) => p.text).filter((t) => t.length >= PPL_MIN), N_PPL);
  const codePpl = spread(
    interleave(fnPassages.map((fns) => fns.flat().map((p) => p.text).filter((t) => t.length >= PPL_MIN))),
    N_PPL,
  );

  // multiple choice: an item from the start of each document / function; where those are too
  // few, more from later starting points (general: the start of a paragraph or sentence; code: a
  // statement inside the function), each not overlapping the item before it
  const mcFrom = (
    text: string,
    starts: number[],
    doc: number,
    make: (text: string, from: number, doc: number) => McCandidate | null,
  ): { first: McCandidate | null; later: McCandidate[] } => {
    const first = make(text, 0, doc);
    const later: McCandidate[] = [];
    let end = first ? first.context.length + first.continuation.length + 1 : 0;
    for (const s of [...new Set(starts)].sort((x, y) => x - y)) {
      if (s < end || s === 0) continue;
      const c = make(text, s, doc);
      if (!c) continue;
      later.push(c);
      end = s + c.context.length + c.continuation.length + 1;
    }
    return { first, later };
  };
  const pick = (all: { first: McCandidate | null; later: McCandidate[] }[]): McCandidate[] => {
    const firsts = all.map((a) => a.first).filter((c): c is McCandidate => c !== null);
    if (firsts.length >= N_MC) return spread(firsts, N_MC);
    const chosen = new Set([...firsts, ...spread(all.flatMap((a) => a.later), N_MC - firsts.length)]);
    return all.flatMap((a) => [a.first, ...a.later]).filter((c): c is McCandidate => c !== null && chosen.has(c));
  };
  // general: paragraph starts and sentence starts (a capital after . ! or ?)
  const sentenceStarts = (text: string) => [...text.matchAll(/(^|\n|[.!?]["')_]? )(?=["_]?[A-Z])/g)].map((m) => m.index! + m[0].length);
  // code: statements one or two levels into the function, outside strings spanning several lines
  const statementStarts = (fn: string) => {
    const out: number[] = [];
    let offset = 0;
    let inString = false;
    for (const line of fn.split('\n')) {
      if (!inString && /^ {4}( {4})?[^ )\]}]/.test(line)) out.push(offset);
      if (((line.match(/"""|'''/g) ?? []).length) % 2 === 1) inString = !inString;
      offset += line.length + 1;
    }
    return out;
  };
  const genCands = pick(genHeld.map((d, i) => mcFrom(d.text, sentenceStarts(d.text), i, generalMcCandidate)));
  let fnId = 0;
  const codeCands = pick(
    interleave(heldFns.map((fns) => fns.map((f) => mcFrom(f, statementStarts(f), fnId++, codeMcCandidate)))),
  );
  const generalMc = buildMc(genCands, SEED_GENERAL_MC, 'general');
  const codeMc = buildMc(codeCands, SEED_CODE_MC, 'code');

  files.set('benchmarks/general-ppl.jsonl', jsonl(generalPpl.map((text) => ({ text }))));
  files.set('benchmarks/code-ppl.jsonl', jsonl(codePpl.map((text) => ({ text }))));
  files.set('benchmarks/general-mc.jsonl', jsonl(generalMc));
  files.set('benchmarks/code-mc.jsonl', jsonl(codeMc));
  files.set(
    'benchmarks/general-ppl.json',
    sidecar('general-ppl', 'perplexity', 'general', `Perplexity on ${generalPpl.length} held-out passages of general English (${PPL_MIN}-${PPL_MAX} characters) from The Devil's Dictionary and the US founding documents; the old domain, to measure forgetting.`),
  );
  files.set(
    'benchmarks/code-ppl.json',
    sidecar('code-ppl', 'perplexity', 'code', `Perplexity on ${codePpl.length} held-out Python functions, or passages of longer ones (${PPL_MIN}-${PPL_MAX} characters, dedented), from standard-library modules not in the code training corpus; the new domain.`),
  );
  files.set(
    'benchmarks/general-mc.json',
    sidecar('general-mc', 'multiple_choice', 'general', `${generalMc.length} continuation items from held-out general English: pick the true continuation of the first ${CTX_MIN}-${CTX_MAX} characters of an entry, paragraph or sentence among 4 (${CONT_MIN}-${CONT_MAX} characters; distractors are continuations of other held-out passages). Context and choice are joined with one space.`),
  );
  files.set(
    'benchmarks/code-mc.json',
    sidecar('code-mc', 'multiple_choice', 'code', `${codeMc.length} continuation items from held-out Python: pick the true next line(s) after the opening lines (${CTX_MIN}-${CTX_MAX} characters, ending with a newline) of a function, or of a statement inside one, among 4 (${CONT_MIN}-${CONT_MAX} characters; distractors are continuations of other held-out functions). The choice follows the context directly.`),
  );

  // --- measurements for the README
  const genHeldText = files.get('corpora/general/heldout.txt')!;
  const codeHeldText = codeHeld.map((d) => d.text).join('\n');
  const bptGeneral = bytesPerToken(genHeldText);
  const bptCode = bytesPerToken(codeHeldText);
  const bptGeneralTrain = bytesPerToken(files.get('corpora/general/train.txt')!);
  const bptCodeTrain = bytesPerToken(codeTrain.map((d) => d.text).join('\n'));

  const versions = {
    devil: debianVersion('dict-devil'),
    misc: debianVersion('miscfiles'),
    python: debianVersion('libpython3.11-stdlib'),
  };
  const bytes = (k: string) => Buffer.byteLength(files.get(k)!);
  const count = (src: Doc['source'], ds: Doc[]) => ds.filter((d) => d.source === src).length;

  const pythonLicense = readFileSync(join(SRC.pythonLib, 'LICENSE.txt'), 'utf8');
  files.set('LICENSE-PYTHON.txt', pythonLicense);
  files.set('NOTICE', notice(versions, pythonLicense));
  files.set(
    'README.md',
    readme({
      genTrain, genHeld, versions, bytes, count, merges: merges.length, vocab: tok.vocabSize,
      bptGeneral, bptCode, bptGeneralTrain, bptCodeTrain,
      counts: { generalPpl: generalPpl.length, codePpl: codePpl.length, generalMc: generalMc.length, codeMc: codeMc.length },
    }),
  );

  // --- write or check
  let differ = 0;
  for (const [rel, content] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
    const path = join(OUT, rel);
    if (checkOnly) {
      const cur = existsSync(path) ? readFileSync(path, 'utf8') : null;
      if (cur !== content) {
        differ++;
        process.stdout.write(`differs: ${relative(ROOT, path)}\n`);
      }
    } else {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, content);
    }
  }
  let total = 0;
  for (const [rel, content] of files) {
    const n = Buffer.byteLength(content);
    total += n;
    process.stdout.write(`${rel.padEnd(36)} ${kb(n).padStart(9)}\n`);
  }
  process.stdout.write(
    [
      `total ${kb(total)}`,
      `general: ${genTrain.length} train / ${genHeld.length} held-out documents; code: ${codeTrain.length} / ${codeHeld.length} files`,
      `benchmarks: general-ppl ${generalPpl.length}, code-ppl ${codePpl.length}, general-mc ${generalMc.length}, code-mc ${codeMc.length}`,
      `tokenizer: ${merges.length} merges, vocab ${tok.vocabSize}, learned in ${learnSeconds.toFixed(1)} s`,
      `bytes/token held-out: general ${bptGeneral.toFixed(3)}, code ${bptCode.toFixed(3)} (train: ${bptGeneralTrain.toFixed(3)}, ${bptCodeTrain.toFixed(3)})`,
      `${checkOnly ? 'checked' : 'wrote'} ${files.size} files under ${relative(ROOT, OUT)}/ in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      '',
    ].join('\n'),
  );
  if (checkOnly && differ) {
    process.stderr.write(`${differ} file(s) differ from what demo:make-data builds\n`);
    process.exit(1);
  }
}

// ---------------------------------------------------------------------------------------------
// NOTICE and README
// ---------------------------------------------------------------------------------------------

/** Wraps text at spaces to lines of at most `width` characters, indenting lines after the first. */
function wrap(text: string, width: number, indent: string): string {
  const lines: string[] = [];
  for (const w of text.replace(/\s+/g, ' ').split(' ')) {
    if (lines.length && (lines[lines.length - 1] + ' ' + w).length <= width) lines[lines.length - 1] += ' ' + w;
    else lines.push(w);
  }
  return lines.join('\n' + indent);
}

function notice(v: { devil: string; misc: string; python: string }, license: string): string {
  // PSF's notice of copyright, as the license text of this Python release words it
  const m = /"(Copyright \(c\) 2001[^"]*?Python Software Foundation;\s*All Rights Reserved)"/.exec(license);
  if (!m) throw new Error('no PSF copyright notice in the Python LICENSE.txt');
  const psfNotice = '   ' + wrap(m[1], 88, '   ') + '.';
  return `Blocklab demo data: sources and terms
=====================================

The files under resources/demo/ were generated by scripts/demo/make-data.ts from texts
shipped by Debian 12 ("bookworm") packages. Everything except the Python source code is in the
public domain; the Python source code is under the PSF License Agreement (see below).

1. General-English corpus (corpora/general/) and the benchmarks made from it
   (benchmarks/general-ppl.*, benchmarks/general-mc.*)

   a. The Devil's Dictionary, by Ambrose Bierce (written 1881-1906; published in book form
      1906 as "The Cynic's Word Book" and 1911 as "The Devil's Dictionary", Albert and Charles
      Boni). Public domain, copyright expired. Taken from the Internet Wiretap 1st Online
      Edition (released April 15, 1993, entered by Aloysius of &tSftDotIotE), as packaged by
      Debian in dict-devil ${v.devil} (/usr/share/dictd/devil.dict.dz). The Debian copyright
      file states: "The Devil's Dictionary is in the public domain, its copyright has expired."
      The dictd database headers and the Wiretap edition's title page were removed; Bierce's
      preface and all entries were kept.

   b. The Constitution of the United States of America (1787) with its 27 amendments, and the
      Declaration of Independence (July 4, 1776). Works of the United States government,
      public domain. Taken from Debian's miscfiles ${v.misc} (/usr/share/state/us-constitution.gz
      and us-declaration.gz; per Debian's copyright file these add-on files are public
      domain; per Debian's changelog the Constitution text was refreshed from the National
      Archives transcript, http://www.archives.gov/national_archives_experience/charters/
      constitution_transcript.html).

   Changes: the texts were split into documents (dictionary entries; sections of the
   Constitution's articles; amendments; the Declaration's text and its list of signers),
   hard-wrapped lines were joined into one paragraph per line, and runs of spaces were
   collapsed to one. The one entry that the source holds twice (PRECEDENT) is kept once.
   Wording is unchanged.

2. Code corpus (corpora/code/) and the benchmarks made from it
   (benchmarks/code-ppl.*, benchmarks/code-mc.*)

   Python source files of the Python 3.11 standard library (Lib/*.py), as packaged by Debian
   in libpython3.11-stdlib ${v.python} (/usr/lib/python3.11):
     training:  ${wrap(CODE_TRAIN_MODULES.map((m) => `${m}.py`).join(', '), 76, '                ')}
     held out:  ${wrap(CODE_HELDOUT_MODULES.map((m) => `${m}.py`).join(', '), 76, '                ')}

${psfNotice}
   Individual files also carry their own notices (e.g. textwrap.py: Copyright (C) 1999-2001
   Gregory P. Ward, Copyright (C) 2002, 2003 Python Software Foundation; numbers.py:
   Copyright 2007 Google, Inc., licensed to PSF under a Contributor Agreement); these are kept.

   Licensed under the PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2. The complete license text
   of this Python release, with the history of the software and the other licenses that apply
   to parts of it, is in LICENSE-PYTHON.txt next to this file (a verbatim copy of
   /usr/lib/python3.11/LICENSE.txt). See also https://docs.python.org/3.11/license.html.

   Summary of changes (as the PSF License asks of derivative works): the corpus files hold each
   module's source unchanged, one file per JSON line (corpora/code/*.jsonl, "text" field). The
   benchmarks hold excerpts of the held-out modules: functions and methods with their common
   indentation removed, whole or cut into passages (code-ppl), and the first lines of a
   function or of a statement inside one, split into a context and a continuation and shuffled
   with continuations taken from other functions (code-mc).

3. Tokenizer (tokenizer/)

   A byte-level BPE vocabulary learned by Blocklab's learnByteLevelMerges from the general
   training corpus (1a and 1b) only; it contains no other data.

Blocklab itself is under the MIT license (see the repository's package.json); these data files
keep the terms above.
`;
}

function readme(r: {
  genTrain: Doc[];
  genHeld: Doc[];
  versions: { devil: string; misc: string; python: string };
  bytes: (k: string) => number;
  count: (src: Doc['source'], ds: Doc[]) => number;
  merges: number;
  vocab: number;
  bptGeneral: number;
  bptCode: number;
  bptGeneralTrain: number;
  bptCodeTrain: number;
  counts: { generalPpl: number; codePpl: number; generalMc: number; codeMc: number };
}): string {
  const b = (k: string) => kb(r.bytes(k));
  return `# Blocklab demo data

The miniature LLaMA Pro experiment (\`blocklab demo\`) runs offline from these files: a base model
"pretrained" on general English, then expanded and tuned on code (a new domain), then evaluated
on both for gain (code) and forgetting (general). Sources and terms: [NOTICE](NOTICE).

Everything here except a model is generated by \`npm run demo:make-data\`
(\`scripts/demo/make-data.ts\`) from Debian packages (\`dict-devil\`, \`miscfiles\`,
\`libpython3.11-stdlib\`). The script is deterministic: the same package versions give the same
bytes (\`npm run demo:make-data -- --check\` compares). Users never need to run it.

## Corpora

| file | content | size |
|---|---|---|
| \`corpora/general/train.txt\` | ${r.genTrain.length} documents: ${r.count('devil', r.genTrain)} from The Devil's Dictionary (with the preface), ${r.count('constitution', r.genTrain)} from the US Constitution, ${r.count('declaration', r.genTrain)} from the Declaration of Independence | ${b('corpora/general/train.txt')} |
| \`corpora/general/heldout.txt\` | ${r.genHeld.length} documents: ${r.count('devil', r.genHeld)} + ${r.count('constitution', r.genHeld)} + ${r.count('declaration', r.genHeld)} | ${b('corpora/general/heldout.txt')} |
| \`corpora/code/train.jsonl\` | ${CODE_TRAIN_MODULES.length} Python 3.11 stdlib modules, one per line (\`text\`, \`source\`): ${CODE_TRAIN_MODULES.join(', ')} | ${b('corpora/code/train.jsonl')} |
| \`corpora/code/heldout.jsonl\` | ${CODE_HELDOUT_MODULES.length} other modules: ${CODE_HELDOUT_MODULES.join(', ')} | ${b('corpora/code/heldout.jsonl')} |

General documents are dictionary entries (the headword starts the entry: \`ABATIS, n. Rubbish
in front of a fort, ...\`), the Constitution's preamble, each section of its articles, each
amendment, and the Declaration (text, signers). Lines hard-wrapped in the sources are joined: one
paragraph (or verse line) per line, no blank lines inside a document, and **one blank line between
documents**. Note that Blocklab's corpus reader treats a \`.txt\` file as one document; split on
blank lines to get the documents back. Held out: every ${HOLDOUT_EVERY}th document (index % ${HOLDOUT_EVERY} = ${HOLDOUT_AT}, in the
order Devil's Dictionary A-Z, Constitution, Declaration). Python files are verbatim (notices kept);
train and held-out modules are disjoint.

## Tokenizer

\`tokenizer/tokenizer.json\` and \`tokenizer_config.json\`: a GPT-2-style byte-level BPE made with
\`makeByteLevelTokenizer\`, its ${r.merges} merges learned by \`learnByteLevelMerges\` on the general
training documents only, all of them, no subsampling (the base model's "pretraining" data; code
is a new domain for it, as it was for LLaMA). Vocabulary: ${r.vocab} tokens (256 bytes + ${r.merges} merges + ${SPECIAL_TOKENS.length} special tokens,
Llama 3 names: ${SPECIAL_TOKENS.map((s) => `\`${s}\``).join(', ')}); BOS is added by the post-processor.

Compression (UTF-8 bytes per token, no special tokens):

| text | bytes/token |
|---|---|
| general, held-out | ${r.bptGeneral.toFixed(2)} |
| code, held-out | ${r.bptCode.toFixed(2)} |
| general, train | ${r.bptGeneralTrain.toFixed(2)} |
| code, train | ${r.bptCodeTrain.toFixed(2)} |

Code compresses worse: its identifiers, indentation and punctuation were not in the data the
merges were learned from.

## Benchmarks (\`benchmarks/\`)

Each is \`NAME.jsonl\` (items) with a sidecar \`NAME.json\`:
\`{"blocklab_benchmark": {"name", "kind", "domain", "role", "description", "target_delimiter"}}\`.
General is the old domain (\`role: "old"\`, forgetting), code the new one (\`role: "new"\`, gain).

| name | kind | items | made from |
|---|---|---|---|
| \`general-ppl\` | perplexity (\`{"text"}\`) | ${r.counts.generalPpl} | held-out general documents of ${PPL_MIN}-${PPL_MAX} characters; longer ones cut into consecutive passages of that size at line (else sentence) ends |
| \`code-ppl\` | perplexity (\`{"text"}\`) | ${r.counts.codePpl} | functions and methods of the held-out modules (dedented) of ${PPL_MIN}-${PPL_MAX} characters; longer ones cut into consecutive passages at line ends (before a blank line or a body-level statement where possible) |
| \`general-mc\` | multiple choice (\`{"context", "choices", "gold"}\`) | ${r.counts.generalMc} | the start of a held-out document (the headword and definition), or where those are too few, of a later paragraph or sentence |
| \`code-mc\` | multiple choice | ${r.counts.codeMc} | the first lines of a held-out function (from its \`def\`), or where those are too few, from a later statement inside it |

Multiple-choice items: the context is the first ${CTX_MIN}-${CTX_MAX} characters of a passage, the true
continuation the next ${CONT_MIN}-${CONT_MAX} characters; the 3 distractors are true continuations of items from
other passages, chosen to look alike (similar length; same capitalisation, or for code the same
indentation). There are 4 distinct choices; the gold index is shuffled with a fixed seed and each
index is gold equally often. Joining rule (\`target_delimiter\`): general items split at a space
inside a paragraph, so \`context + " " + choice\` is the original text; code items split at a line
start, so \`context + choice\` is (the context ends with a newline; choices keep their indentation
and have no final newline).
`;
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
