/**
 * Training data for block-only tuning (DESIGN.md §3 "Corpora"): text files, JSONL files with a
 * "text" field, and folders of files (a code repository) with glob filters, tokenized, packed
 * LLaMA-pretraining style into one stream `[bos] doc eos [bos] doc eos ...`, cut into fixed-length
 * sequences, and split into training and validation sequences with a seeded shuffle.
 *
 * - Each .jsonl / .ndjson line is one document (its "text" string); any other file is one
 *   document. Documents that are empty or only whitespace are left out.
 * - Files given explicitly must be text: a binary file, invalid UTF-8 or a file over the size
 *   limit is an error naming the file. Inside folders such files are skipped with a note in
 *   `skipped`, as are .git, .hg, .svn and node_modules folders, symlinked folders and the
 *   cache folder when it lies inside a corpus folder. A malformed .jsonl line is an error
 *   wherever the file is.
 * - Tokenizing is the slow part, so each file's tokens are cached under
 *   `cacheDir/tokens/<key>.bin` with a JSON sidecar `<key>.json`, keyed by the tokenizer
 *   fingerprint and the file's SHA-256 (and how it is parsed: text or JSONL). The .bin holds the
 *   file's document tokens back to back, then the token count of each document, all Int32
 *   little-endian (no BOS/EOS: those are added when packing). A cache entry that does not check
 *   out (wrong length, wrong hash, unreadable sidecar) is rebuilt.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { endianness } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { writeFileAtomically } from './atomic.js';
import { BlocklabError } from './errors.js';
import { globMatcher } from './glob.js';
import { yieldToEventLoop } from './event-loop.js';
import { seededRandom } from './random.js';
import { jsonSyntaxProblem } from '../../shared/json-error.js';
import { parquetDocuments } from './parquet.js';

export interface CorpusSpec {
  /** files (.txt, .md, any text; .jsonl with a "text" field) or folders, walked recursively */
  paths: string[];
  /** globs relative to each folder that a folder's file must match (default: every file); explicit files are always read */
  include?: string[];
  /** globs relative to each folder for files to leave out */
  exclude?: string[];
  /** the field (.jsonl) or column (.parquet) that holds each document's text (default "text") */
  textColumn?: string;
}

export interface CorpusProgress {
  /** the file just read */
  file: string;
  /** bytes of the corpus read so far */
  done: number;
  /** bytes of the whole corpus */
  total: number;
}

export interface CorpusOptions {
  seqLen: number;
  /** fraction of the sequences held out for validation (default 0.05; 0: no validation set) */
  valFraction?: number;
  /** at least this many validation sequences when valFraction > 0 (default 1) */
  minValSequences?: number;
  seed: number;
  cacheDir: string;
  /** identifies the tokenizer (e.g. a hash of tokenizer.json + tokenizer_config.json); part of the cache key */
  tokenizerFingerprint: string;
  eosId: number;
  /** put before every document when given (LLaMA pretraining style) */
  bosId?: number | null;
  /** default 256 MB */
  maxBytesPerFile?: number;
  onProgress?: (p: CorpusProgress) => void;
}

export interface CorpusFile {
  path: string;
  bytes: number;
  sha256: string;
  documents: number;
  /** the documents' tokens, without BOS/EOS */
  tokens: number;
  /** read from the token cache */
  cached: boolean;
}

export interface PackedCorpus {
  seqLen: number;
  /** numTrain * seqLen token ids, row-major sequences */
  train: Int32Array;
  /** numVal * seqLen */
  val: Int32Array;
  numTrain: number;
  numVal: number;
  /** tokens in the packed stream, BOS/EOS included (before dropping the ragged tail) */
  tokens: number;
  documents: number;
  files: CorpusFile[];
  skipped: { path: string; reason: string }[];
  /** sha256 over the tokenizer fingerprint, the files' hashes and the packing/split settings */
  fingerprint: string;
}

export interface Tokenizes {
  encode(text: string, o?: { addSpecialTokens?: boolean }): number[];
}

/** A file's documents as token ids: all documents back to back, and each one's length. */
export interface TokenizedDocs {
  tokens: Int32Array;
  docLengths: Int32Array;
}

export type DocumentFormat = 'text' | 'jsonl' | 'parquet';

