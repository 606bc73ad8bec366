/**
 * Real text for tests, from the demo data the repository ships (resources/demo; sources and
 * terms in its NOTICE), so that no test reads a file of the machine it runs on.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const DEMO = fileURLToPath(new URL('../../resources/demo/', import.meta.url));

/** The first `chars` characters of the general-English training corpus (The Devil's Dictionary, …). */
export function englishText(chars: number): string {
  const text = readFileSync(`${DEMO}corpora/general/train.txt`, 'utf8');
  if (text.length < chars) throw new Error(`the shipped English corpus has ${text.length} characters, fewer than ${chars}`);
  return text.slice(0, chars);
}

/** A Python standard-library module from the shipped code corpus, by its file name (e.g. "bisect.py"). */
export function pythonModule(file: string): string {
  for (const line of readFileSync(`${DEMO}corpora/code/train.jsonl`, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const doc = JSON.parse(line) as { text: string; source: string };
    if (doc.source === file || doc.source.endsWith(`/${file}`)) return doc.text;
  }
  throw new Error(`the shipped code corpus has no ${file}`);
}
