/**
 * Benchmarks the way lm-evaluation-harness scores them, without tfjs: task files (loading and
 * validating untrusted JSONL), few-shot contexts, the requests the harness would send to a
 * model, and the metrics it computes from the answers. The model is behind two small
 * interfaces — a TokenScorer (log-likelihoods of continuations) and a TextGenerator (greedy
 * text) — so every formula here can be tested against numbers worked out by hand; eval.ts
 * supplies the tfjs implementations and the experiment-store bookkeeping.
 *
 * Harness behaviour followed (lm_eval v0.4, HFLM, after PR #3347 "delegate BOS to the tokenizer"):
 * - loglikelihood(context, continuation): trailing whitespace of the context moves to the
 *   continuation; whole = encode(context + continuation), ctx = encode(context), both with the
 *   tokenizer's own BOS; the continuation's tokens are whole[len(ctx):]. An empty context is
 *   [BOS] (else [EOS]). The model sees (ctx + cont)[-(max_length + 1):][:-1].
 * - multiple choice: requests (context, target_delimiter + choice); acc = argmax of the summed
 *   log-likelihoods; acc_norm = argmax of loglik / len(choice) — len counts the choice's
 *   characters (Python len: code points, without the delimiter), not its bytes or tokens.
 *   Ties go to the first choice (numpy argmax).
 * - perplexity (loglikelihood_rolling): the text's tokens without special tokens, cut into
 *   disjoint windows of max_length predictions (context_len 1); the first window's only context
 *   is the prefix token (BOS, else EOS), so every token is predicted exactly once.
 *   word_perplexity = exp(−Σll / Σwords) with words = len(re.split(r"\s+", text)),
 *   byte_perplexity = exp(−Σll / Σbytes) (UTF-8), bits_per_byte = −Σll / Σbytes / ln 2;
 *   token_perplexity = exp(−Σll / Σtokens) is ours. Their standard errors are null, as the
 *   harness reports N/A for these aggregations — except bits per byte's, which forgetting
 *   summaries need: the ratio estimator's over documents (bitsPerByteStderr).
 * - generation (generate_until): greedy from encode(context) (left-truncated to
 *   max_length − max_gen_tokens), cut at the first stop string (default [fewshot_delimiter])
 *   or EOS; with a regex, the answer is the first match's first non-empty group (the whole
 *   match without groups), else "[invalid]"; exact_match compares it, stripped, with the
 *   stripped answer.
 * - acc, acc_norm, exact_match: mean over items with stderr = sqrt(sample variance / n)
 *   (harness mean_stderr); null for fewer than two items.
 * - few-shot: K examples, each text + target_delimiter + gold + fewshot_delimiter, before the
 *   item's text. Drawn without replacement from the fewshot_split file (or the same file,
 *   never the item itself) by a PRNG seeded with (seed, item index): the same item gets the
 *   same shots whatever --limit is. (The harness draws from one random.Random(1234) stream, so
 *   its shots differ from ours; the format is the same.)
 */
import { builtinBenchmarkDir } from './resources.js';
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, extname, isAbsolute, join, resolve } from 'node:path';
import vm from 'node:vm';
import { z } from 'zod';
import {
  BENCHMARK_LIMITS,
  BenchmarkHeaderLineSchema,
  BenchmarkHeaderSchema,
  ITEM_SCHEMAS,
  KIND_METRICS,
  type BenchmarkHeader,
  type BenchmarkKind,
  type BenchmarkRole,
  type GenerationItem,
  type MultipleChoiceItem,
  type PerplexityItem,
} from '../../shared/benchmarks.js';
import { BlocklabError } from './errors.js';
import { seededRandom } from './random.js';
import { jsonSyntaxProblem } from '../../shared/json-error.js';

// ---------------------------------------------------------------------------------------------
// Task files

export type ResolvedHeader = BenchmarkHeader & { role: BenchmarkRole };

interface ItemsOf {
  multiple_choice: MultipleChoiceItem;
  perplexity: PerplexityItem;
  generation: GenerationItem;
}

export interface ItemList<K extends BenchmarkKind = BenchmarkKind> {
  kind: K;
  file: string;
  items: ItemsOf[K][];
  /** 1-based line of each item, for messages */
  lines: number[];
  /** sha256 (hex) of the file's bytes */
  contentHash: string;
}

export type Benchmark = {
  [K in BenchmarkKind]: ItemList<K> & {
    header: ResolvedHeader & { kind: K };
    /** where the header came from */
    headerSource: 'header-line' | 'sidecar' | 'inferred';
    /** sha256 over the file and its sidecar */
    contentHash: string;
  };
}[BenchmarkKind];

/** Names of the builtin benchmarks (NAME for every NAME.jsonl), or null when the folder is missing. */
export async function listBuiltinBenchmarks(dir = builtinBenchmarkDir()): Promise<string[] | null> {
  try {
    return (await readdir(dir)).filter((f) => f.endsWith('.jsonl')).map((f) => f.slice(0, -'.jsonl'.length)).sort();
  } catch {
    return null;
  }
}

