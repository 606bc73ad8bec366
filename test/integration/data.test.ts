/**
 * Loading a corpus from real files with the real byte-level tokenizer of a tiny checkpoint
 * (src/main/engine/data.ts): a .txt, a .jsonl and a folder of Python code with include /
 * exclude globs; the token cache (hits, misses, corrupt entries); and every error, each of
 * which must name the file and say what is wrong.
 *
 * The tiny tokenizer has no merges, so a document's tokens are exactly its UTF-8 bytes: the
 * expected stream is computed from the bytes, independently of the tokenizer library.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, truncate, writeFile, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadCorpus, shuffledIndices, type CorpusOptions, type CorpusSpec, type PackedCorpus } from '../../src/main/engine/data.js';
import { BlocklabError } from '../../src/main/engine/errors.js';
import { makeTinyCheckpoint } from '../../src/main/engine/tiny.js';
import { HfTokenizer } from '../../src/main/engine/tokenizer.js';
import { testDir } from '../helpers/tmp.js';
import { englishText, pythonModule } from '../helpers/corpus.js';


let root: string;
let tok: HfTokenizer;
let fingerprint: string;
let eosId: number;
let bosId: number;
let txt: string;
let jsonl: string;
let repo: string;
const jsonlTexts = ['The first document.', 'Ein zweites Dokument — mit Umlauten: äöü.', '日本語のテキスト', 'def f(x):\n    return x + 1\n'];

const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

beforeAll(async () => {
  root = await testDir('data');
  const ckpt = join(root, 'tiny');
  await makeTinyCheckpoint(ckpt, { layers: 1, hidden: 16, heads: 2, kvHeads: 1, intermediate: 32 });
  tok = await HfTokenizer.fromFolder(ckpt);
  fingerprint = sha((await readFile(join(ckpt, 'tokenizer.json'))).toString() + (await readFile(join(ckpt, 'tokenizer_config.json'))).toString());
  eosId = tok.eosTokenIds[0];
  bosId = tok.bosTokenId!;

  txt = join(root, 'license.txt');
  await writeFile(txt, englishText(12_000));
  jsonl = join(root, 'docs.jsonl');
  await writeFile(jsonl, `${jsonlTexts.map((text, i) => JSON.stringify({ id: i, text })).join('\n')}\n\n`);

  repo = join(root, 'repo');
  await mkdir(join(repo, 'pkg'), { recursive: true });
  await mkdir(join(repo, 'tests'), { recursive: true });
  await mkdir(join(repo, '.git', 'hooks'), { recursive: true });
  await mkdir(join(repo, 'node_modules', 'm'), { recursive: true });
  await writeFile(join(repo, 'pkg', 'bisect.py'), pythonModule('bisect.py'));
  await writeFile(join(repo, 'pkg', 'textwrap.py'), pythonModule('textwrap.py'));
  await writeFile(join(repo, 'tests', 'test_bisect.py'), pythonModule('bisect.py')); // excluded
  await writeFile(join(repo, 'test_top.py'), pythonModule('bisect.py')); // excluded
  await writeFile(join(repo, '.git', 'hooks', 'hook.py'), pythonModule('bisect.py')); // always skipped
  await writeFile(join(repo, 'node_modules', 'm', 'index.py'), pythonModule('bisect.py')); // always skipped
  await writeFile(join(repo, 'README.md'), '# not a .py file\n'); // not included
  await writeFile(join(repo, 'pkg', 'blob.py'), Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x00, 0x00, 0x41])); // binary: skipped
  await writeFile(join(repo, 'pkg', 'latin1.py'), Buffer.from('# caf\xe9\n', 'latin1')); // not UTF-8: skipped
  await writeFile(join(repo, 'pkg', '__init__.py'), ''); // empty: no document
});

const spec = (): CorpusSpec => ({ paths: [txt, jsonl, repo], include: ['**/*.py'], exclude: ['**/test_*'] });
const options = (cacheDir: string, over: Partial<CorpusOptions> = {}): CorpusOptions => ({
  seqLen: 64,
  seed: 17,
  cacheDir,
  tokenizerFingerprint: fingerprint,
  eosId,
  bosId,
  ...over,
});

/** The stream expected from the files' bytes: [bos] doc eos per document. */
async function expectedStream(): Promise<number[]> {
  const docs: Buffer[] = [await readFile(txt), ...jsonlTexts.map((t) => Buffer.from(t)), await readFile(join(repo, 'pkg', 'bisect.py')), await readFile(join(repo, 'pkg', 'textwrap.py'))];
  return docs.flatMap((d) => [bosId, ...d, eosId]);
}

