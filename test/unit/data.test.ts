/**
 * The pure parts of the training-data pipeline (src/main/engine/data.ts, glob.ts): document
 * parsing, packing with EOS/BOS, the seeded validation split, the resumable batch sampler, the
 * UTF-8 checker and the glob matcher. Loading real files is in test/integration/data.test.ts.
 */
import { describe, expect, it } from 'vitest';
import {
  BatchSampler,
  epochSeed,
  firstInvalidUtf8,
  gatherBatch,
  minimumSequences,
  packDocuments,
  packFiles,
  parseDocuments,
  shuffledIndices,
  splitSequences,
  tokenizeDocuments,
  validationCount,
  type PackedCorpus,
} from '../../src/main/engine/data.js';
import { BlocklabError } from '../../src/main/engine/errors.js';
import { globMatch, globMatcher, expandBraces } from '../../src/main/engine/glob.js';
import { seededRandom } from '../../src/main/engine/random.js';

/** One token per UTF-16 code unit: 'a' -> 97. */
const charTokenizer = { encode: (s: string) => [...s].map((c) => c.charCodeAt(0)) };

const EOS = 0;
const BOS = 1;

describe('documents', () => {
  it('a text file is one document; a blank one is none', () => {
    expect(parseDocuments('hello\nworld\n', 'text', 'a.txt')).toEqual(['hello\nworld\n']);
    expect(parseDocuments(' \n\t\n', 'text', 'a.txt')).toEqual([]);
    expect(parseDocuments('', 'text', 'a.txt')).toEqual([]);
  });

  it('a .jsonl line is one document (its "text"); blank lines and blank texts are left out', () => {
    const jsonl = '{"text":"ab"}\r\n\n{"text":"c","meta":1}\n{"text":"  "}\n{"text":"de"}';
    expect(parseDocuments(jsonl, 'jsonl', 'd.jsonl')).toEqual(['ab', 'c', 'de']);
  });

  it('a .jsonl line that is not JSON or has no "text" string is an error naming the file and line', () => {
    const bad = (text: string) => {
      try {
        parseDocuments(text, 'jsonl', 'data/d.jsonl');
      } catch (e) {
        expect(e).toBeInstanceOf(BlocklabError);
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    expect(bad('{"text":"a"}\n{"text": "b"\n')).toMatch(/^data\/d\.jsonl: line 2 is not valid JSON/);
    expect(bad('{"text":"a"}\n\n{"body":"b"}\n')).toMatch(/^data\/d\.jsonl: line 3 has no "text" string field/);
    expect(bad('{"text":5}')).toMatch(/line 1 has no "text" string/);
    expect(bad('["text"]')).toMatch(/line 1 has no "text" string/);
    expect(bad('"just a string"')).toMatch(/line 1 has no "text" string/);
  });

  it('tokenizes each document without special tokens and keeps their lengths', () => {
    const calls: unknown[] = [];
    const tok = {
      encode: (s: string, o?: { addSpecialTokens?: boolean }) => {
        calls.push(o);
        return charTokenizer.encode(s);
      },
    };
    const t = tokenizeDocuments(['ab', 'c'], tok);
    expect([...t.tokens]).toEqual([97, 98, 99]);
    expect([...t.docLengths]).toEqual([2, 1]);
    expect(calls).toEqual([{ addSpecialTokens: false }, { addSpecialTokens: false }]);
  });
});

describe('packing', () => {
  const docs = ['ab', 'c', 'de'].map(charTokenizer.encode);

  it('packs doc eos doc eos ... without BOS', () => {
    expect([...packDocuments(docs, EOS)]).toEqual([97, 98, 0, 99, 0, 100, 101, 0]);
  });

  it('packs bos doc eos bos doc eos ... with BOS', () => {
    expect([...packDocuments(docs, EOS, BOS)]).toEqual([1, 97, 98, 0, 1, 99, 0, 1, 100, 101, 0]);
  });

  it('packs several files in order, the same as one list of documents', () => {
    const a = tokenizeDocuments(['ab', 'c'], charTokenizer);
    const b = tokenizeDocuments(['de'], charTokenizer);
    expect([...packFiles([a, b], EOS, BOS)]).toEqual([...packDocuments(docs, EOS, BOS)]);
    expect([...packFiles([a, tokenizeDocuments([], charTokenizer), b], EOS)]).toEqual([97, 98, 0, 99, 0, 100, 101, 0]);
  });

  it('cuts consecutive seqLen sequences and drops the ragged tail (no validation)', () => {
    const stream = packDocuments(docs, EOS, BOS); // 11 tokens
    const s = splitSequences(stream, 4, 0, 1, 7);
    expect(s.numVal).toBe(0);
    expect(s.numTrain).toBe(2);
    const rows = [[...s.train.subarray(0, 4)], [...s.train.subarray(4, 8)]];
    // in shuffled order: compare as a set of rows
    expect(rows.sort()).toEqual(
      [
        [1, 97, 98, 0],
        [1, 99, 0, 1],
      ].sort(),
    );
    const noBos = splitSequences(packDocuments(docs, EOS), 3, 0, 1, 7); // 8 tokens: 2 rows, tail [101, 0]
    expect(noBos.numTrain).toBe(2);
    expect([[...noBos.train.subarray(0, 3)], [...noBos.train.subarray(3, 6)]].sort()).toEqual(
      [
        [97, 98, 0],
        [99, 0, 100],
      ].sort(),
    );
  });
});

describe('validation split', () => {
  it('holds out max(minValSequences, round(valFraction * n)), none when valFraction is 0', () => {
    expect(validationCount(100, 0.05, 1)).toBe(5);
    expect(validationCount(10, 0.05, 1)).toBe(1); // round(0.5) = 1
    expect(validationCount(3, 0.05, 1)).toBe(1);
    expect(validationCount(3, 0.05, 0)).toBe(0);
    expect(validationCount(20, 0.05, 3)).toBe(3);
    expect(validationCount(1000, 0.1, 3)).toBe(100);
    expect(validationCount(1000, 0, 3)).toBe(0);
  });

  it('knows the fewest sequences that leave one for training', () => {
    expect(minimumSequences(0, 1)).toBe(1);
    expect(minimumSequences(0.05, 1)).toBe(2);
    expect(minimumSequences(0.05, 3)).toBe(4);
    expect(minimumSequences(0.5, 1)).toBe(2); // 1 validation + 1 training
    expect(minimumSequences(0.9, 1)).toBe(6); // n=5: round(4.5)=5 validation leaves none; n=6: 5 + 1
  });

  it('minimumSequences is the least n with n >= validationCount(n) + 1', () => {
    for (const [vf, mv] of [
      [0.05, 1],
      [0.5, 1],
      [0.5, 0],
      [0.3, 2],
      [0.9, 1],
    ]) {
      const m = minimumSequences(vf, mv);
      expect(m).toBeGreaterThanOrEqual(validationCount(m, vf, mv) + 1);
      for (let n = 1; n < m; n++) expect(n).toBeLessThan(validationCount(n, vf, mv) + 1);
    }
  });

  it('the shuffle is a deterministic permutation; different seeds differ', () => {
    const a = shuffledIndices(50, 42);
    expect([...a].sort((x, y) => x - y)).toEqual([...Array(50).keys()]);
    expect([...shuffledIndices(50, 42)]).toEqual([...a]);
    expect([...shuffledIndices(50, 43)]).not.toEqual([...a]);
    expect([...a]).not.toEqual([...Array(50).keys()]);
  });

  it('is a seeded Fisher–Yates shuffle with seededRandom', () => {
    const random = seededRandom(9);
    const idx = [0, 1, 2, 3, 4, 5, 6];
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
    expect([...shuffledIndices(7, 9)]).toEqual(idx);
  });

  it('validation is the first sequences of the shuffle, training the rest in shuffled order', () => {
    const T = 3;
    const n = 40;
    const stream = Int32Array.from({ length: n * T + 2 }, (_, i) => i); // sequence s = [3s, 3s+1, 3s+2], +2 tail
    const s = splitSequences(stream, T, 0.1, 1, 5);
    expect(s.numVal).toBe(4);
    expect(s.numTrain).toBe(36);
    const order = [...shuffledIndices(n, 5)];
    const rowsOf = (a: Int32Array) => Array.from({ length: a.length / T }, (_, k) => a[k * T] / T);
    expect(rowsOf(s.val)).toEqual(order.slice(0, 4));
    expect(rowsOf(s.train)).toEqual(order.slice(4));
    for (let k = 0; k < s.numTrain; k++) expect([...s.train.subarray(k * T, k * T + T)]).toEqual([0, 1, 2].map((d) => order[4 + k] * T + d));
    // a different seed gives a different split of the same sequences
    const other = splitSequences(stream, T, 0.1, 1, 6);
    expect(rowsOf(other.val)).not.toEqual(rowsOf(s.val));
    expect([...rowsOf(other.val), ...rowsOf(other.train)].sort((a, b) => a - b)).toEqual([...Array(n).keys()]);
  });
});

describe('BatchSampler', () => {
  const drain = (s: BatchSampler, k: number) => Array.from({ length: k }, () => s.next());

  it('37 batches straight equal 15, then restore, then 22', () => {
    for (const [numTrain, batch] of [
      [10, 3],
      [7, 7],
      [5, 8],
      [100, 4],
    ]) {
      const straight = drain(new BatchSampler(numTrain, batch, 1234), 37);
      const first = new BatchSampler(numTrain, batch, 1234);
      const head = drain(first, 15);
      const state = JSON.parse(JSON.stringify(first.state())); // as saved in a run's state file
      const resumed = BatchSampler.restore(numTrain, batch, 1234, state);
      expect([...head, ...drain(resumed, 22)]).toEqual(straight);
    }
  });

  it('every index appears once per epoch; batches span epochs; each epoch is a fresh permutation', () => {
    const numTrain = 10;
    const s = new BatchSampler(numTrain, 3, 99);
    const flat = drain(s, 40).flat(); // 120 = 12 epochs
    const epochs: number[][] = [];
    for (let e = 0; e < 12; e++) epochs.push(flat.slice(e * numTrain, (e + 1) * numTrain));
    for (const ep of epochs) expect([...ep].sort((a, b) => a - b)).toEqual([...Array(numTrain).keys()]);
    expect(new Set(epochs.map((e) => e.join(','))).size).toBeGreaterThan(10);
    expect(epochs[0]).toEqual([...shuffledIndices(numTrain, epochSeed(99, 0))]);
    expect(epochs[5]).toEqual([...shuffledIndices(numTrain, epochSeed(99, 5))]);
    expect(s.state()).toEqual({ epoch: 11, position: 10 });
    // all batches have batchSize indices, in range
    for (const b of drain(s, 5)) {
      expect(b).toHaveLength(3);
      for (const i of b) expect(i >= 0 && i < numTrain).toBe(true);
    }
  });

  it('state counts epoch and position; restoring at an epoch boundary continues into the next epoch', () => {
    const s = new BatchSampler(6, 3, 1);
    expect(s.state()).toEqual({ epoch: 0, position: 0 });
    s.next();
    expect(s.state()).toEqual({ epoch: 0, position: 3 });
    s.next();
    expect(s.state()).toEqual({ epoch: 0, position: 6 });
    const r = BatchSampler.restore(6, 3, 1, s.state());
    expect(r.next()).toEqual(s.next());
    expect(s.state()).toEqual({ epoch: 1, position: 3 });
  });

  it('is deterministic in its seed; different seeds differ', () => {
    expect(drain(new BatchSampler(50, 5, 3), 20)).toEqual(drain(new BatchSampler(50, 5, 3), 20));
    expect(drain(new BatchSampler(50, 5, 3), 20)).not.toEqual(drain(new BatchSampler(50, 5, 4), 20));
  });

  it('refuses a state that does not fit, and bad sizes', () => {
    expect(() => BatchSampler.restore(10, 2, 1, { epoch: 0, position: 11 })).toThrow(/does not fit 10 training sequences/);
    expect(() => BatchSampler.restore(10, 2, 1, { epoch: -1, position: 0 })).toThrow(BlocklabError);
    expect(() => new BatchSampler(0, 2, 1)).toThrow(/at least one training sequence/);
    expect(() => new BatchSampler(5, 0, 1)).toThrow(/--batch/);
  });

  it('gatherBatch copies the chosen sequences as batch x seqLen', () => {
    const corpus = {
      seqLen: 2,
      train: Int32Array.from([10, 11, 20, 21, 30, 31]),
      val: Int32Array.from([40, 41]),
      numTrain: 3,
      numVal: 1,
    } as PackedCorpus;
    expect([...gatherBatch(corpus, 'train', [2, 0, 2])]).toEqual([30, 31, 10, 11, 30, 31]);
    expect([...gatherBatch(corpus, 'val', [0])]).toEqual([40, 41]);
    expect(() => gatherBatch(corpus, 'val', [1])).toThrow(/outside the 1 validation sequences/);
    expect(() => gatherBatch(corpus, 'train', [3])).toThrow(/outside the 3 training sequences/);
  });
});

describe('UTF-8 check', () => {
  const enc = new TextEncoder();
  const decoderAccepts = (b: Uint8Array) => {
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(b);
      return true;
    } catch {
      return false;
    }
  };

  it('finds the first bad byte', () => {
    expect(firstInvalidUtf8(enc.encode('héllo — 日本 😀'))).toBe(-1);
    const at = (bytes: number[]) => firstInvalidUtf8(Uint8Array.from(bytes));
    expect(at([0x61, 0xff, 0x62])).toBe(1);
    expect(at([0x61, 0x62, 0x80])).toBe(2); // lone continuation
    expect(at([0x61, 0xc3])).toBe(1); // cut off
    expect(at([0xc0, 0x80])).toBe(0); // overlong
    expect(at([0xe0, 0x80, 0x80])).toBe(0); // overlong
    expect(at([0xed, 0xa0, 0x80])).toBe(0); // surrogate
    expect(at([0xf4, 0x90, 0x80, 0x80])).toBe(0); // > U+10FFFF
    expect(at([0x41, 0xe6, 0x97, 0xa5, 0xe6, 0x97])).toBe(4);
  });

  it('agrees with TextDecoder({fatal: true}) on random bytes', () => {
    const random = seededRandom(3);
    const pool = [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xe1, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf4, 0xf5, 0xff];
    for (let k = 0; k < 3000; k++) {
      const b = Uint8Array.from({ length: 1 + Math.floor(random() * 6) }, () => pool[Math.floor(random() * pool.length)]);
      const bad = firstInvalidUtf8(b);
      expect(bad === -1).toBe(decoderAccepts(b));
      if (bad >= 0) expect(decoderAccepts(b.subarray(0, bad))).toBe(true);
    }
  });
});

describe('glob', () => {
  const cases: [string, string, boolean][] = [
    ['*.py', 'a.py', true],
    ['*.py', 'x/a.py', false],
    ['**/*.py', 'a.py', true],
    ['**/*.py', 'x/y/a.py', true],
    ['**/*.py', 'x/y/a.pyc', false],
    ['**/test_*', 'test_a.py', true],
    ['**/test_*', 'pkg/tests/test_b.py', true],
    ['**/test_*', 'pkg/test/a.py', false],
    ['**/test_*/**', 'pkg/test_data/a.py', true],
    ['src/**', 'src/a/b.ts', true],
    ['src/**', 'src', true],
    ['src/**', 'srcx/a', false],
    ['build/', 'build/x/y', true],
    ['a/**/b', 'a/b', true],
    ['a/**/b', 'a/x/y/b', true],
    ['a/**/b', 'a/xb', false],
    ['**', 'any/thing.txt', true],
    ['**/**/*.md', 'a/b.md', true],
    ['?.txt', 'a.txt', true],
    ['?.txt', 'ab.txt', false],
    ['?.txt', '/.txt', false],
    ['*.{py,md}', 'a.md', true],
    ['*.{py,md}', 'a.txt', false],
    ['src/{lib,bin/x}/*.rs', 'src/bin/x/m.rs', true],
    ['src/{lib,bin/x}/*.rs', 'src/bin/m.rs', false],
    ['{a,{b,c}d}.txt', 'cd.txt', true],
    ['{a}.txt', '{a}.txt', true],
    ['[abc].txt', 'b.txt', true],
    ['[!abc].txt', 'b.txt', false],
    ['[!abc].txt', 'd.txt', true],
    ['[^abc].txt', 'd.txt', true],
    ['[a-c]*.txt', 'cat.txt', true],
    ['[a-c]*.txt', 'dog.txt', false],
    ['[]x].txt', '].txt', true],
    ['file[.txt', 'file[.txt', true],
    ['\\*.txt', '*.txt', true],
    ['\\*.txt', 'a.txt', false],
    ['a.b', 'axb', false],
    ['(x)+.txt', '(x)+.txt', true],
    ['./docs/*.md', 'docs/a.md', true],
    ['*', '.hidden', true],
    ['*.PY', 'a.py', false],
  ];
  it.each(cases)('%s vs %s -> %s', (pattern, path, expected) => {
    expect(globMatch(pattern, path)).toBe(expected);
  });

  it('matches any of several patterns', () => {
    const m = globMatcher(['**/*.py', 'README*']);
    expect(m('x/a.py')).toBe(true);
    expect(m('README.md')).toBe(true);
    expect(m('docs/README.md')).toBe(false);
  });

  it('expands braces, nested, and refuses explosive ones', () => {
    expect(expandBraces('a{b,c{d,e}}f')).toEqual(['abf', 'acdf', 'acef']);
    expect(expandBraces('a\\{b,c}')).toEqual(['a\\{b,c}']);
    expect(() => expandBraces('{a,b}'.repeat(13))).toThrow(/more than 4096 patterns/);
  });
});