/** A --bench argument (a path, or builtin:NAME) → an absolute file path. */
export async function resolveBenchmarkSpec(spec: string, builtinDir = builtinBenchmarkDir()): Promise<string> {
  if (!spec.startsWith('builtin:')) return resolve(spec);
  const name = spec.slice('builtin:'.length);
  const available = await listBuiltinBenchmarks(builtinDir);
  if (available === null) {
    throw new BlocklabError(`the builtin benchmarks are not installed (no folder ${builtinDir}); pass a task file path instead of ${spec}`);
  }
  if (!available.includes(name)) {
    const list = available.length ? available.map((n) => `builtin:${n}`).join(', ') : 'none';
    throw new BlocklabError(`there is no builtin benchmark "${name}"; available: ${list}`);
  }
  return join(builtinDir, `${name}.jsonl`);
}

function sha256(...parts: (Buffer | string)[]): string {
  const h = createHash('sha256');
  for (const p of parts) {
    h.update(typeof p === 'string' ? p : p);
    h.update('\0');
  }
  return h.digest('hex');
}

async function readBounded(file: string, what: string): Promise<Buffer> {
  let st;
  try {
    st = await stat(file);
  } catch {
    throw new BlocklabError(`does not exist; give the path of a ${what} (JSONL)`, { file });
  }
  if (st.isDirectory()) throw new BlocklabError(`is a folder; give the path of a ${what} (JSONL)`, { file });
  if (st.size > BENCHMARK_LIMITS.maxFileBytes) {
    throw new BlocklabError(`is ${st.size} bytes, more than the ${BENCHMARK_LIMITS.maxFileBytes} a ${what} may have; split it`, { file });
  }
  try {
    return await readFile(file);
  } catch (e) {
    throw new BlocklabError(`cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { file });
  }
}

function decodeUtf8(bytes: Buffer, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new BlocklabError('is not valid UTF-8; save it as UTF-8 JSONL', { file });
  }
}

/** One line of a zod error: `field "gold": is 5 but there are 4 choices`. */
function describeIssues(error: z.ZodError): string {
  const issue = error.issues[0];
  const path = issue.path.map(String).join('.');
  let message = issue.message;
  const typed = /^Invalid input: expected (\w+), received (\w+)$/.exec(message);
  if (issue.code === 'invalid_type' && typed) message = typed[2] === 'undefined' ? 'is missing' : `must be ${typed[1] === 'array' ? 'an array' : `a ${typed[1]}`}, not ${typed[2] === 'array' ? 'an array' : typed[2]}`;
  if (issue.code === 'unrecognized_keys') return `${message}${path ? ` in "${path}"` : ''}`;
  return path ? `"${path}" ${message}` : message;
}

const ITEM_SHAPES: Record<BenchmarkKind, string> = {
  multiple_choice: '{"context": str, "choices": [str, ...], "gold": int}',
  perplexity: '{"text": str}',
  generation: '{"prompt": str, "answer": str, "until"?: [str], "regex"?: str}',
};

interface RawLine {
  line: number;
  value: unknown;
}

/** Non-empty lines parsed as JSON, with their line numbers; bounded. */
function parseJsonLines(text: string, file: string): RawLine[] {
  const out: RawLine[] = [];
  let start = 0;
  let lineNo = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    lineNo++;
    if (end - start > BENCHMARK_LIMITS.maxLineChars) {
      throw new BlocklabError(`is ${end - start} characters long, more than ${BENCHMARK_LIMITS.maxLineChars}; shorten the item or split it`, {
        file: `${file}:${lineNo}`,
      });
    }
    let line = text.slice(start, end);
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (lineNo === 1 && line.charCodeAt(0) === 0xfeff) line = line.slice(1); // a UTF-8 byte-order mark
    if (line.trim().length > 0) {
      if (out.length > BENCHMARK_LIMITS.maxItems) {
        throw new BlocklabError(`has more than ${BENCHMARK_LIMITS.maxItems} items; split the file (or evaluate a part with --limit after splitting)`, { file });
      }
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (e) {
        throw new BlocklabError(`is not valid JSON (${jsonSyntaxProblem(e)}); each line must be one JSON object`, { file: `${file}:${lineNo}` });
      }
      out.push({ line: lineNo, value });
    }
    start = end + 1;
  }
  return out;
}

function isHeaderLine(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && 'blocklab_benchmark' in v;
}

function parseHeader(raw: unknown, where: string): BenchmarkHeader {
  let inner = raw;
  if (isHeaderLine(raw)) {
    const wrapped = BenchmarkHeaderLineSchema.safeParse(raw);
    if (!wrapped.success) throw new BlocklabError(`header: ${describeIssues(wrapped.error)} (the header is {"blocklab_benchmark": {...}} alone)`, { file: where });
    inner = wrapped.data.blocklab_benchmark;
  }
  if (typeof inner !== 'object' || inner === null || Array.isArray(inner)) {
    throw new BlocklabError('header: must be a JSON object like {"name": "...", "kind": "multiple_choice"}', { file: where });
  }
  const parsed = BenchmarkHeaderSchema.safeParse(inner);
  if (!parsed.success) throw new BlocklabError(`header: ${describeIssues(parsed.error)}`, { file: where });
  if (parsed.data.regex !== undefined) compileRegex(parsed.data.regex, `${where}: header "regex"`);
  return parsed.data;
}

function inferKind(first: unknown, file: string, lineNo: number): BenchmarkKind {
  const o = (typeof first === 'object' && first !== null ? first : {}) as Record<string, unknown>;
  if ('choices' in o) return 'multiple_choice';
  if ('text' in o) return 'perplexity';
  if ('prompt' in o || 'answer' in o) return 'generation';
  throw new BlocklabError(
    'cannot tell the benchmark kind from the first item; add a first line {"blocklab_benchmark": {"name": "...", "kind": "multiple_choice" | "perplexity" | "generation"}} or a sidecar NAME.json with that object',
    { file: `${file}:${lineNo}` },
  );
}

/** Validates items of `kind`; every error names the file and line. */
function validateItems<K extends BenchmarkKind>(kind: K, lines: RawLine[], file: string): { items: ItemsOf[K][]; lines: number[] } {
  const schema = ITEM_SCHEMAS[kind] as unknown as z.ZodType<ItemsOf[K]>;
  const items: ItemsOf[K][] = [];
  const lineNumbers: number[] = [];
  for (const { line, value } of lines) {
    if (isHeaderLine(value)) {
      throw new BlocklabError('a {"blocklab_benchmark": ...} header may only be the first line', { file: `${file}:${line}` });
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new BlocklabError(`must be a JSON object; a ${kind} item is ${ITEM_SHAPES[kind]}`, { file: `${file}:${line}` });
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      throw new BlocklabError(`${describeIssues(parsed.error)} (a ${kind} item is ${ITEM_SHAPES[kind]})`, { file: `${file}:${line}` });
    }
    const item = parsed.data;
    if (kind === 'generation' && (item as GenerationItem).regex !== undefined) {
      compileRegex((item as GenerationItem).regex!, `${file}:${line}: "regex"`);
    }
    items.push(item);
    lineNumbers.push(line);
  }
  return { items, lines: lineNumbers };
}

/**
 * Reads a task file: header (first line, sidecar, or inferred), then every item validated.
 * Never trusts the file: sizes, line lengths and item counts are bounded and every problem is
 * a BlocklabError naming the file and line.
 */
export async function loadBenchmark(path: string): Promise<Benchmark> {
  const file = resolve(path);
  const bytes = await readBounded(file, 'benchmark task file');
  const lines = parseJsonLines(decodeUtf8(bytes, file), file);

  const sidecarPath = join(dirname(file), `${basename(file, extname(file))}.json`);
  let sidecarBytes: Buffer | null = null;
  if (sidecarPath !== file) {
    try {
      if ((await stat(sidecarPath)).isFile()) sidecarBytes = await readBounded(sidecarPath, 'benchmark sidecar');
    } catch (e) {
      if (e instanceof BlocklabError) throw e;
    }
  }
  const hasHeaderLine = lines.length > 0 && isHeaderLine(lines[0].value);
  if (hasHeaderLine && sidecarBytes) {
    throw new BlocklabError(`has a header line and a sidecar ${basename(sidecarPath)}; keep one of them`, { file });
  }

  let header: BenchmarkHeader;
  let headerSource: 'header-line' | 'sidecar' | 'inferred';
  let itemLines = lines;
  if (hasHeaderLine) {
    header = parseHeader(lines[0].value, `${file}:${lines[0].line}`);
    headerSource = 'header-line';
    itemLines = lines.slice(1);
  } else if (sidecarBytes) {
    let raw: unknown;
    try {
      raw = JSON.parse(decodeUtf8(sidecarBytes, sidecarPath));
    } catch (e) {
      if (e instanceof BlocklabError) throw e;
      throw new BlocklabError(`is not valid JSON (${jsonSyntaxProblem(e)}); it should hold the benchmark header object`, { file: sidecarPath });
    }
    header = parseHeader(raw, sidecarPath);
    headerSource = 'sidecar';
  } else {
    if (lines.length === 0) throw new BlocklabError('has no items; a task file holds one JSON object a line', { file });
    const kind = inferKind(lines[0].value, file, lines[0].line);
    const name = basename(file, extname(file)).replace(/[^A-Za-z0-9_.\-]/g, '_').replace(/^[^A-Za-z0-9]+/, '').slice(0, 100) || 'benchmark';
    header = BenchmarkHeaderSchema.parse({ name, kind });
    headerSource = 'inferred';
  }
  if (itemLines.length === 0) throw new BlocklabError('has a header but no items; add one JSON object a line', { file });

  const kind = header.kind;
  const { items, lines: lineNumbers } = validateItems(kind, itemLines, file);
  const role: BenchmarkRole = header.role ?? (header.domain === 'general' ? 'old' : 'new');
  const contentHash = sidecarBytes ? sha256(bytes, sidecarBytes) : sha256(bytes);
  return { kind, file, items, lines: lineNumbers, header: { ...header, role }, headerSource, contentHash } as Benchmark;
}

/**
 * The few-shot pool of a benchmark: its fewshot_split file (same kind; a header there is
 * allowed and must agree), or null when examples come from the benchmark's own items.
 */
export async function loadFewshotSplit<K extends BenchmarkKind>(bench: ItemList<K> & { header: ResolvedHeader }): Promise<ItemList<K> | null> {
  const split = bench.header.fewshot_split;
  if (split === undefined) return null;
  const file = isAbsolute(split) ? split : resolve(dirname(bench.file), split);
  const bytes = await readBounded(file, 'few-shot split');
  const lines = parseJsonLines(decodeUtf8(bytes, file), file);
  let itemLines = lines;
  if (lines.length > 0 && isHeaderLine(lines[0].value)) {
    const h = parseHeader(lines[0].value, `${file}:${lines[0].line}`);
    if (h.kind !== bench.kind) {
      throw new BlocklabError(`is a ${h.kind} file but ${bench.file} is ${bench.kind}; a few-shot split must hold the same kind of item`, { file });
    }
    itemLines = lines.slice(1);
  }
  if (itemLines.length === 0) throw new BlocklabError('has no items to draw few-shot examples from', { file });
  const { items, lines: lineNumbers } = validateItems(bench.kind, itemLines, file);
  return { kind: bench.kind, file, items, lines: lineNumbers, contentHash: sha256(bytes) };
}

// ---------------------------------------------------------------------------------------------
// The model, behind two interfaces

/** One log-likelihood request: score `continuation` after `context` (token ids). */
export interface LoglikelihoodRequest {
  context: number[];
  continuation: number[];
}

export interface LoglikelihoodResult {
  /** Σ log p(continuation token | everything before it), natural log */
  ll: number;
  /** every continuation token was the argmax of its distribution */
  greedy: boolean;
}

export interface ScoreProgress {
  done: number;
  total: number;
  /** tokens run through the model so far, and in all (for the ETA) */
  work: number;
  workTotal: number;
}

export interface TokenScorer {
  /** the longest input the model sees; longer requests are cut from the left */
  readonly maxLength: number;
  loglikelihood(requests: LoglikelihoodRequest[], onProgress?: (p: ScoreProgress) => void): Promise<LoglikelihoodResult[]>;
}

/** What the harness needs from a tokenizer. */
export interface EvalTokenizer {
  /** ids of `text` without special tokens */
  encode(text: string): number[];
  /** ids the tokenizer puts before every text by default (its BOS), or [] */
  readonly prefixIds: readonly number[];
  /** the context of an empty context and of the first perplexity window: BOS, else EOS */
  readonly prefixTokenId: number;
}

export interface GenerateRequest {
  context: number[];
  until: string[];
  maxTokens: number;
}

/** Greedy generation: the text after `context`, stopped at EOS, a stop string (cut off) or maxTokens. */
export type TextGenerator = (request: GenerateRequest) => Promise<string>;

/** The model input of a request and where the continuation sits in it: (ctx + cont)[-(L+1):][:-1]. */
export function requestInput(r: LoglikelihoodRequest, maxLength: number): { input: number[]; targets: number[] } {
  if (r.continuation.length === 0) throw new BlocklabError('a continuation tokenized to nothing; every choice or text must produce at least one token');
  if (r.context.length === 0) throw new BlocklabError('a request has no context token; the tokenizer needs a BOS or EOS token');
  if (r.continuation.length > maxLength) {
    throw new BlocklabError(`a continuation of ${r.continuation.length} tokens is longer than the model's context (${maxLength}); shorten the choice or raise --max-length`);
  }
  const whole = [...r.context, ...r.continuation];
  const input = whole.slice(Math.max(0, whole.length - (maxLength + 1)), whole.length - 1);
  return { input, targets: r.continuation };
}

/**
 * A scorer from a function giving the log-probabilities of the next token after a prefix (the
 * prefix as the model would see it, truncated to maxLength): for tests, and as the slow
 * reference the batched tfjs scorer is checked against.
 */
export function functionScorer(logprobs: (prefix: readonly number[]) => ArrayLike<number>, maxLength: number): TokenScorer {
  return {
    maxLength,
    async loglikelihood(requests, onProgress) {
      const out: LoglikelihoodResult[] = [];
      let work = 0;
      const workTotal = requests.reduce((s, r) => s + requestInput(r, maxLength).input.length, 0);
      for (const r of requests) {
        const { input, targets } = requestInput(r, maxLength);
        const start = input.length - targets.length; // position whose prediction is targets[0], + 1
        let ll = 0;
        let greedy = true;
        for (let j = 0; j < targets.length; j++) {
          const lp = logprobs(input.slice(0, start + j + 1));
          ll += lp[targets[j]];
          if (argmaxFirst(lp) !== targets[j]) greedy = false;
        }
        out.push({ ll, greedy });
        work += input.length;
        onProgress?.({ done: out.length, total: requests.length, work, workTotal });
      }
      return out;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Harness building blocks

/** numpy.argmax: the first index of the maximum. */
export function argmaxFirst(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** Python len(): code points, not UTF-16 units. */
export function charLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** Harness count_words: len(re.split(r"\s+", text)) — empty strings at the ends count. */
export function countWords(text: string): number {
  return text.split(/\s+/).length;
}

/** Harness count_bytes: UTF-8 bytes. */
export function countBytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/** Harness _encode_pair with the tokenizer's BOS (see the file comment). */
export function encodePair(tok: EvalTokenizer, context: string, continuation: string): LoglikelihoodRequest {
  if (context === '') return { context: [tok.prefixTokenId], continuation: tok.encode(continuation) };
  const trimmed = context.replace(/\s+$/u, '');
  const moved = context.slice(trimmed.length);
  const ctxText = trimmed;
  const contText = moved + continuation;
  const whole = [...tok.prefixIds, ...tok.encode(ctxText + contText)];
  let ctx = [...tok.prefixIds, ...(ctxText === '' ? [] : tok.encode(ctxText))];
  const cont = whole.slice(ctx.length);
  if (ctx.length === 0) ctx = [tok.prefixTokenId];
  return { context: ctx, continuation: cont };
}

/**
 * Harness get_rolling_token_windows(context_len=1) + make_disjoint_window: requests that
 * predict every token of `tokens` exactly once, each model input at most maxLength long.
 */
export function rollingWindows(tokens: readonly number[], prefixToken: number, maxLength: number): LoglikelihoodRequest[] {
  if (!Number.isInteger(maxLength) || maxLength < 1) throw new BlocklabError(`max length must be a whole number ≥ 1 (got ${maxLength})`);
  const out: LoglikelihoodRequest[] = [];
  if (tokens.length === 0) return out;
  const first = Math.min(maxLength, tokens.length);
  out.push({ context: [prefixToken], continuation: tokens.slice(0, first) });
  let predicted = first;
  while (predicted < tokens.length) {
    const windowPred = Math.min(tokens.length - predicted, maxLength);
    const end = predicted + windowPred;
    const input = tokens.slice(end - maxLength - 1, end - 1); // maxLength tokens
    const targets = tokens.slice(end - windowPred, end);
    out.push({ context: input.slice(0, input.length - (targets.length - 1)), continuation: targets });
    predicted += windowPred;
  }
  return out;
}

/** Harness mean_stderr: sqrt(sample variance / n); null below two values. */
export function meanStderr(values: readonly number[]): number | null {
  const n = values.length;
  if (n < 2) return null;
  const mu = values.reduce((a, b) => a + b, 0) / n;
  const variance = values.reduce((a, b) => a + (b - mu) ** 2, 0) / (n - 1);
  return Math.sqrt(variance / n);
}

function mean(values: readonly number[]): number | null {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
}

/**
 * Few-shot example indices for item `itemIndex`: `k` distinct indices of a pool of `poolSize`,
 * drawn by a PRNG seeded with (seed, itemIndex), never `exclude` (the item itself when the pool
 * is the benchmark's own items).
 */
export function fewshotIndices(poolSize: number, k: number, seed: number, itemIndex: number, exclude: (i: number) => boolean = () => false): number[] {
  if (k === 0) return [];
  const candidates: number[] = [];
  for (let i = 0; i < poolSize; i++) if (!exclude(i)) candidates.push(i);
  if (candidates.length < k) {
    throw new BlocklabError(`--shots ${k} needs ${k} few-shot examples but only ${candidates.length} are available; lower --shots or add a fewshot_split`);
  }
  const random = seededRandom((Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul(itemIndex + 1, 0x85ebca6b)) >>> 0);
  // partial Fisher–Yates: the first k of a random permutation
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(random() * (candidates.length - i));
    [candidates[i], candidates[j]] = [candidates[j], candidates[i]];
  }
  return candidates.slice(0, k);
}

/**
 * Compiles an extraction regex (JavaScript syntax, global). Python's named groups (?P<name>…)
 * are the one common difference, so they are explained.
 */
export function compileRegex(source: string, where: string): RegExp {
  if (source.length > BENCHMARK_LIMITS.maxRegexChars) {
    throw new BlocklabError(`${where} is ${source.length} characters; at most ${BENCHMARK_LIMITS.maxRegexChars} are allowed`);
  }
  try {
    return new RegExp(source, 'g');
  } catch (e) {
    const hint = /\(\?P</.test(source) ? "; Python's (?P<name>…) is written (?<name>…) in JavaScript" : '';
    throw new BlocklabError(`${where} is not a valid JavaScript regular expression (${(e as Error).message})${hint}`);
  }
}

export const INVALID_ANSWER = '[invalid]';
const REGEX_TIMEOUT_MS = 1000;

/**
 * Harness RegexFilter (group_select 0) + strip: the first match; with capture groups, its
 * first non-empty group; "[invalid]" without a match. Runs in a vm with a time limit, so a
 * regex that backtracks catastrophically on some output fails instead of hanging.
 */
export function extractAnswer(output: string, regex: string | undefined): string {
  if (regex === undefined) return output.trim();
  const re = compileRegex(regex, 'the extraction regex');
  let matches: string[][];
  try {
    matches = vm.runInNewContext('Array.from(text.matchAll(re), (m) => Array.from(m, (g) => (g === undefined ? "" : g)))', { text: output, re }, {
      timeout: REGEX_TIMEOUT_MS,
    }) as string[][];
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') {
      throw new BlocklabError(`the extraction regex ${JSON.stringify(regex)} ran for over ${REGEX_TIMEOUT_MS} ms on one output (catastrophic backtracking); simplify it`);
    }
    throw e;
  }
  if (matches.length === 0) return INVALID_ANSWER;
  const m = matches[0];
  if (m.length === 1) return String(m[0]).trim();
  const group = m.slice(1).find((g) => g !== '');
  return group === undefined ? INVALID_ANSWER : String(group).trim();
}

// ---------------------------------------------------------------------------------------------
// Evaluating one benchmark

export interface MetricValue {
  metric: string;
  value: number | null;
  stderr: number | null;
}

export interface EvalProgress {
  benchmark: string;
  done: number;
  total: number;
  unit: 'requests' | 'items';
  elapsedSeconds: number;
  /** null until there is something to extrapolate from */
  etaSeconds: number | null;
}

export interface EvaluateOptions {
  scorer: TokenScorer;
  tokenizer: EvalTokenizer;
  /** needed for generation benchmarks */
  generator?: TextGenerator;
  shots?: number;
  /** the first N items */
  limit?: number | null;
  /** few-shot seed (the harness's is 1234) */
  seed?: number;
  /** the few-shot pool from loadFewshotSplit; null/undefined: the benchmark's own items */
  fewshot?: ItemList | null;
  onProgress?: (p: EvalProgress) => void;
}

export type ItemDetail =
  | { kind: 'multiple_choice'; line: number; context: string; lls: number[]; greedy: boolean[]; pred: number; predNorm: number; gold: number }
  | { kind: 'perplexity'; line: number; ll: number; tokens: number; words: number; bytes: number; windows: number }
  | { kind: 'generation'; line: number; context: string; until: string[]; maxTokens: number; output: string; extracted: string; answer: string; correct: boolean };

export interface BenchmarkScores {
  /** every metric of KIND_METRICS[kind], in that order */
  metrics: MetricValue[];
  n: number;
  details: ItemDetail[];
}

export const DEFAULT_FEWSHOT_SEED = 1234;

function contextOf(kind: BenchmarkKind, item: MultipleChoiceItem | GenerationItem): string {
  return kind === 'multiple_choice' ? ((item as MultipleChoiceItem).context ?? (item as MultipleChoiceItem).query ?? '') : (item as GenerationItem).prompt;
}

function targetOf(kind: BenchmarkKind, item: MultipleChoiceItem | GenerationItem): string {
  return kind === 'multiple_choice' ? (item as MultipleChoiceItem).choices[(item as MultipleChoiceItem).gold] : (item as GenerationItem).answer;
}

/** The few-shot prefix + the item's own text, as the harness builds it. */
export function buildContext(bench: Benchmark, itemIndex: number, opts: { shots: number; seed: number; fewshot?: ItemList | null }): string {
  const kind = bench.kind;
  if (kind === 'perplexity') return '';
  const item = bench.items[itemIndex] as MultipleChoiceItem | GenerationItem;
  const own = contextOf(kind, item);
  if (opts.shots === 0) return own;
  const pool = (opts.fewshot?.items ?? bench.items) as (MultipleChoiceItem | GenerationItem)[];
  const samePool = !opts.fewshot;
  const itemJson = samePool ? '' : JSON.stringify(item);
  const picks = fewshotIndices(pool.length, opts.shots, opts.seed, itemIndex, (i) => (samePool ? i === itemIndex : JSON.stringify(pool[i]) === itemJson));
  const h = bench.header;
  let text = '';
  for (const i of picks) text += contextOf(kind, pool[i]) + h.target_delimiter + targetOf(kind, pool[i]) + h.fewshot_delimiter;
  return text + own;
}

function progressReporter(name: string, unit: 'requests' | 'items', cb?: (p: EvalProgress) => void) {
  const t0 = performance.now();
  return (p: ScoreProgress) => {
    if (!cb) return;
    const elapsed = (performance.now() - t0) / 1000;
    const eta = p.work > 0 && p.workTotal > 0 ? (elapsed * (p.workTotal - p.work)) / p.work : null;
    cb({ benchmark: name, done: p.done, total: p.total, unit, elapsedSeconds: elapsed, etaSeconds: eta });
  };
}

/** Scores one benchmark with lm-evaluation-harness semantics (see the file comment). */
export async function evaluateBenchmark(bench: Benchmark, opts: EvaluateOptions): Promise<BenchmarkScores> {
  const shots = bench.kind === 'perplexity' ? 0 : (opts.shots ?? 0);
  const seed = opts.seed ?? DEFAULT_FEWSHOT_SEED;
  const count = opts.limit ? Math.min(opts.limit, bench.items.length) : bench.items.length;
  const tok = opts.tokenizer;
  const name = bench.header.name;
  const where = (i: number) => `${bench.file}:${bench.lines[i]}`;

  if (bench.kind === 'multiple_choice') {
    const requests: LoglikelihoodRequest[] = [];
    const owner: number[] = [];
    const contexts: string[] = [];
    for (let i = 0; i < count; i++) {
      const item = bench.items[i];
      const context = buildContext(bench, i, { shots, seed, fewshot: opts.fewshot });
      contexts.push(context);
      for (const choice of item.choices) {
        const r = encodePair(tok, context, bench.header.target_delimiter + choice);
        if (r.continuation.length === 0) throw new BlocklabError(`a choice tokenizes to nothing; give every choice some text`, { file: where(i) });
        requests.push(r);
        owner.push(i);
      }
    }
    const results = await scoreWithPlace(opts.scorer, requests, owner, where, progressReporter(name, 'requests', opts.onProgress));
    const details: ItemDetail[] = [];
    const acc: number[] = [];
    const accNorm: number[] = [];
    let k = 0;
    for (let i = 0; i < count; i++) {
      const item = bench.items[i];
      const greedy = item.choices.map((_, j) => results[k + j].greedy);
      const lls = item.choices.map(() => results[k++].ll);
      const pred = argmaxFirst(lls);
      const predNorm = argmaxFirst(lls.map((ll, j) => ll / charLength(item.choices[j])));
      acc.push(pred === item.gold ? 1 : 0);
      accNorm.push(predNorm === item.gold ? 1 : 0);
      details.push({ kind: 'multiple_choice', line: bench.lines[i], context: contexts[i], lls, greedy, pred, predNorm, gold: item.gold });
    }
    return {
      metrics: [
        { metric: 'acc', value: mean(acc), stderr: meanStderr(acc) },
        { metric: 'acc_norm', value: mean(accNorm), stderr: meanStderr(accNorm) },
      ],
      n: count,
      details,
    };
  }

  if (bench.kind === 'perplexity') {
    const requests: LoglikelihoodRequest[] = [];
    const owner: number[] = [];
    const tokenCounts: number[] = [];
    for (let i = 0; i < count; i++) {
      const tokens = tok.encode(bench.items[i].text);
      tokenCounts.push(tokens.length);
      for (const w of rollingWindows(tokens, tok.prefixTokenId, opts.scorer.maxLength)) {
        requests.push(w);
        owner.push(i);
      }
    }
    const results = await scoreWithPlace(opts.scorer, requests, owner, where, progressReporter(name, 'requests', opts.onProgress));
    const lls = new Array<number>(count).fill(0);
    const windows = new Array<number>(count).fill(0);
    results.forEach((r, j) => {
      lls[owner[j]] += r.ll;
      windows[owner[j]]++;
    });
    let sumLl = 0;
    let sumTokens = 0;
    let sumWords = 0;
    let sumBytes = 0;
    const details: ItemDetail[] = [];
    for (let i = 0; i < count; i++) {
      const text = bench.items[i].text;
      const words = countWords(text);
      const bytes = countBytes(text);
      sumLl += lls[i];
      sumTokens += tokenCounts[i];
      sumWords += words;
      sumBytes += bytes;
      details.push({ kind: 'perplexity', line: bench.lines[i], ll: lls[i], tokens: tokenCounts[i], words, bytes, windows: windows[i] });
    }
    return { metrics: perplexityMetrics(sumLl, sumTokens, sumWords, sumBytes, { lls, bytes: details.map((d) => (d as { bytes: number }).bytes) }), n: count, details };
  }

  // generation
  const generator = opts.generator;
  if (!generator) throw new BlocklabError('generation benchmarks need a text generator');
  const h = bench.header;
  const details: ItemDetail[] = [];
  const correct: number[] = [];
  const report = progressReporter(name, 'items', opts.onProgress);
  const maxLength = opts.scorer.maxLength;
  const maxGen = Math.min(h.max_gen_tokens, Math.max(1, maxLength - 1));
  for (let i = 0; i < count; i++) {
    const item = bench.items[i];
    const text = buildContext(bench, i, { shots, seed, fewshot: opts.fewshot });
    let context = [...tok.prefixIds, ...tok.encode(text)];
    if (context.length === 0) context = [tok.prefixTokenId];
    context = context.slice(-Math.max(1, maxLength - maxGen)); // harness: left-truncate to max_length − max_gen_toks
    const until = item.until ?? h.until ?? [h.fewshot_delimiter];
    let output: string;
    try {
      output = await generator({ context, until, maxTokens: maxGen });
    } catch (e) {
      if (e instanceof BlocklabError && !e.file) throw new BlocklabError(e.message, { file: where(i), cause: e });
      throw e;
    }
    for (const stop of until) {
      const at = output.indexOf(stop);
      if (at >= 0) output = output.slice(0, at);
    }
    let extracted: string;
    try {
      extracted = extractAnswer(output, item.regex ?? h.regex);
    } catch (e) {
      if (e instanceof BlocklabError) throw new BlocklabError(e.message, { file: where(i), cause: e });
      throw e;
    }
    const ok = extracted === item.answer.trim();
    correct.push(ok ? 1 : 0);
    details.push({ kind: 'generation', line: bench.lines[i], context: text, until, maxTokens: maxGen, output, extracted, answer: item.answer, correct: ok });
    report({ done: i + 1, total: count, work: i + 1, workTotal: count });
  }
  return { metrics: [{ metric: 'exact_match', value: mean(correct), stderr: meanStderr(correct) }], n: count, details };
}

/**
 * The standard error of bits per byte over documents: bits_per_byte = −Σll / Σbytes / ln 2 is a
 * ratio of sums, so its standard error is the ratio estimator's (delta method),
 *   sqrt(n/(n−1) · Σ (ll_i − R·bytes_i)²) / Σbytes / ln 2,   R = Σll / Σbytes,
 * which for documents of equal length is the usual standard error of the per-document mean.
 * (The harness reports N/A here; forgetting summaries need a number.) Null below two documents.
 */
export function bitsPerByteStderr(lls: readonly number[], bytes: readonly number[]): number | null {
  const n = lls.length;
  if (n < 2 || bytes.length !== n) return null;
  const sumLl = lls.reduce((a, b) => a + b, 0);
  const sumBytes = bytes.reduce((a, b) => a + b, 0);
  if (!(sumBytes > 0)) return null;
  const r = sumLl / sumBytes;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (lls[i] - r * bytes[i]) ** 2;
  const se = Math.sqrt((n / (n - 1)) * ss) / sumBytes / Math.LN2;
  return Number.isFinite(se) ? se : null;
}

/**
 * Harness weighted_perplexity / bits_per_byte over (Σ loglikelihood, Σ units). Standard errors
 * are null (the harness's N/A), except bits per byte's when the per-document values are given.
 */
export function perplexityMetrics(sumLl: number, tokens: number, words: number, bytes: number, docs?: { lls: readonly number[]; bytes: readonly number[] }): MetricValue[] {
  const safe = (v: number) => (Number.isFinite(v) ? v : null);
  return [
    { metric: 'word_perplexity', value: words > 0 ? safe(Math.exp(-sumLl / words)) : null, stderr: null },
    { metric: 'byte_perplexity', value: bytes > 0 ? safe(Math.exp(-sumLl / bytes)) : null, stderr: null },
    { metric: 'bits_per_byte', value: bytes > 0 ? safe(-sumLl / bytes / Math.LN2) : null, stderr: docs ? bitsPerByteStderr(docs.lls, docs.bytes) : null },
    { metric: 'token_perplexity', value: tokens > 0 ? safe(Math.exp(-sumLl / tokens)) : null, stderr: null },
  ];
}

/** Scores requests; an error about one request names the item's file and line. */
async function scoreWithPlace(
  scorer: TokenScorer,
  requests: LoglikelihoodRequest[],
  owner: number[],
  where: (i: number) => string,
  onProgress: (p: ScoreProgress) => void,
): Promise<LoglikelihoodResult[]> {
  for (let j = 0; j < requests.length; j++) {
    try {
      requestInput(requests[j], scorer.maxLength);
    } catch (e) {
      if (e instanceof BlocklabError) throw new BlocklabError(e.message, { file: where(owner[j]), cause: e });
      throw e;
    }
  }
  const results = await scorer.loglikelihood(requests, onProgress);
  if (results.length !== requests.length) throw new Error(`scorer returned ${results.length} results for ${requests.length} requests`);
  return results;
}

/** The metric names a benchmark of this kind stores. */
export function metricsOf(kind: BenchmarkKind): readonly string[] {
  return KIND_METRICS[kind];
}