/** The sequences back in stream order (undoing the seeded shuffle). */
function unshuffle(c: PackedCorpus, seed: number): number[] {
  const n = c.numTrain + c.numVal;
  const order = shuffledIndices(n, seed);
  const out = new Array<number>(n * c.seqLen);
  for (let k = 0; k < n; k++) {
    const row = k < c.numVal ? c.val.subarray(k * c.seqLen, (k + 1) * c.seqLen) : c.train.subarray((k - c.numVal) * c.seqLen, (k - c.numVal + 1) * c.seqLen);
    for (let t = 0; t < c.seqLen; t++) out[order[k] * c.seqLen + t] = row[t];
  }
  return out;
}

/** Element-wise equality of long token arrays (vitest's deep equality is slow on them). */
function expectSame(actual: ArrayLike<number>, expected: ArrayLike<number>): void {
  expect(actual.length).toBe(expected.length);
  let firstDiff = -1;
  for (let i = 0; i < actual.length && firstDiff < 0; i++) if (actual[i] !== expected[i]) firstDiff = i;
  expect(firstDiff, `first difference at index ${firstDiff}`).toBe(-1);
}

async function errorOf(p: Promise<unknown>): Promise<BlocklabError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(BlocklabError);
    expect((e as Error).message).not.toContain('\n');
    return e as BlocklabError;
  }
  throw new Error('expected an error');
}

