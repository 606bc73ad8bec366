/**
 * Parquet corpora in training (engine/data.ts through engine/parquet.ts): a Parquet file packs to
 * exactly the sequences the same documents give as JSONL, row group by row group, under any
 * codec (here gzip, as pyarrow writes with compression="gzip"), through the token cache; a
 * missing or non-text column is refused naming the columns there are.
 */
import { gzipSync } from 'node:zlib';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parquetWriteFile } from 'hyparquet-writer';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadCorpus } from '../../src/main/engine/data.js';
import { testDir } from '../helpers/tmp.js';

/** A character tokenizer: one id per UTF-16 unit (enough to compare packings). */
const charTok = { encode: (t: string) => Array.from(t, (c) => c.charCodeAt(0) % 1000) };

let root: string;
const texts = Array.from({ length: 23 }, (_, i) => `document ${i}: ${'abc '.repeat(i % 7)}end`);

beforeAll(async () => {
  root = await testDir('parquet');
}, 30_000);

describe('Parquet corpora', () => {
  it('pack exactly as the same documents in JSONL, gzip pages and several row groups included', async () => {
    const pq = join(root, 'train-00000-of-00001.parquet');
    parquetWriteFile({
      filename: pq,
      columnData: [
        { name: 'id', data: texts.map((_, i) => i), type: 'INT32' },
        { name: 'content', data: texts, type: 'STRING' },
      ],
      rowGroupSize: 4,
      codec: 'GZIP',
      compressors: { GZIP: (b: Uint8Array) => new Uint8Array(gzipSync(b)) },
    });
    const jsonl = join(root, 'same.jsonl');
    writeFileSync(jsonl, texts.map((t) => JSON.stringify({ content: t })).join('\n') + '\n');
    const opts = { seqLen: 16, seed: 3, cacheDir: join(root, 'cache'), tokenizerFingerprint: 'char', eosId: 999, valFraction: 0.1 };
    const fromParquet = await loadCorpus({ paths: [pq], textColumn: 'content' }, charTok, opts);
    const fromJsonl = await loadCorpus({ paths: [jsonl], textColumn: 'content' }, charTok, opts);
    expect(fromParquet.documents).toBe(23);
    expect(fromParquet.tokens).toBe(fromJsonl.tokens);
    expect([...fromParquet.train]).toEqual([...fromJsonl.train]);
    expect([...fromParquet.val]).toEqual([...fromJsonl.val]);
    expect(fromParquet.files[0].cached).toBe(false);
    const again = await loadCorpus({ paths: [pq], textColumn: 'content' }, charTok, opts);
    expect(again.files[0].cached).toBe(true); // the token cache keyed by the file's hash and the column
    expect([...again.train]).toEqual([...fromParquet.train]);
    // another column is another corpus
    await expect(loadCorpus({ paths: [pq] }, charTok, opts)).rejects.toThrow(/has no column "text"; its columns are "id", "content": choose the one with the text with --text-column/);
    await expect(loadCorpus({ paths: [pq], textColumn: 'id' }, charTok, opts)).rejects.toThrow(/column "id" does not hold strings; its string columns are "content"/);
  }, 60_000);

  it('refuses a file that is not Parquet with one line naming it', async () => {
    const bad = join(root, 'broken.parquet');
    writeFileSync(bad, 'PAR1 this is not a parquet file at all PAR1');
    await expect(loadCorpus({ paths: [bad] }, charTok, { seqLen: 8, seed: 0, cacheDir: join(root, 'cache'), tokenizerFingerprint: 'char', eosId: 999 })).rejects.toThrow(/broken\.parquet: is not a readable Parquet file/);
  });
});
