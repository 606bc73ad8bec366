/**
 * Blocklab never deletes or replaces what it did not create (issue 11, items 3 and 4): every
 * folder it writes carries a marker; a non-empty folder without one is refused by every writer
 * — expand, HF and GGUF export, make-tiny, the trainer's run folder and its checkpoint rotation,
 * reports, the demo — and a marked one is replaced only when asked. An empty folder is fine.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { checkWritableTarget, OUTPUT_MARKER, removeLeftovers, writeFileAtomically } from '../../src/main/engine/atomic.js';
import { expandModel, exportGguf, exportModel, initBackend, makeTinyCheckpoint } from '../../src/main/engine/index.js';
import { DEFAULT_ADAMW } from '../../src/main/engine/optimizer.js';
import { parseMethod } from '../../src/main/engine/trainable.js';
import { train, TRAIN_DEFAULTS, type TrainOptions } from '../../src/main/engine/trainer.js';
import { writeReport } from '../../src/main/report/index.js';
import { runDemo } from '../../src/main/demo/run-demo.js';
import { ExperimentStore } from '../../src/main/store/index.js';
import { testDir } from '../helpers/tmp.js';

let root: string;
let base: string;
let corpus: string;

beforeAll(async () => {
  await initBackend('auto');
  root = await testDir('outputs');
  base = join(root, 'base');
  corpus = join(root, 'corpus.txt');
  await makeTinyCheckpoint(base, { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, seed: 3 });
  const words = 'the model learns a new domain while it keeps the old one and nothing is lost'.split(' ');
  await writeFile(corpus, Array.from({ length: 1500 }, (_, i) => words[(i * 7) % words.length]).join(' '));
});

/** A folder of the user's: two files and a sub-folder. */
async function usersFolder(name: string): Promise<string> {
  const dir = join(root, name);
  await mkdir(join(dir, 'sub'), { recursive: true });
  await writeFile(join(dir, 'notes.txt'), 'mine');
  await writeFile(join(dir, 'sub', 'data.csv'), '1,2');
  return dir;
}

async function untouched(dir: string): Promise<void> {
  expect((await readdir(dir)).sort()).toEqual(['notes.txt', 'sub']);
  expect(readFileSync(join(dir, 'notes.txt'), 'utf8')).toBe('mine');
  expect(readFileSync(join(dir, 'sub', 'data.csv'), 'utf8')).toBe('1,2');
}

describe('every writer refuses a folder of the user, even with overwrite', () => {
  it('expand, HF export, make-tiny and reports', async () => {
    const dir = await usersFolder('users');
    const refusal = /is not empty and is not a folder Blocklab wrote/;
    await expect(expandModel(base, { blocks: 1 }, { out: dir, overwrite: true })).rejects.toThrow(refusal);
    await expect(exportModel(base, { out: dir, overwrite: true })).rejects.toThrow(refusal);
    await expect(makeTinyCheckpoint(dir, { layers: 1, hidden: 8, heads: 2, kvHeads: 1, intermediate: 16, overwrite: true })).rejects.toThrow(refusal);
    const data = { title: 't', generatedAt: '', runs: [], forgetting: null, notes: [] } as unknown as Parameters<typeof writeReport>[0];
    await expect(writeReport(data, dir, { pdf: false, overwrite: true })).rejects.toThrow(refusal);
    await untouched(dir);
    // nothing left beside it either
    expect((await readdir(root)).filter((n) => n.startsWith('.users'))).toEqual([]);
  });

  it('a single file written exclusively (lm-evaluation-harness results and samples) never replaces one that is there', async () => {
    const dir = join(root, 'exclusive');
    await mkdir(dir, { recursive: true });
    const file = join(dir, 'results_2026-12-02T10-00-00.000000.json');
    await writeFile(file, 'the user');
    await expect(writeFileAtomically(file, '{}', { exclusive: true })).rejects.toThrow(/already exists; Blocklab does not replace a file it did not write/);
    expect(readFileSync(file, 'utf8')).toBe('the user');
    expect(await readdir(dir)).toEqual(['results_2026-12-02T10-00-00.000000.json']);
  });

  it('GGUF export replaces only a GGUF file, and only with overwrite', async () => {
    const file = join(root, 'model.gguf');
    await writeFile(file, 'a file of the user that happens to end in .gguf');
    await expect(exportGguf(base, { out: file, overwrite: true })).rejects.toThrow(/not a GGUF file; Blocklab will not replace it/);
    expect(readFileSync(file, 'utf8')).toMatch(/^a file of the user/);
  });

  it('a report folder: HTML only into a folder holding a report.pdf of the user deletes nothing', async () => {
    const dir = join(root, 'papers');
    await mkdir(dir);
    await writeFile(join(dir, 'report.pdf'), '%PDF my own report');
    const data = { title: 't', generatedAt: '', runs: [], forgetting: null, notes: [] } as unknown as Parameters<typeof writeReport>[0];
    await expect(writeReport(data, dir, { pdf: false })).rejects.toThrow(/is not empty and is not a folder Blocklab wrote/);
    expect(readFileSync(join(dir, 'report.pdf'), 'utf8')).toBe('%PDF my own report');
  });
});

