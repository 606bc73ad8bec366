/** `blocklab train`, `runs` and `runs show` as a user runs them: the documented JSON, the store, the errors. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { expandModel, makeTinyCheckpoint } from '../../src/main/engine/index.js';
import { runCli } from '../helpers/cli-runner.js';
import { testDir } from '../helpers/tmp.js';

let root: string;
let expanded: string;
let base: string;
let corpus: string;
let store: string;

beforeAll(async () => {
  root = await testDir('train-cli');
  base = join(root, 'base');
  await makeTinyCheckpoint(base, { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64 });
  expanded = join(root, 'expanded');
  await expandModel(base, { blocks: 2 }, { out: expanded });
  corpus = join(root, 'corpus.txt');
  writeFileSync(corpus, readFileSync('/usr/share/common-licenses/GPL-3', 'utf8').slice(0, 10000));
  store = join(root, 'store.sqlite');
}, 60_000);

describe('blocklab train', () => {
  it('prints the documented JSON, records the run, and lists it', async () => {
    const out = join(root, 'run');
    const r = await runCli(['--store', store, 'train', expanded, '--data', corpus, '--out', out, '--steps', '8', '--batch', '2', '--seq', '32', '--lr', '1e-3', '--warmup', '2', '--eval-every', '4', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    for (const key of ['run_id', 'method', 'steps', 'first_loss', 'last_loss', 'val_loss', 'tokens_per_second', 'trainable_params', 'peak_memory_bytes']) {
      expect(doc, key).toHaveProperty(key);
    }
    expect(doc.method).toBe('blocks');
    expect(doc.steps).toBe(8);
    expect(doc.trainable_params).toBeLessThan(doc.total_params);
    expect(doc.tokens_per_second).toBeGreaterThan(0);
    expect(doc.model).toBe(join(out, 'model'));
    expect(r.stderr).toMatch(/step 8\/8/); // progress went to stderr

    const list = JSON.parse((await runCli(['--store', store, 'runs', '--json'])).stdout);
    expect(list.runs[0].id).toBe(doc.run_id);
    expect(list.runs[0].status).toBe('completed');
    const show = JSON.parse((await runCli(['--store', store, 'runs', 'show', String(doc.run_id), '--json'])).stdout);
    expect(show.metrics.filter((m: { name: string }) => m.name === 'loss')).toHaveLength(8);
    expect(show.metrics.some((m: { name: string }) => m.name === 'val_loss')).toBe(true);
  });

  it('refuses blocks training on a model with no new blocks, and bad options, in one line', async () => {
    const r = await runCli(['--store', store, 'train', base, '--data', corpus, '--out', join(root, 'no'), '--steps', '2', '--seq', '32']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/no expansion record.*--trainable-layers/);
    const bad = await runCli(['--store', store, 'train', expanded, '--data', corpus, '--out', join(root, 'no'), '--method', 'last:x']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/unknown --method "last:x"/);
    const missing = await runCli(['--store', store, 'train', expanded, '--data', join(root, 'nope.txt'), '--out', join(root, 'no'), '--seq', '32']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/nope\.txt/);
  });
});