describe('loadCorpus', () => {
  let cacheDir: string;
  let first: PackedCorpus;

  beforeAll(async () => {
    cacheDir = join(root, 'cache');
  });

  it('reads a .txt, a .jsonl and a folder with globs, packs [bos] doc eos and splits', async () => {
    const progress: { file: string; done: number; total: number }[] = [];
    first = await loadCorpus(spec(), tok, options(cacheDir, { onProgress: (p) => progress.push(p) }));

    expect(first.files.map((f) => f.path)).toEqual([txt, jsonl, join(repo, 'pkg', '__init__.py'), join(repo, 'pkg', 'bisect.py'), join(repo, 'pkg', 'textwrap.py')]);
    expect(first.files.map((f) => f.documents)).toEqual([1, 4, 0, 1, 1]);
    expect(first.files.every((f) => !f.cached)).toBe(true);
    expect(first.files[0].tokens).toBe((await readFile(txt)).byteLength); // no merges: one token per byte
    expect(first.files[0].sha256).toBe(sha(await readFile(txt)));
    expect(first.documents).toBe(7);

    const skipped = new Map(first.skipped.map((s) => [s.path, s.reason]));
    expect(skipped.get(join(repo, '.git'))).toMatch(/version-control/);
    expect(skipped.get(join(repo, 'node_modules'))).toMatch(/node_modules/);
    expect(skipped.get(join(repo, 'pkg', 'blob.py'))).toMatch(/binary/);
    expect(skipped.get(join(repo, 'pkg', 'latin1.py'))).toMatch(/not UTF-8.*byte offset 5/);
    expect(first.skipped).toHaveLength(4);

    const stream = await expectedStream();
    expect(first.tokens).toBe(stream.length);
    const n = Math.floor(stream.length / 64);
    expect(first.numVal).toBe(Math.max(1, Math.round(0.05 * n)));
    expect(first.numTrain).toBe(n - first.numVal);
    expect(first.train.length).toBe(first.numTrain * 64);
    expect(first.val.length).toBe(first.numVal * 64);
    expectSame(unshuffle(first, 17), stream.slice(0, n * 64));
    // the text comes back out of the tokenizer
    expect(tok.decode([...first.train.subarray(0, 64)], { skipSpecialTokens: true }).length).toBeGreaterThan(10);

    expect(progress.length).toBeGreaterThan(0);
    expect(progress.at(-1)!.done).toBe(progress.at(-1)!.total);
    expect(first.fingerprint).toMatch(/^[0-9a-f]{64}$/);
  });

  it('reads the token cache the second time, with identical output', async () => {
    const files = await readdir(join(cacheDir, 'tokens'));
    expect(files.filter((f) => f.endsWith('.bin'))).toHaveLength(5);
    expect(files.filter((f) => f.endsWith('.json'))).toHaveLength(5);
    expect(files.filter((f) => f.includes('.tmp'))).toHaveLength(0);

    const again = await loadCorpus(spec(), tok, options(cacheDir));
    expect(again.files.every((f) => f.cached)).toBe(true);
    expectSame(again.train, first.train);
    expectSame(again.val, first.val);
    expect(again.fingerprint).toBe(first.fingerprint);
    expect(again.tokens).toBe(first.tokens);
  });

  it('another seed or --seq changes the split and the fingerprint, not the tokens', async () => {
    const other = await loadCorpus(spec(), tok, options(cacheDir, { seed: 18 }));
    expect(other.files.every((f) => f.cached)).toBe(true);
    expect(other.fingerprint).not.toBe(first.fingerprint);
    expect(Buffer.from(other.train.buffer).equals(Buffer.from(first.train.buffer))).toBe(false);
    expectSame(unshuffle(other, 18), unshuffle(first, 17));
    const shorter = await loadCorpus(spec(), tok, options(cacheDir, { seqLen: 32, valFraction: 0 }));
    expect(shorter.numVal).toBe(0);
    expect(shorter.numTrain).toBe(Math.floor(first.tokens / 32));
    expect(shorter.fingerprint).not.toBe(first.fingerprint);
  });

  it('a modified file misses the cache; the others still hit', async () => {
    const dir = join(root, 'modified');
    await mkdir(dir);
    const a = join(dir, 'a.txt');
    const b = join(dir, 'b.txt');
    await writeFile(a, 'alpha '.repeat(100));
    await writeFile(b, 'beta '.repeat(100));
    const c1 = await loadCorpus({ paths: [dir] }, tok, options(cacheDir, { seqLen: 16 }));
    await appendFile(a, 'gamma\n');
    const c2 = await loadCorpus({ paths: [dir] }, tok, options(cacheDir, { seqLen: 16 }));
    expect(c2.files.map((f) => [f.path, f.cached])).toEqual([
      [a, false],
      [b, true],
    ]);
    expect(c2.files[0].tokens).toBe(c1.files[0].tokens + 6);
    expect(c2.fingerprint).not.toBe(c1.fingerprint);
  });

  it('another tokenizer misses the cache', async () => {
    const c = await loadCorpus({ paths: [txt] }, tok, options(cacheDir, { tokenizerFingerprint: `${fingerprint}-other` }));
    expect(c.files[0].cached).toBe(false);
  });

  it('a corrupt cache entry is ignored and rebuilt', async () => {
    const dir = join(root, 'corrupt-cache');
    const c1 = await loadCorpus({ paths: [txt, jsonl] }, tok, options(dir));
    const tokens = join(dir, 'tokens');
    const bins = (await readdir(tokens)).filter((f) => f.endsWith('.bin'));
    expect(bins).toHaveLength(2);
    await truncate(join(tokens, bins[0]), 10); // wrong length
    const binB = join(tokens, bins[1]);
    const bytes = await readFile(binB);
    bytes[0] ^= 0xff; // right length, wrong content
    await writeFile(binB, bytes);
    const c2 = await loadCorpus({ paths: [txt, jsonl] }, tok, options(dir));
    expect(c2.files.map((f) => f.cached)).toEqual([false, false]);
    expectSame(c2.train, c1.train);
    expectSame(c2.val, c1.val);
    const c3 = await loadCorpus({ paths: [txt, jsonl] }, tok, options(dir));
    expect(c3.files.map((f) => f.cached)).toEqual([true, true]);
    // a broken sidecar is a miss too
    const metas = (await readdir(tokens)).filter((f) => f.endsWith('.json'));
    await writeFile(join(tokens, metas[0]), '{not json');
    const c4 = await loadCorpus({ paths: [txt, jsonl] }, tok, options(dir));
    expect(c4.files.filter((f) => !f.cached)).toHaveLength(1);
    expectSame(c4.train, c1.train);
  });

  it('skips the cache folder when it lies inside a corpus folder', async () => {
    const dir = join(root, 'with-cache');
    await mkdir(dir);
    await writeFile(join(dir, 'a.md'), '# Notes\n\nSome text for the corpus, long enough for a few sequences of sixteen tokens.\n');
    const inner = join(dir, '.cache');
    await loadCorpus({ paths: [dir] }, tok, options(inner, { seqLen: 16 }));
    const c = await loadCorpus({ paths: [dir] }, tok, options(inner, { seqLen: 16 }));
    expect(c.files.map((f) => [f.path, f.cached])).toEqual([[join(dir, 'a.md'), true]]);
    expect(c.skipped).toEqual([{ path: inner, reason: 'the token cache folder (always skipped)' }]);
  });

  it('without a BOS id, documents are separated by EOS only', async () => {
    const c = await loadCorpus({ paths: [jsonl] }, tok, options(join(root, 'cache-nobos'), { bosId: null, seqLen: 8, valFraction: 0 }));
    const stream = jsonlTexts.flatMap((t) => [...Buffer.from(t), eosId]);
    expect(c.tokens).toBe(stream.length);
    expectSame(unshuffle(c, 17), stream.slice(0, Math.floor(stream.length / 8) * 8));
  });
});