const DEFAULT_MAX_BYTES = 256 * 1024 * 1024;
const BINARY_PROBE_BYTES = 8192;
const ALWAYS_SKIPPED_FOLDERS = new Set(['.git', '.hg', '.svn', 'node_modules']);
const CACHE_FORMAT = 1;
const CACHE_TAG = 'blocklab-corpus-tokens-v1';

// ---------------------------------------------------------------------------------------------
// Pure pieces

/** Documents in a file's text: each non-blank JSONL line's `column` ("text"), or the whole text; blank documents are left out. */
export function parseDocuments(text: string, format: 'text' | 'jsonl', file: string, column = 'text'): string[] {
  if (format === 'text') return text.trim() === '' ? [] : [text];
  const what = `a JSON object with a ${JSON.stringify(column)} string${column === 'text' ? '' : ' (--text-column)'}`;
  const docs: string[] = [];
  let start = 0;
  let line = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    line++;
    const raw = text.slice(start, end);
    start = end + 1;
    if (raw.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      throw new BlocklabError(
        `line ${line} is not valid JSON (${jsonSyntaxProblem(err)}); each line of a .jsonl corpus must be ${what}`,
        { file },
      );
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value) || typeof (value as Record<string, unknown>)[column] !== 'string') {
      throw new BlocklabError(`line ${line} has no ${JSON.stringify(column)} string field; each line of a .jsonl corpus must be ${what}`, { file });
    }
    const t = (value as Record<string, string>)[column];
    if (t.trim() !== '') docs.push(t);
  }
  return docs;
}

/** Tokenizes documents without special tokens. */
export function tokenizeDocuments(docs: readonly string[], tokenizer: Tokenizes): TokenizedDocs {
  const builder = new IntBuilder();
  const docLengths = new Int32Array(docs.length);
  docs.forEach((d, i) => {
    const ids = tokenizer.encode(d, { addSpecialTokens: false });
    builder.push(ids);
    docLengths[i] = ids.length;
  });
  return { tokens: builder.finish(), docLengths };
}

/** tokenizeDocuments over a stream of documents (a Parquet file's rows), yielding to the event loop now and then. */
export async function tokenizeDocumentStream(docs: AsyncIterable<string>, tokenizer: Tokenizes): Promise<TokenizedDocs> {
  const builder = new IntBuilder();
  const lengths = new IntBuilder();
  let n = 0;
  for await (const d of docs) {
    const ids = tokenizer.encode(d, { addSpecialTokens: false });
    builder.push(ids);
    lengths.push([ids.length]);
    if (++n % 256 === 0) await yieldToEventLoop();
  }
  return { tokens: builder.finish(), docLengths: lengths.finish() };
}

/** Length of the packed stream of these files: every document plus its EOS (and BOS). */
export function packedLength(files: readonly TokenizedDocs[], withBos: boolean): number {
  let n = 0;
  for (const f of files) n += f.tokens.length + f.docLengths.length * (withBos ? 2 : 1);
  return n;
}

/** The packed stream `[bos] doc1 eos [bos] doc2 eos ...` of the files' documents, in order. */
export function packFiles(files: readonly TokenizedDocs[], eosId: number, bosId: number | null = null): Int32Array {
  const out = new Int32Array(packedLength(files, bosId !== null));
  let at = 0;
  for (const f of files) {
    let from = 0;
    for (const len of f.docLengths) {
      if (bosId !== null) out[at++] = bosId;
      out.set(f.tokens.subarray(from, from + len), at);
      at += len;
      from += len;
      out[at++] = eosId;
    }
  }
  return out;
}

/** The packed stream of already-tokenized documents (see packFiles). */
export function packDocuments(docs: readonly ArrayLike<number>[], eosId: number, bosId: number | null = null): Int32Array {
  const builder = new IntBuilder();
  for (const d of docs) builder.push(d);
  return packFiles([{ tokens: builder.finish(), docLengths: Int32Array.from(docs, (d) => d.length) }], eosId, bosId);
}

/** How many of `numSequences` are held out: max(minValSequences, round(valFraction * n)), or 0 when valFraction is 0. */
export function validationCount(numSequences: number, valFraction: number, minValSequences: number): number {
  if (valFraction === 0) return 0;
  return Math.max(minValSequences, Math.round(valFraction * numSequences));
}

