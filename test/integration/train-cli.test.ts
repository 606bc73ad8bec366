/** `blocklab train`, `runs` and `runs show` as a user runs them: the documented JSON, the store, the errors. */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { expandModel, makeTinyCheckpoint } from '../../src/main/engine/index.js';
import { REPO_ROOT, runCli } from '../helpers/cli-runner.js';
import { testDir } from '../helpers/tmp.js';
import { englishText } from '../helpers/corpus.js';

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
  writeFileSync(corpus, englishText(10000));
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

  describe('Ctrl-C (the README: "stops after the current step with a checkpoint (twice kills)")', () => {
    const SHORT = ['--steps', '1000', '--batch', '2', '--seq', '32', '--lr', '1e-3', '--save-every', '0'];
    // Steps of 8 × 256 tokens (about a second each on a quiet 2-core machine): the second
    // Ctrl-C lands while the first step is computing, with a wide margin whatever the speed.
    const LONG = ['--steps', '1000', '--batch', '8', '--seq', '256', '--lr', '1e-3', '--save-every', '0'];

    /** Starts `blocklab train` and resolves `ready` once stderr matches it. */
    function startTraining(out: string, options: string[], ready: RegExp) {
      const child = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'blocklab.mjs'), '--store', store, 'train', expanded, '--data', corpus, '--out', out, ...options, '--json'], {
        cwd: REPO_ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const output = { stdout: '', stderr: '' };
      child.stdout.setEncoding('utf8').on('data', (d: string) => (output.stdout += d));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      const waitFor = (re: RegExp) =>
        new Promise<void>((resolve, reject) => {
          const check = () => re.test(output.stderr) && resolve();
          child.stderr.on('data', check);
          void exited.then(() => reject(new Error(`blocklab train ended before printing ${re}:\n${output.stderr}`)));
          check();
        });
      child.stderr.setEncoding('utf8').on('data', (d: string) => (output.stderr += d));
      return { child, output, exited, ready: waitFor(ready), waitFor };
    }

    it('once: the run stops after the step in progress, writes a checkpoint of that step, and exits 0', async () => {
      const out = join(root, 'ctrl-c-once');
      const t = startTraining(out, SHORT, /^step 1\//m);
      await t.ready;
      t.child.kill('SIGINT');
      expect(await t.exited).toBe(0);
      expect(t.output.stderr).toContain('stopping after this step and writing a checkpoint (Ctrl-C again to kill)');
      const doc = JSON.parse(t.output.stdout);
      expect(doc.status).toBe('cancelled');
      expect(doc.steps).toBeGreaterThanOrEqual(1);
      expect(doc.steps).toBeLessThan(1000);
      expect(doc.model).toBeNull(); // no final model: the run did not finish
      const ckpt = join(out, `checkpoint-${String(doc.steps).padStart(6, '0')}`);
      expect(doc.last_checkpoint).toBe(ckpt);
      const state = JSON.parse(readFileSync(join(ckpt, 'trainer_state.json'), 'utf8'));
      expect(state.step).toBe(doc.steps);
      const shown = JSON.parse((await runCli(['--store', store, 'runs', 'show', String(doc.run_id), '--json'])).stdout);
      expect(shown.run).toMatchObject({ status: 'cancelled', lastStep: doc.steps });
    }, 120_000);

    it('twice: the engine process is killed in the middle of its step, nothing is written, and the run is marked interrupted', async () => {
      const out = join(root, 'ctrl-c-twice');
      const t = startTraining(out, LONG, /^run \d+: blocks/m);
      await t.ready; // training has started: the engine is in its first step
      t.child.kill('SIGINT');
      // the second Ctrl-C only after the first was handled (two pending SIGINTs are delivered as one)
      await t.waitFor(/stopping after this step/);
      t.child.kill('SIGINT');
      expect(await t.exited).toBe(1);
      const lines = t.output.stderr.split('\n').filter((l) => l.trim());
      expect(lines.at(-1)).toMatch(/training failed \(run \d+\): .*killed \(SIGKILL\)/);
      const { error } = JSON.parse(t.output.stdout) as { error: string };
      expect(error).toMatch(/^training failed \(run \d+\): the engine process was killed \(SIGKILL\)/);
      expect(readdirSync(out).filter((n) => n.startsWith('checkpoint-'))).toEqual([]);
      const runId = Number(/training failed \(run (\d+)\)/.exec(error)![1]);
      const shown = JSON.parse((await runCli(['--store', store, 'runs', 'show', String(runId), '--json'])).stdout);
      expect(shown.run.status).toBe('interrupted');
    }, 120_000);
  });
});