describe('corpus errors name the file and say what is wrong', () => {
  let dir: string;
  let cacheDir: string;
  beforeAll(async () => {
    dir = join(root, 'bad');
    cacheDir = join(root, 'cache-bad');
    await mkdir(dir);
  });

  it('a path that does not exist', async () => {
    const p = join(dir, 'missing.txt');
    const e = await errorOf(loadCorpus({ paths: [txt, p] }, tok, options(cacheDir)));
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/does not exist/);
  });

  it('an empty corpus: blank files, or globs that match nothing', async () => {
    const blank = join(dir, 'blank.txt');
    await writeFile(blank, '  \n\n');
    const e1 = await errorOf(loadCorpus({ paths: [blank] }, tok, options(cacheDir)));
    expect(e1.message).toContain(blank);
    expect(e1.message).toMatch(/the corpus is empty/);
    const e2 = await errorOf(loadCorpus({ paths: [repo], include: ['**/*.rs'] }, tok, options(cacheDir)));
    expect(e2.message).toContain(repo);
    expect(e2.message).toMatch(/the corpus is empty \(no file matched the include globs \[\*\*\/\*\.rs\]/);
    const emptyJsonl = join(dir, 'empty.jsonl');
    await writeFile(emptyJsonl, '{"text": ""}\n\n');
    expect((await errorOf(loadCorpus({ paths: [emptyJsonl] }, tok, options(cacheDir)))).message).toMatch(/the corpus is empty/);
  });

  it('a binary file given explicitly', async () => {
    const p = join(dir, 'model.bin');
    await writeFile(p, Buffer.concat([Buffer.from('GGUF'), Buffer.alloc(100)]));
    const e = await errorOf(loadCorpus({ paths: [p] }, tok, options(cacheDir)));
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/looks binary \(a NUL byte at offset 4\)/);
  });

  it('invalid UTF-8, with the offset of the first bad byte', async () => {
    const p = join(dir, 'latin1.txt');
    await writeFile(p, Buffer.concat([Buffer.from('hello\nwor'), Buffer.from([0xff]), Buffer.from('ld\n')]));
    const e = await errorOf(loadCorpus({ paths: [p] }, tok, options(cacheDir)));
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/not valid UTF-8 text \(first bad byte 0xff at byte offset 9, line 2\)/);
  });

  it('a file over the size limit', async () => {
    const e = await errorOf(loadCorpus({ paths: [txt] }, tok, options(cacheDir, { maxBytesPerFile: 4096 })));
    expect(e.message).toContain(txt);
    expect(e.message).toMatch(/is 11\.7 KB, over the 4 KB limit per corpus file; split it into smaller files/);
  });

  it('a corpus shorter than one training sequence plus validation', async () => {
    const p = join(dir, 'short.txt');
    await writeFile(p, 'hello');
    const e = await errorOf(loadCorpus({ paths: [p] }, tok, options(cacheDir, { seqLen: 64 })));
    expect(e.message).toContain(p);
    // 5 bytes + BOS + EOS = 7 tokens; 1 validation + 1 training sequence = 128
    expect(e.message).toMatch(/the corpus has 7 tokens, fewer than the 128 needed for one training sequence of --seq 64 plus validation \(1 sequence\); add data or lower --seq/);
    const e2 = await errorOf(loadCorpus({ paths: [p] }, tok, options(cacheDir, { seqLen: 8, valFraction: 0 })));
    expect(e2.message).toMatch(/the corpus has 7 tokens, fewer than the 8 needed for one training sequence of --seq 8; add data/);
  });

  it('a .jsonl line that is not JSON or has no "text"', async () => {
    const p = join(dir, 'bad.jsonl');
    await writeFile(p, '{"text": "ok"}\n{"text": "ok"}\n{"txt": "no"}\n');
    const e = await errorOf(loadCorpus({ paths: [p] }, tok, options(cacheDir)));
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/line 3 has no "text" string field/);
    await writeFile(p, '{"text": "ok"}\nnot json\n');
    expect((await errorOf(loadCorpus({ paths: [p] }, tok, options(cacheDir)))).message).toMatch(/line 2 is not valid JSON/);
  });
});