describe('an empty folder is used; a marked one is replaced only when asked', () => {
  it('expand into an empty folder, then again only with overwrite', async () => {
    const out = join(root, 'chosen');
    await mkdir(out);
    await expandModel(base, { blocks: 1 }, { out });
    expect(JSON.parse(readFileSync(join(out, OUTPUT_MARKER), 'utf8'))).toMatchObject({ made_by: 'blocklab', kind: 'checkpoint' });
    await expect(expandModel(base, { blocks: 2 }, { out })).rejects.toThrow(/already exists and holds a checkpoint that Blocklab wrote; pass --overwrite/);
    await expandModel(base, { blocks: 2 }, { out, overwrite: true });
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).num_hidden_layers).toBe(4);
    // a checkpoint is not a report: one kind of output never replaces another
    await expect(checkWritableTarget(out, true, 'report')).rejects.toThrow(/holds a checkpoint that Blocklab wrote, not a report/);
  });

  it("a killed write is finished by the next write there: its partial output removed, a previous version it had moved aside put back; another process's write and the user's files are left alone", async () => {
    const dir = join(root, 'leftovers');
    const out = join(dir, 'model');
    await expandModel(base, { blocks: 1 }, { out });
    // the process id of one that has exited, as a killed write's would be
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    const plant = async (name: string, content = 'partial') => {
      await mkdir(join(dir, name));
      await writeFile(join(dir, name, 'model.safetensors'), content);
    };
    const partial = `.model.tmp-${dead}-0123abcd`; // an output never put in place: removed
    const previous = `.model.old-${dead}-0123abce`; // the version before a swap that completed (model is there): removed
    const running = `.model.tmp-${process.ppid}-0123abd0`; // a write by a process still running: kept
    for (const n of [partial, previous, running]) await plant(n);
    await writeFile(join(dir, '.model.tmp-notes'), 'mine'); // not the pattern: the user's
    await expandModel(base, { blocks: 2 }, { out, overwrite: true });
    expect((await readdir(dir)).sort()).toEqual([running, '.model.tmp-notes', 'model'].sort());

    // killed between its two renames: "other" moved aside, the new one not yet in place
    const other = join(dir, 'other');
    await expandModel(base, { blocks: 1 }, { out: other });
    const { rename } = await import('node:fs/promises');
    await rename(other, join(dir, `.other.old-${dead}-0123abd2`));
    await plant(`.other.tmp-${dead}-0123abd2`);
    // the next write there finds the previous version back in place, and asks before replacing it
    await expect(expandModel(base, { blocks: 2 }, { out: other })).rejects.toThrow(/already exists and holds a checkpoint that Blocklab wrote; pass --overwrite/);
    expect(JSON.parse(readFileSync(join(other, 'config.json'), 'utf8')).num_hidden_layers).toBe(3);
    expect((await readdir(dir)).filter((n) => n.includes('other'))).toEqual(['other']);

    // a folder-wide sweep (a resumed run's own folder) does the same for every name
    await plant(`.checkpoint-4.tmp-${dead}-0123abd1`);
    await plant(`.checkpoint-2.old-${dead}-0123abd3`, 'the only copy');
    expect(await removeLeftovers(dir)).toEqual([`restored checkpoint-2 from .checkpoint-2.old-${dead}-0123abd3`, `removed .checkpoint-4.tmp-${dead}-0123abd1`]);
    expect(readFileSync(join(dir, 'checkpoint-2', 'model.safetensors'), 'utf8')).toBe('the only copy');
    expect(existsSync(join(dir, running))).toBe(true);
  });

  it('the demo accepts an existing empty --out, and refuses a folder of the user', async () => {
    const store = ExperimentStore.open(join(root, 'demo.sqlite'));
    try {
      const users = await usersFolder('demo-users');
      await expect(runDemo({ out: users, store, overwrite: true })).rejects.toThrow(/is not empty and is not a folder Blocklab wrote/);
      await untouched(users);
      const empty = join(root, 'demo-empty');
      await mkdir(empty);
      const stopped = new AbortController();
      stopped.abort();
      // past the folder check: it expands, then stops at the first training (the signal is already aborted)
      await expect(runDemo({ out: empty, store, signal: stopped.signal, limit: 1 })).rejects.toThrow(/the demo was stopped|cancelled/);
      expect(existsSync(join(empty, 'expanded-interleave', 'config.json'))).toBe(true);
      expect(JSON.parse(readFileSync(join(empty, OUTPUT_MARKER), 'utf8')).kind).toBe('demo');
    } finally {
      store.close();
    }
  }, 120_000);
});