/** The fewest sequences that leave one training sequence after validationCount(). */
export function minimumSequences(valFraction: number, minValSequences: number): number {
  let n = 1;
  while (n < validationCount(n, valFraction, minValSequences) + 1) n++;
  return n;
}

/** A seeded Fisher–Yates shuffle of 0..n-1 (mulberry32 from random.ts). */
export function shuffledIndices(n: number, seed: number): Int32Array {
  const idx = new Int32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  const random = seededRandom(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
  return idx;
}

export interface SplitResult {
  train: Int32Array;
  val: Int32Array;
  numTrain: number;
  numVal: number;
}

/**
 * Cuts the stream into consecutive `seqLen` sequences (the ragged tail dropped), shuffles their
 * indices with `seed`, and puts the first validationCount() in `val`, the rest in `train`, both
 * in shuffled order. The caller checks that at least one training sequence is left.
 */
export function splitSequences(stream: Int32Array, seqLen: number, valFraction: number, minValSequences: number, seed: number): SplitResult {
  const n = Math.floor(stream.length / seqLen);
  const numVal = Math.min(n, validationCount(n, valFraction, minValSequences));
  const numTrain = n - numVal;
  const order = shuffledIndices(n, seed);
  const val = new Int32Array(numVal * seqLen);
  const train = new Int32Array(numTrain * seqLen);
  for (let k = 0; k < n; k++) {
    const s = order[k];
    const seq = stream.subarray(s * seqLen, (s + 1) * seqLen);
    if (k < numVal) val.set(seq, k * seqLen);
    else train.set(seq, (k - numVal) * seqLen);
  }
  return { train, val, numTrain, numVal };
}

/** Byte offset of the first byte that breaks UTF-8 (the lead byte of a bad or cut-off sequence), or -1. */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) lo = 0xa0;
      if (b === 0xed) hi = 0x9f; // no surrogates
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) lo = 0x90;
      if (b === 0xf4) hi = 0x8f; // nothing above U+10FFFF
    } else return i;
    if (i + need >= n) return i; // cut off by the end of the file
    const second = bytes[i + 1];
    if (second < lo || second > hi) return i;
    for (let k = 2; k <= need; k++) {
      const c = bytes[i + k];
      if (c < 0x80 || c > 0xbf) return i;
    }
    i += need + 1;
  }
  return -1;
}

const fatalDecoder = new TextDecoder('utf-8', { fatal: true });

/** Where UTF-8 decoding fails: "first bad byte 0xff at byte offset 10, line 2". */
function utf8ProblemText(bytes: Uint8Array): string {
  const at = firstInvalidUtf8(bytes);
  const where = at >= 0 ? at : 0;
  let line = 1;
  for (let i = 0; i < where; i++) if (bytes[i] === 0x0a) line++;
  const hex = at >= 0 ? ` 0x${bytes[at].toString(16).padStart(2, '0')}` : '';
  return `first bad byte${hex} at byte offset ${where}, line ${line}`;
}

/** Decodes UTF-8 (dropping a BOM), or null when the bytes are not valid UTF-8. */
function tryDecodeUtf8(bytes: Uint8Array): string | null {
  try {
    return fatalDecoder.decode(bytes);
  } catch {
    return null;
  }
}

/** Decodes UTF-8 (dropping a BOM) or throws a BlocklabError with the offset and line of the first bad byte. */
export function decodeUtf8(bytes: Uint8Array, file: string): string {
  const text = tryDecodeUtf8(bytes);
  if (text !== null) return text;
  throw new BlocklabError(`is not valid UTF-8 text (${utf8ProblemText(bytes)}); re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)`, { file });
}

/** Offset of a NUL byte in the first 8 KB, or -1: such a file is taken for binary. */
export function binaryProbe(bytes: Uint8Array): number {
  return bytes.subarray(0, BINARY_PROBE_BYTES).indexOf(0);
}

// ---------------------------------------------------------------------------------------------
// Loading

interface Source {
  path: string;
  format: DocumentFormat;
  /** named in spec.paths (errors) rather than found in a folder (skipped with a note) */
  explicit: boolean;
  bytes: number;
}

