/**
 * The bundled demo data (resources/demo/, made by `npm run demo:make-data`) is well formed:
 * corpora are UTF-8 with disjoint train and held-out parts, benchmarks parse and follow their
 * sidecars, and the tokenizer loads and round-trips text of both domains.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { HfTokenizer } from '../../src/main/engine/tokenizer.js';

const DEMO = 'resources/demo';

function readUtf8(rel: string): string {
  const bytes = readFileSync(join(DEMO, rel));
  // fatal: throws on invalid UTF-8
  return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
}

function readJsonl(rel: string): Record<string, unknown>[] {
  const text = readUtf8(rel);
  expect(text.endsWith('\n'), `${rel} ends with a newline`).toBe(true);
  return text
    .slice(0, -1)
    .split('\n')
    .map((line, i) => {
      let row: unknown;
      expect(() => (row = JSON.parse(line)), `${rel} line ${i + 1} is JSON`).not.toThrow();
      expect(typeof row === 'object' && row !== null && !Array.isArray(row), `${rel} line ${i + 1} is an object`).toBe(true);
      return row as Record<string, unknown>;
    });
}

const generalDocs = (rel: string) => readUtf8(rel).replace(/\n$/, '').split('\n\n');
const codeDocs = (rel: string) => readJsonl(rel).map((r) => r.text as string);

describe('demo corpora', () => {
  it('are UTF-8 text without BOM or CR, with documents in both parts', () => {
    for (const rel of ['corpora/general/train.txt', 'corpora/general/heldout.txt', 'corpora/code/train.jsonl', 'corpora/code/heldout.jsonl']) {
      const text = readUtf8(rel);
      expect(text.charCodeAt(0), rel).not.toBe(0xfeff);
      expect(text.includes('\r'), rel).toBe(false);
      expect(text.includes('\0'), rel).toBe(false);
    }
    for (const row of readJsonl('corpora/code/train.jsonl').concat(readJsonl('corpora/code/heldout.jsonl'))) {
      expect(typeof row.text).toBe('string');
      expect((row.text as string).trim().length).toBeGreaterThan(0);
    }
  });

  it('general documents are separated by one blank line and hold none', () => {
    for (const rel of ['corpora/general/train.txt', 'corpora/general/heldout.txt']) {
      const text = readUtf8(rel);
      expect(text.includes('\n\n\n'), rel).toBe(false);
      for (const doc of generalDocs(rel)) {
        expect(doc.trim()).toBe(doc);
        expect(doc.length).toBeGreaterThan(0);
      }
    }
  });

  it('train and held-out parts share no document, and held-out is about a tenth', () => {
    for (const [train, held] of [
      [generalDocs('corpora/general/train.txt'), generalDocs('corpora/general/heldout.txt')],
      [codeDocs('corpora/code/train.jsonl'), codeDocs('corpora/code/heldout.jsonl')],
    ]) {
      const trainSet = new Set(train);
      expect(trainSet.size).toBe(train.length); // no duplicates within train either
      expect(new Set(held).size).toBe(held.length);
      for (const d of held) expect(trainSet.has(d)).toBe(false);
      const bytes = (ds: string[]) => ds.reduce((n, d) => n + Buffer.byteLength(d), 0);
      const frac = bytes(held) / (bytes(held) + bytes(train));
      expect(frac).toBeGreaterThan(0.05);
      expect(frac).toBeLessThan(0.2);
    }
    const sources = (rel: string) => readJsonl(rel).map((r) => r.source);
    const trainSources = new Set(sources('corpora/code/train.jsonl'));
    for (const s of sources('corpora/code/heldout.jsonl')) expect(trainSources.has(s)).toBe(false);
  });

  it('keep the data files small', () => {
    let total = 0;
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const p = join(dir, name);
        if (statSync(p).isDirectory()) walk(p);
        else total += statSync(p).size;
      }
    };
    for (const sub of ['corpora', 'benchmarks', 'tokenizer']) walk(join(DEMO, sub));
    for (const f of ['NOTICE', 'README.md', 'LICENSE-PYTHON.txt']) total += statSync(join(DEMO, f)).size;
    expect(total).toBeLessThan(1.5 * 1024 * 1024);
  });

  it('has a NOTICE naming the sources and keeping the PSF notice', () => {
    const notice = readUtf8('NOTICE');
    for (const s of ["The Devil's Dictionary", 'Ambrose Bierce', 'Constitution', 'Declaration of Independence', 'public domain', 'Python Software Foundation', 'LICENSE-PYTHON.txt']) {
      expect(notice).toContain(s);
    }
    expect(readUtf8('LICENSE-PYTHON.txt')).toContain('PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2');
  });
});

describe('demo benchmarks', () => {
  const EXPECTED = {
    'general-ppl': { kind: 'perplexity', domain: 'general', role: 'old', delimiter: ' ' },
    'code-ppl': { kind: 'perplexity', domain: 'code', role: 'new', delimiter: '' },
    'general-mc': { kind: 'multiple_choice', domain: 'general', role: 'old', delimiter: ' ' },
    'code-mc': { kind: 'multiple_choice', domain: 'code', role: 'new', delimiter: '' },
  } as const;

  it('are exactly the four builtins, each with a sidecar', () => {
    const names = readdirSync(join(DEMO, 'benchmarks')).sort();
    expect(names).toEqual(Object.keys(EXPECTED).flatMap((n) => [`${n}.json`, `${n}.jsonl`]).sort());
  });

  for (const [name, want] of Object.entries(EXPECTED)) {
    it(`${name}: sidecar and items are valid`, () => {
      const side = JSON.parse(readUtf8(`benchmarks/${name}.json`));
      expect(Object.keys(side)).toEqual(['blocklab_benchmark']);
      const b = side.blocklab_benchmark;
      expect(b).toMatchObject({ name, kind: want.kind, domain: want.domain, role: want.role, target_delimiter: want.delimiter });
      expect(typeof b.description).toBe('string');
      expect(b.description.length).toBeGreaterThan(20);

      const rows = readJsonl(`benchmarks/${name}.jsonl`);
      const heldGeneral = readUtf8('corpora/general/heldout.txt');
      const heldCode = codeDocs('corpora/code/heldout.jsonl').join('\n');
      const heldCodeLines = new Set(heldCode.split('\n').map((l) => l.trim()));
      const inHeldOut = (text: string) =>
        want.domain === 'general' ? heldGeneral.includes(text) : text.split('\n').every((l) => heldCodeLines.has(l.trim()));

      if (want.kind === 'perplexity') {
        expect(rows.length).toBeGreaterThanOrEqual(30);
        for (const r of rows) {
          expect(Object.keys(r)).toEqual(['text']);
          const text = r.text as string;
          expect(text.length).toBeGreaterThanOrEqual(300);
          expect(text.length).toBeLessThanOrEqual(800);
          expect(inHeldOut(text), text.slice(0, 60)).toBe(true);
        }
        expect(new Set(rows.map((r) => r.text)).size).toBe(rows.length);
        return;
      }

      expect(rows.length).toBeGreaterThanOrEqual(50);
      const golds = [0, 0, 0, 0];
      for (const r of rows) {
        expect(Object.keys(r).sort()).toEqual(['choices', 'context', 'gold']);
        const context = r.context as string;
        const choices = r.choices as string[];
        const gold = r.gold as number;
        expect(Number.isInteger(gold) && gold >= 0 && gold < choices.length).toBe(true);
        golds[gold]++;
        expect(choices.length).toBe(4);
        expect(new Set(choices).size).toBe(4);
        expect(context.length).toBeGreaterThanOrEqual(150);
        expect(context.length).toBeLessThanOrEqual(300);
        for (const c of choices) {
          expect(typeof c).toBe('string');
          expect(c.length).toBeGreaterThanOrEqual(40);
          expect(c.length).toBeLessThanOrEqual(120);
          if (want.domain === 'general') {
            expect(c).toBe(c.trimStart());
            expect(c.includes('\n')).toBe(false);
          } else {
            expect(c.startsWith('\n')).toBe(false);
            expect(c.endsWith('\n')).toBe(false);
          }
        }
        if (want.domain === 'general') expect(context).toBe(context.trimEnd());
        else expect(context.endsWith('\n')).toBe(true);
        // context + delimiter + true continuation is held-out text
        expect(inHeldOut(context + want.delimiter + choices[gold]), context.slice(0, 60)).toBe(true);
      }
      // the gold index is balanced
      for (const n of golds) expect(Math.abs(n - rows.length / 4)).toBeLessThanOrEqual(1);
    });
  }
});

describe('demo tokenizer', () => {
  let tok: HfTokenizer;
  beforeAll(async () => {
    tok = await HfTokenizer.fromFolder(join(DEMO, 'tokenizer'));
  });

  it('is a ~1000-token byte-level BPE with a BOS', () => {
    expect(tok.vocabSize).toBe(1024);
    expect(tok.bosTokenId).not.toBeNull();
    expect(tok.describe().bos).toBe('<|begin_of_text|>');
  });

  it('round-trips text from both corpora and compresses general English better than code', () => {
    const samples = {
      general: [readUtf8('corpora/general/train.txt').slice(0, 6000), readUtf8('corpora/general/heldout.txt').slice(0, 6000)],
      code: [codeDocs('corpora/code/train.jsonl')[0].slice(0, 6000), codeDocs('corpora/code/heldout.jsonl')[0].slice(0, 6000)],
    };
    const bytesPerToken: Record<string, number> = {};
    for (const [domain, texts] of Object.entries(samples)) {
      let bytes = 0;
      let tokens = 0;
      for (const text of texts) {
        const ids = tok.encode(text, { addSpecialTokens: false });
        expect(tok.decode(ids)).toBe(text);
        bytes += Buffer.byteLength(text);
        tokens += ids.length;
      }
      bytesPerToken[domain] = bytes / tokens;
    }
    expect(bytesPerToken.general).toBeGreaterThan(2);
    expect(bytesPerToken.code).toBeLessThan(bytesPerToken.general);
  });
});