describe('the trainer', () => {
  const options = (out: string, over: Partial<TrainOptions> = {}): TrainOptions => ({
    ...TRAIN_DEFAULTS,
    model: base,
    data: { paths: [corpus] },
    out,
    method: parseMethod('full'),
    steps: 4,
    lr: 1e-3,
    batch: 2,
    seq: 16,
    warmup: 1,
    evalBatches: 1,
    evalEvery: 0,
    saveEvery: 1,
    keepCheckpoints: 1,
    adamw: DEFAULT_ADAMW,
    cacheDir: join(root, 'cache'),
    resume: false,
    ...over,
  });

  it('refuses a non-empty --out that is not a run folder, before training', async () => {
    const dir = await usersFolder('train-users');
    await expect(train(options(dir))).rejects.toThrow(/is not empty and is not a folder Blocklab wrote/);
    await untouched(dir);
  });

  it('rotates only the checkpoints it wrote: a checkpoint-N folder of the user survives', async () => {
    const out = join(root, 'run');
    await mkdir(out);
    const r = await train(options(out));
    expect(r.stopped).toBe('completed');
    expect((await readdir(out)).filter((n) => n.startsWith('checkpoint-'))).toEqual(['checkpoint-000004']);
    // the user drops a folder named like a checkpoint into the run (say, from another trainer)
    await rm(join(out, 'model'), { recursive: true });
    await mkdir(join(out, 'checkpoint-000001'));
    await writeFile(join(out, 'checkpoint-000001', 'config.json'), '{"mine": true}');
    await rm(join(out, 'checkpoint-000004'), { recursive: true });
    await mkdir(join(out, 'checkpoint-999999'));
    await writeFile(join(out, 'checkpoint-999999', 'config.json'), '{"mine": true}');
    const again = await train(options(out, { steps: 3, saveEvery: 2 }));
    expect(again.stopped).toBe('completed');
    expect(readFileSync(join(out, 'checkpoint-000001', 'config.json'), 'utf8')).toBe('{"mine": true}');
    expect(readFileSync(join(out, 'checkpoint-999999', 'config.json'), 'utf8')).toBe('{"mine": true}');
    // the newest of its own is kept (the user's newer-named folder does not count against it)
    expect((await readdir(out)).filter((n) => n.startsWith('checkpoint-')).sort()).toEqual(['checkpoint-000001', 'checkpoint-000003', 'checkpoint-999999']);
  }, 120_000);
});