function formatOf(path: string): DocumentFormat {
  const ext = extname(path).toLowerCase();
  if (ext === '.parquet') return 'parquet';
  return ext === '.jsonl' || ext === '.ndjson' ? 'jsonl' : 'text';
}

/** How a file is parsed, as the token cache and the corpus fingerprint key it: the format, and a non-default column. */
function parseKey(format: DocumentFormat, column: string): string {
  return format === 'text' || column === 'text' ? format : `${format}:${column}`;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 22 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** 4096 -> "4 KB", 268435456 -> "256 MB", 1610612736 -> "1.5 GB" */
function mb(bytes: number): string {
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 || Number.isInteger(v) || v >= 100 ? Math.round(v) : v.toFixed(1)} ${units[u]}`;
}

async function statOrThrow(path: string) {
  try {
    return await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new BlocklabError('does not exist; check the corpus path', { file: path, cause: err });
    throw new BlocklabError(`cannot be read (${code ?? String(err)}); check its permissions`, { file: path, cause: err });
  }
}

/** The files under `root` (relative paths, sorted), with the always-skipped folders noted. */
async function walkFolder(root: string, skipped: PackedCorpus['skipped'], cacheDir: string): Promise<{ rel: string; bytes: number }[]> {
  const out: { rel: string; bytes: number }[] = [];
  const visit = async (rel: string) => {
    const dir = rel === '' ? root : join(root, rel);
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      skipped.push({ path: dir, reason: `cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})` });
      return;
    }
    for (const e of entries) {
      const childRel = rel === '' ? e.name : `${rel}/${e.name}`;
      const full = join(root, childRel);
      if (e.isDirectory()) {
        if (ALWAYS_SKIPPED_FOLDERS.has(e.name)) {
          skipped.push({ path: full, reason: e.name === 'node_modules' ? 'node_modules folder (always skipped)' : 'version-control folder (always skipped)' });
        } else if (resolve(full) === cacheDir) {
          skipped.push({ path: full, reason: 'the token cache folder (always skipped)' });
        } else await visit(childRel);
      } else if (e.isFile()) {
        out.push({ rel: childRel, bytes: (await stat(full)).size });
      } else if (e.isSymbolicLink()) {
        try {
          const s = await stat(full);
          if (s.isFile()) out.push({ rel: childRel, bytes: s.size });
          else skipped.push({ path: full, reason: 'symlink to a folder (not followed)' });
        } catch {
          skipped.push({ path: full, reason: 'broken symlink' });
        }
      }
    }
  };
  await visit('');
  out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  return out;
}

async function collectSources(spec: CorpusSpec, skipped: PackedCorpus['skipped'], cacheDir: string): Promise<{ sources: Source[]; filtered: string[] }> {
  const include = spec.include && spec.include.length > 0 ? globMatcher(spec.include) : () => true;
  const exclude = spec.exclude && spec.exclude.length > 0 ? globMatcher(spec.exclude) : () => false;
  const sources: Source[] = [];
  const seen = new Set<string>();
  const filtered: string[] = []; // folders where the globs matched nothing
  const add = (path: string, bytes: number, explicit: boolean) => {
    const key = resolve(path);
    if (seen.has(key)) {
      skipped.push({ path, reason: 'listed more than once (read once)' });
      return;
    }
    seen.add(key);
    sources.push({ path, format: formatOf(path), explicit, bytes });
  };
  for (const p of spec.paths) {
    const s = await statOrThrow(p);
    if (s.isFile()) add(p, s.size, true);
    else if (s.isDirectory()) {
      const files = await walkFolder(p, skipped, resolve(cacheDir));
      let matched = 0;
      for (const f of files) {
        if (!include(f.rel) || exclude(f.rel)) continue;
        matched++;
        add(join(p, f.rel), f.bytes, false);
      }
      if (matched === 0) filtered.push(p);
    } else {
      throw new BlocklabError('is neither a file nor a folder; give text files, .jsonl files or folders', { file: p });
    }
  }
  return { sources, filtered };
}

function cachePaths(cacheDir: string, key: string) {
  const dir = join(cacheDir, 'tokens');
  return { dir, bin: join(dir, `${key}.bin`), meta: join(dir, `${key}.json`) };
}

const littleEndian = endianness() === 'LE';

function int32ToBytes(a: Int32Array): Uint8Array {
  if (littleEndian) return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const out = new Uint8Array(a.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < a.length; i++) view.setInt32(i * 4, a[i], true);
  return out;
}

function bytesToInt32(b: Uint8Array): Int32Array {
  const n = b.byteLength >> 2;
  if (littleEndian) {
    if (b.byteOffset % 4 === 0) return new Int32Array(b.buffer, b.byteOffset, n);
    return new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + n * 4));
  }
  const out = new Int32Array(n);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < n; i++) out[i] = view.getInt32(i * 4, true);
  return out;
}

interface CacheMeta {
  format: number;
  source_sha256: string;
  /** the format, and the column when it is not "text" (parseKey) */
  parse: string;
  documents: number;
  tokens: number;
  bin_sha256: string;
}

/** The cached tokens for `key`, or null when absent or not intact. */
async function readCache(paths: ReturnType<typeof cachePaths>, sourceSha: string, format: string): Promise<TokenizedDocs | null> {
  try {
    const meta = JSON.parse(await readFile(paths.meta, 'utf8')) as CacheMeta;
    if (meta.format !== CACHE_FORMAT || meta.source_sha256 !== sourceSha || meta.parse !== format) return null;
    const { documents, tokens } = meta;
    if (!Number.isInteger(documents) || !Number.isInteger(tokens) || documents < 0 || tokens < 0) return null;
    const bin = await readFile(paths.bin);
    if (bin.byteLength !== 4 * (tokens + documents)) return null;
    if (sha256(bin) !== meta.bin_sha256) return null;
    const all = bytesToInt32(bin);
    const docLengths = all.subarray(tokens);
    let sum = 0;
    for (const len of docLengths) {
      if (len < 0) return null;
      sum += len;
    }
    if (sum !== tokens) return null;
    return { tokens: all.subarray(0, tokens), docLengths };
  } catch {
    return null;
  }
}

async function writeCache(paths: ReturnType<typeof cachePaths>, cacheDir: string, sourceSha: string, format: string, t: TokenizedDocs): Promise<void> {
  const all = new Int32Array(t.tokens.length + t.docLengths.length);
  all.set(t.tokens, 0);
  all.set(t.docLengths, t.tokens.length);
  const bin = int32ToBytes(all);
  const meta: CacheMeta = {
    format: CACHE_FORMAT,
    source_sha256: sourceSha,
    parse: format,
    documents: t.docLengths.length,
    tokens: t.tokens.length,
    bin_sha256: sha256(bin),
  };
  try {
    await mkdir(paths.dir, { recursive: true });
    await writeFileAtomically(paths.bin, bin);
    await writeFileAtomically(paths.meta, `${JSON.stringify(meta)}\n`);
  } catch (err) {
    throw new BlocklabError(`cannot write the token cache (${(err as NodeJS.ErrnoException).code ?? String(err)}); make the folder writable or choose another cache folder`, {
      file: cacheDir,
      cause: err,
    });
  }
}

function checkOptions(opts: CorpusOptions): Required<Pick<CorpusOptions, 'valFraction' | 'minValSequences' | 'maxBytesPerFile'>> & { bosId: number | null } {
  const isId = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0x7fffffff;
  if (!Number.isInteger(opts.seqLen) || opts.seqLen < 1) throw new BlocklabError(`--seq must be a positive whole number of tokens (got ${opts.seqLen})`);
  const valFraction = opts.valFraction ?? 0.05;
  if (!(valFraction >= 0 && valFraction < 1)) throw new BlocklabError(`the validation fraction must be at least 0 and below 1 (got ${valFraction})`);
  const minValSequences = opts.minValSequences ?? 1;
  if (!Number.isInteger(minValSequences) || minValSequences < 0) throw new BlocklabError(`the minimum number of validation sequences must be a whole number ≥ 0 (got ${minValSequences})`);
  if (!Number.isInteger(opts.seed)) throw new BlocklabError(`--seed must be a whole number (got ${opts.seed})`);
  if (!isId(opts.eosId)) throw new BlocklabError(`the EOS token id must be a token id ≥ 0 (got ${opts.eosId}); the tokenizer needs an eos_token to pack a corpus`);
  const bosId = opts.bosId ?? null;
  if (bosId !== null && !isId(bosId)) throw new BlocklabError(`the BOS token id must be a token id ≥ 0 or null (got ${bosId})`);
  const maxBytesPerFile = opts.maxBytesPerFile ?? DEFAULT_MAX_BYTES;
  if (!(maxBytesPerFile > 0)) throw new BlocklabError(`the per-file size limit must be positive (got ${maxBytesPerFile})`);
  return { valFraction, minValSequences, maxBytesPerFile, bosId };
}


/**
 * A text or JSONL source's bytes, checked as loadCorpus checks them (size limit, binary probe),
 * with a decoder that applies the UTF-8 rule (an error for a named file, a note for a file found
 * in a folder); null when the file is skipped (noted in `skipped`).
 */
async function readTextSource(src: Source, maxBytesPerFile: number, skipped: PackedCorpus['skipped']): Promise<{ bytes: Buffer; decode: () => string | null } | null> {
  if (src.bytes > maxBytesPerFile) {
    if (src.explicit) {
      throw new BlocklabError(`is ${mb(src.bytes)}, over the ${mb(maxBytesPerFile)} limit per corpus file; split it into smaller files (e.g. split -C 100M) and give the folder, or convert it to Parquet (read streamed)`, {
        file: src.path,
      });
    }
    skipped.push({ path: src.path, reason: `over the ${mb(maxBytesPerFile)} limit per file (${mb(src.bytes)}); split it to include it` });
    return null;
  }
  let bytes: Buffer;
  try {
    bytes = await readFile(src.path);
  } catch (err) {
    throw new BlocklabError(`cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)}); check its permissions`, { file: src.path, cause: err });
  }
  const nul = binaryProbe(bytes);
  if (nul >= 0) {
    if (src.explicit) {
      throw new BlocklabError(`looks binary (a NUL byte at offset ${nul}); a corpus file must be UTF-8 text (.txt, .md, source code), .jsonl with a "text" field, or .parquet`, {
        file: src.path,
      });
    }
    skipped.push({ path: src.path, reason: 'binary (NUL byte in the first 8 KB)' });
    return null;
  }
  return {
    bytes,
    decode: () => {
      const text = src.explicit ? decodeUtf8(bytes, src.path) : tryDecodeUtf8(bytes);
      if (text === null) skipped.push({ path: src.path, reason: `not UTF-8 text (${utf8ProblemText(bytes)})` });
      return text;
    },
  };
}

/**
 * Every document of a corpus, in the order loadCorpus reads them, with the same rules for
 * what is read and what is skipped (noted in `skipped`) — untokenized: for handing a corpus
 * to another trainer. Parquet files are streamed.
 */
export async function* corpusDocuments(spec: CorpusSpec, opts: { cacheDir: string; maxBytesPerFile?: number; skipped?: PackedCorpus['skipped'] }): AsyncGenerator<{ file: string; text: string }> {
  if (spec.paths.length === 0) throw new BlocklabError('the corpus is empty: no files or folders were given; name at least one .txt, .jsonl, .parquet or folder');
  const skipped = opts.skipped ?? [];
  const column = spec.textColumn ?? 'text';
  const { sources } = await collectSources(spec, skipped, opts.cacheDir);
  for (const src of sources) {
    if (src.format === 'parquet') {
      for await (const text of parquetDocuments(src.path, column)) yield { file: src.path, text };
      continue;
    }
    const read = await readTextSource(src, opts.maxBytesPerFile ?? DEFAULT_MAX_BYTES, skipped);
    const text = read?.decode() ?? null;
    if (text === null) continue;
    for (const doc of parseDocuments(text, src.format, src.path, column)) yield { file: src.path, text: doc };
  }
}

/**
 * Reads, tokenizes (through the cache), packs and splits a corpus. Files are read in the order
 * given; a folder's files in sorted order of their relative paths.
 */
export async function loadCorpus(spec: CorpusSpec, tokenizer: Tokenizes, opts: CorpusOptions): Promise<PackedCorpus> {
  const { valFraction, minValSequences, maxBytesPerFile, bosId } = checkOptions(opts);
  const seqLen = opts.seqLen;
  const corpusName = spec.paths.join(', ');
  if (spec.paths.length === 0) throw new BlocklabError('the corpus is empty: no files or folders were given; name at least one .txt, .jsonl or folder');

  const skipped: PackedCorpus['skipped'] = [];
  const { sources, filtered } = await collectSources(spec, skipped, opts.cacheDir);
  const totalBytes = sources.reduce((a, s) => a + s.bytes, 0);
  let doneBytes = 0;
  const progress = (src: Source) => {
    doneBytes += src.bytes;
    opts.onProgress?.({ file: src.path, done: doneBytes, total: totalBytes });
  };

  const column = spec.textColumn ?? 'text';
  const files: CorpusFile[] = [];
  const tokenized: TokenizedDocs[] = [];
  const formats: string[] = [];
  for (const src of sources) {
    const parse = parseKey(src.format, column);
    let fileSha: string;
    let docs: TokenizedDocs | null;
    let bytes = src.bytes;
    let cached: boolean;
    if (src.format === 'parquet') {
      // streamed: hashed and read a row group at a time, so no per-file size limit applies
      fileSha = await sha256File(src.path);
      const paths = cachePaths(opts.cacheDir, sha256(`${CACHE_TAG}\0${opts.tokenizerFingerprint}\0${fileSha}\0${parse}`));
      docs = await readCache(paths, fileSha, parse);
      cached = docs !== null;
      if (!docs) {
        docs = await tokenizeDocumentStream(parquetDocuments(src.path, column), tokenizer);
        await writeCache(paths, opts.cacheDir, fileSha, parse, docs);
      }
    } else {
      const read = await readTextSource(src, maxBytesPerFile, skipped);
      if (!read) {
        progress(src);
        continue;
      }
      bytes = read.bytes.byteLength;
      fileSha = sha256(read.bytes);
      const paths = cachePaths(opts.cacheDir, sha256(`${CACHE_TAG}\0${opts.tokenizerFingerprint}\0${fileSha}\0${parse}`));
      docs = await readCache(paths, fileSha, parse);
      cached = docs !== null;
      if (!docs) {
        const text = read.decode();
        if (text === null) {
          progress(src);
          continue;
        }
        docs = tokenizeDocuments(parseDocuments(text, src.format, src.path, column), tokenizer);
        await writeCache(paths, opts.cacheDir, fileSha, parse, docs);
      }
    }
    tokenized.push(docs);
    files.push({ path: src.path, bytes, sha256: fileSha, documents: docs.docLengths.length, tokens: docs.tokens.length, cached });
    formats.push(parse);
    progress(src);
    await yieldToEventLoop();
  }

  const documents = files.reduce((a, f) => a + f.documents, 0);
  if (documents === 0) {
    const why =
      sources.length === 0 && filtered.length > 0
        ? `no file matched the include globs [${(spec.include ?? ['(all)']).join(', ')}]${spec.exclude?.length ? ` minus the exclude globs [${spec.exclude.join(', ')}]` : ''}`
        : 'no document has any text';
    throw new BlocklabError(`the corpus is empty (${why}); add text files or check the paths and globs`, { file: corpusName });
  }

  const stream = packFiles(tokenized, opts.eosId, bosId);
  const n = Math.floor(stream.length / seqLen);
  const numValWanted = validationCount(n, valFraction, minValSequences);
  if (n < numValWanted + 1) {
    const minSeq = minimumSequences(valFraction, minValSequences);
    const minVal = validationCount(minSeq, valFraction, minValSequences);
    const plus = minVal > 0 ? ` plus validation (${minVal} sequence${minVal === 1 ? '' : 's'})` : '';
    throw new BlocklabError(
      `the corpus has ${stream.length} tokens, fewer than the ${minSeq * seqLen} needed for one training sequence of --seq ${seqLen}${plus}; add data or lower --seq`,
      { file: corpusName },
    );
  }
  const split = splitSequences(stream, seqLen, valFraction, minValSequences, opts.seed);

  const fingerprint = sha256(
    JSON.stringify({
      v: CACHE_TAG,
      tokenizer: opts.tokenizerFingerprint,
      files: files.map((f, i) => [f.sha256, formats[i]]),
      seqLen,
      valFraction,
      minValSequences,
      seed: opts.seed,
      eosId: opts.eosId,
      bosId,
    }),
  );

  return {
    seqLen,
    train: split.train,
    val: split.val,
    numTrain: split.numTrain,
    numVal: split.numVal,
    tokens: stream.length,
    documents,
    files,
    skipped,
    fingerprint,
  };
}

// ---------------------------------------------------------------------------------------------
// Batches

export interface SamplerState {
  /** the epoch of the last index handed out (0-based) */
  epoch: number;
  /** how many indices of that epoch's permutation have been handed out */
  position: number;
}

/** murmur3's 32-bit finaliser. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The seed of epoch `epoch`'s permutation, from (seed, epoch). */
export function epochSeed(seed: number, epoch: number): number {
  return fmix32((seed >>> 0) ^ fmix32((epoch + 0x9e3779b9) >>> 0));
}

/**
 * Deterministic, resumable batches of training-sequence indices. Each epoch is a fresh seeded
 * permutation of 0..numTrain-1; a batch that reaches the end of an epoch continues into the next,
 * so every batch has exactly batchSize indices.
 */
export class BatchSampler {
  private epoch = 0;
  private position = 0;
  private perm: Int32Array;

  constructor(
    readonly numTrain: number,
    readonly batchSize: number,
    readonly seed: number,
  ) {
    if (!Number.isInteger(numTrain) || numTrain < 1) throw new BlocklabError(`a batch sampler needs at least one training sequence (got ${numTrain})`);
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new BlocklabError(`--batch must be a positive whole number (got ${batchSize})`);
    if (!Number.isInteger(seed)) throw new BlocklabError(`--seed must be a whole number (got ${seed})`);
    this.perm = shuffledIndices(numTrain, epochSeed(seed, 0));
  }

  /** The next batchSize training-sequence indices. */
  next(): number[] {
    const out: number[] = new Array(this.batchSize);
    for (let k = 0; k < this.batchSize; k++) {
      if (this.position >= this.numTrain) {
        this.epoch++;
        this.position = 0;
        this.perm = shuffledIndices(this.numTrain, epochSeed(this.seed, this.epoch));
      }
      out[k] = this.perm[this.position++];
    }
    return out;
  }

  /** Where the sampler is; restore() from it continues with exactly the batches that would have come next. */
  state(): SamplerState {
    return { epoch: this.epoch, position: this.position };
  }

  static restore(numTrain: number, batchSize: number, seed: number, state: SamplerState): BatchSampler {
    const s = new BatchSampler(numTrain, batchSize, seed);
    const { epoch, position } = state ?? ({} as SamplerState);
    if (!Number.isInteger(epoch) || epoch < 0 || !Number.isInteger(position) || position < 0 || position > numTrain) {
      throw new BlocklabError(
        `the saved sampler state ${JSON.stringify(state)} does not fit ${numTrain} training sequences; resume with the same corpus and --seq, or start a new run`,
      );
    }
    s.epoch = epoch;
    s.position = position;
    s.perm = shuffledIndices(numTrain, epochSeed(seed, epoch));
    return s;
  }
}

/** The sequences `indices` of a split, as one batch × seqLen array. */
export function gatherBatch(corpus: PackedCorpus, split: 'train' | 'val', indices: number[]): Int32Array {
  const src = split === 'train' ? corpus.train : corpus.val;
  const count = split === 'train' ? corpus.numTrain : corpus.numVal;
  const T = corpus.seqLen;
  const out = new Int32Array(indices.length * T);
  indices.forEach((ix, k) => {
    if (!Number.isInteger(ix) || ix < 0 || ix >= count) {
      throw new BlocklabError(`sequence index ${ix} is outside the ${count} ${split === 'train' ? 'training' : 'validation'} sequences`);
    }
    out.set(src.subarray(ix * T, (ix + 1) * T), k * T);
  });
  return out;
}

// ---------------------------------------------------------------------------------------------

/** A growable Int32 buffer. */
class IntBuilder {
  private buf = new Int32Array(1024);
  private len = 0;

  push(ids: ArrayLike<number>): void {
    const need = this.len + ids.length;
    if (need > this.buf.length) {
      let cap = this.buf.length;
      while (cap < need) cap *= 2;
      const next = new Int32Array(cap);
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
    }
    if (ids instanceof Int32Array) this.buf.set(ids, this.len);
    else for (let i = 0; i < ids.length; i++) this.buf[this.len + i] = ids[i];
    this.len = need;
  }

  finish(): Int32Array {
    return this.buf.slice(0, this.len);
  }
}
