import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BlocklabError } from '../../src/main/engine/errors.js';
import {
  APPLICATION_ID,
  ExperimentStore,
  INTERRUPTED_ERROR,
  MIGRATIONS,
  SCHEMA_VERSION,
  defaultStorePath,
  migrate,
  processExists,
  userVersion,
  type Migration,
} from '../../src/main/store/index.js';
import { expansionRecord, planExpansion } from '../../src/shared/expansion.js';
import { testDir } from '../helpers/tmp.js';

let dir: string;
let n = 0;
const fresh = () => join(dir, `s${++n}`, 'blocklab.sqlite');
const open: ExperimentStore[] = [];
function openStore(path: string, options?: Parameters<typeof ExperimentStore.open>[1]): ExperimentStore {
  const s = ExperimentStore.open(path, options);
  open.push(s);
  return s;
}
const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** A pid that existed and has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '']);
  expect(r.pid).toBeGreaterThan(0);
  return r.pid!;
}

beforeAll(async () => {
  dir = await testDir('store');
});
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

describe('opening and migrating', () => {
  it('creates the folder, migrates a fresh file, and turns on WAL and foreign keys', () => {
    const path = fresh();
    const s = openStore(path);
    expect(existsSync(path)).toBe(true);
    expect(s.schemaVersion).toBe(SCHEMA_VERSION);
    expect(s.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(s.db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(s.db.pragma('busy_timeout', { simple: true })).toBe(5000);
    expect(s.db.pragma('synchronous', { simple: true })).toBe(1); // NORMAL
    expect(s.db.pragma('application_id', { simple: true })).toBe(APPLICATION_ID);
    const tables = s.db.prepare(`SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name`).pluck().all();
    expect(tables).toEqual(
      ['benchmarks', 'cells', 'chats', 'checkpoints', 'eval_results', 'expansions', 'metrics', 'notebooks', 'run_events', 'runs'].sort(),
    );
  });

  it('reopens idempotently, keeping data', () => {
    const path = fresh();
    const a = openStore(path);
    const id = a.registerCheckpoint({ path: '/m/base', contentHash: 'h', madeBy: 'import' });
    a.close();
    const b = openStore(path);
    expect(b.schemaVersion).toBe(SCHEMA_VERSION);
    expect(b.getCheckpoint(id)?.path).toBe('/m/base');
    b.close();
    const c = openStore(path);
    expect(c.listCheckpoints()).toHaveLength(1);
  });

  it('migrates a version-0 file with no tables (an empty SQLite file)', () => {
    const path = fresh();
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, '');
    const s = openStore(path);
    expect(s.schemaVersion).toBe(SCHEMA_VERSION);
  });

  it('refuses a store written by a newer Blocklab, leaving its bytes alone', () => {
    for (const wal of [false, true]) {
      const path = fresh();
      mkdirSync(join(path, '..'), { recursive: true });
      const raw = new Database(path);
      if (wal) raw.pragma('journal_mode = WAL');
      raw.exec('CREATE TABLE future (x)');
      raw.pragma(`application_id = ${APPLICATION_ID}`);
      raw.pragma(`user_version = ${SCHEMA_VERSION + 5}`);
      raw.close();
      const before = sha(path);
      let err: unknown;
      try {
        openStore(path);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BlocklabError);
      expect((err as Error).message).toBe(
        `${path}: was written by a newer Blocklab (schema ${SCHEMA_VERSION + 5}, this one knows ${SCHEMA_VERSION}); upgrade Blocklab or use another --store`,
      );
      expect(sha(path)).toBe(before);
      expect(existsSync(`${path}-wal`)).toBe(false);
    }
  });

  it('refuses a file that is not a SQLite database, leaving it alone', () => {
    for (const bytes of [Buffer.from('hello, I am a text file\n'), randomBytes(8192)]) {
      const path = fresh();
      mkdirSync(join(path, '..'), { recursive: true });
      writeFileSync(path, bytes);
      expect(() => openStore(path)).toThrow(BlocklabError);
      expect(() => openStore(path)).toThrow(/is not a SQLite database/);
      expect(() => openStore(path, { readonly: true })).toThrow(/is not a SQLite database/);
      expect(readFileSync(path).equals(bytes)).toBe(true);
      expect(existsSync(`${path}-wal`)).toBe(false);
    }
  });

  it("refuses another application's SQLite database, leaving it alone", () => {
    const path = fresh();
    mkdirSync(join(path, '..'), { recursive: true });
    const raw = new Database(path);
    raw.exec('CREATE TABLE runs (whatever)');
    raw.close();
    const before = sha(path);
    expect(() => openStore(path)).toThrow(/is a SQLite database but not a Blocklab store/);
    expect(sha(path)).toBe(before);
  });

  it('refuses a folder and a missing file for read-only', () => {
    const folder = join(dir, 'a-folder');
    mkdirSync(folder, { recursive: true });
    expect(() => openStore(folder)).toThrow(/is a folder/);
    expect(() => openStore(join(dir, 'missing.sqlite'), { readonly: true })).toThrow(/does not exist/);
    expect(existsSync(join(dir, 'missing.sqlite'))).toBe(false);
  });
});

describe('the migration runner', () => {
  // test-only migrations appended after this code's own (N = SCHEMA_VERSION of them)
  const N = SCHEMA_VERSION;
  const v2: Migration = {
    description: 'test-only: a tags table',
    up: `CREATE TABLE tags (run_id INTEGER REFERENCES runs(id), tag TEXT NOT NULL)`,
  };
  let v3Calls = 0;
  const v3: Migration = {
    description: 'test-only: a function migration that rebuilds runs with foreign keys off',
    foreignKeysOff: true,
    up: (db) => {
      v3Calls++;
      db.exec(`ALTER TABLE tags ADD COLUMN note TEXT`);
    },
  };

  it('applies an injected migration to a current database once, and not again', () => {
    const path = fresh();
    openStore(path).close(); // version N on disk
    const db = new Database(path);
    try {
      expect(userVersion(db)).toBe(N);
      const first = migrate(db, [...MIGRATIONS, v2]);
      expect(first).toEqual({ from: N, to: N + 1, applied: [N + 1] });
      expect(db.prepare(`SELECT count(*) FROM sqlite_schema WHERE name = 'tags'`).pluck().get()).toBe(1);
      const second = migrate(db, [...MIGRATIONS, v2]);
      expect(second).toEqual({ from: N + 1, to: N + 1, applied: [] });
    } finally {
      db.close();
    }
    // this code (knowing only N) now refuses the file; code knowing N + 2 migrates it via open()
    expect(() => openStore(path)).toThrow(new RegExp(`schema ${N + 1}, this one knows ${N}`));
    const s = openStore(path, { migrations: [...MIGRATIONS, v2, v3] });
    expect(s.schemaVersion).toBe(N + 2);
    expect(v3Calls).toBe(1);
    expect(s.db.pragma('foreign_keys', { simple: true })).toBe(1); // switched back on
    s.close();
    openStore(path, { migrations: [...MIGRATIONS, v2, v3] });
    expect(v3Calls).toBe(1);
  });

  it('takes a version-0 database through every migration in order', () => {
    const db = new Database(':memory:');
    try {
      expect(migrate(db, [...MIGRATIONS, v2])).toEqual({ from: 0, to: N + 1, applied: Array.from({ length: N + 1 }, (_, i) => i + 1) });
    } finally {
      db.close();
    }
  });

  it('rolls a failing migration back whole, leaving the version where it was', () => {
    const path = fresh();
    openStore(path).close();
    const bad: Migration = { description: 'fails halfway', up: `CREATE TABLE half (x); CREATE TABLE half (x);` };
    expect(() => openStore(path, { migrations: [...MIGRATIONS, bad] })).toThrow();
    const s = openStore(path);
    expect(s.schemaVersion).toBe(N);
    expect(s.db.prepare(`SELECT count(*) FROM sqlite_schema WHERE name = 'half'`).pluck().get()).toBe(0);
  });

  it('v2 gives runs already in a v1 store a status history from their rows', () => {
    const path = fresh();
    mkdirSync(join(path, '..'), { recursive: true });
    const db = new Database(path);
    try {
      migrate(db, MIGRATIONS.slice(0, 1));
      db.exec(`INSERT INTO runs (kind, status, started_at, ended_at, last_step) VALUES ('train', 'cancelled', '2026-01-01T00:00:00Z', '2026-01-01T00:05:00Z', 7)`);
      db.exec(`INSERT INTO runs (kind, status, started_at) VALUES ('eval', 'running', '2026-01-02T00:00:00Z')`);
    } finally {
      db.close();
    }
    const s = openStore(path);
    expect(s.runEvents(1)).toEqual([
      { at: '2026-01-01T00:00:00Z', status: 'running', step: null, note: null },
      { at: '2026-01-01T00:05:00Z', status: 'cancelled', step: 7, note: null },
    ]);
    // the still-running run (its process long gone) got its start, then open() marked it interrupted
    expect(s.runEvents(2).map((e) => e.status)).toEqual(['running', 'interrupted']);
    s.close();
  });
});

describe('checkpoints, expansions and runs', () => {
  it('registers checkpoints once per (path, hash), finds the latest by path', () => {
    const s = openStore(fresh());
    const base = s.registerCheckpoint({ path: '/m/base', contentHash: 'aaa', madeBy: 'import', info: { architecture: 'LlamaForCausalLM', layers: 4, params: 1000, dtype: 'float32' } });
    expect(s.registerCheckpoint({ path: '/m/base', contentHash: 'aaa', madeBy: 'import' })).toBe(base);
    const nullHash = s.registerCheckpoint({ path: '/m/nohash', contentHash: null, madeBy: 'import' });
    expect(s.registerCheckpoint({ path: '/m/nohash', contentHash: null, madeBy: 'import' })).toBe(nullHash);
    const changed = s.registerCheckpoint({ path: '/m/base', contentHash: 'bbb', madeBy: 'import' });
    expect(changed).not.toBe(base);
    expect(s.findCheckpoint('/m/base')?.id).toBe(changed);
    expect(s.findCheckpoint('/m/none')).toBeUndefined();
    const row = s.getCheckpoint(base)!;
    expect(row).toMatchObject({ id: base, path: '/m/base', contentHash: 'aaa', parentId: null, madeBy: 'import', runId: null });
    expect(row.info).toEqual({ architecture: 'LlamaForCausalLM', layers: 4, params: 1000, dtype: 'float32' });
    expect(row.createdAt).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(s.listCheckpoints().map((c) => c.id)).toEqual([base, nullHash, changed]);
    expect(s.getCheckpoint(9999)).toBeUndefined();
  });

  it('records an expansion and reads it back', () => {
    const s = openStore(fresh());
    const base = s.registerCheckpoint({ path: '/m/base', contentHash: 'a', madeBy: 'import' });
    const run = s.createRun({ kind: 'expand', config: { blocks: 2 }, baseCheckpointId: base });
    const expanded = s.registerCheckpoint({ path: '/m/pro', contentHash: 'b', madeBy: 'expand', parentId: base, runId: run });
    const record = expansionRecord(planExpansion(4, { blocks: 2, placement: 'interleave' }), { identity_max_abs_logit_diff: 1.5e-6 });
    const id = s.recordExpansion({ checkpointId: expanded, baseCheckpointId: base, record });
    const e = s.getExpansion(expanded)!;
    expect(e).toMatchObject({ id, checkpointId: expanded, baseCheckpointId: base, placement: 'interleave', identityMaxAbsLogitDiff: 1.5e-6 });
    expect(e.newLayers).toEqual(record.new_layers);
    expect(e.sources).toEqual(record.sources);
    expect(e.record).toEqual(record);
    // recording again for the same checkpoint replaces, not duplicates
    expect(s.recordExpansion({ checkpointId: expanded, baseCheckpointId: base, record })).toBe(id);
    expect(() => s.recordExpansion({ checkpointId: 777, baseCheckpointId: base, record })).toThrow(/FOREIGN KEY/);
  });

  it('creates, updates, heartbeats, finishes and lists runs', () => {
    const s = openStore(fresh());
    const base = s.registerCheckpoint({ path: '/m/base', contentHash: 'a', madeBy: 'import' });
    const id = s.createRun({ kind: 'train', method: 'block-only', config: { lr: 1e-4, steps: 10 }, seed: 7, backend: 'wasm', baseCheckpointId: base, outDir: '/out', totalSteps: 10, name: 'first' });
    const r = s.getRun(id)!;
    expect(r).toMatchObject({ id, kind: 'train', method: 'block-only', status: 'running', config: { lr: 1e-4, steps: 10 }, seed: 7, backend: 'wasm', baseCheckpointId: base, outDir: '/out', pid: process.pid, host: hostname(), totalSteps: 10, name: 'first', endedAt: null, error: null, summary: null });
    expect(r.startedAt).toBe(r.heartbeatAt);

    s.heartbeat(id, 3);
    expect(s.getRun(id)!.lastStep).toBe(3);
    s.heartbeat(id);
    expect(s.getRun(id)!.lastStep).toBe(3);
    s.updateRun(id, { name: 'renamed', summary: { note: 'x' }, lastStep: 5 });
    expect(s.getRun(id)).toMatchObject({ name: 'renamed', summary: { note: 'x' }, lastStep: 5, method: 'block-only' });

    const result = s.registerCheckpoint({ path: '/m/trained', contentHash: 'c', madeBy: 'train', parentId: base, runId: id });
    s.finishRun(id, { status: 'completed', summary: { loss: 1.25 }, resultCheckpointId: result });
    const done = s.getRun(id)!;
    expect(done).toMatchObject({ status: 'completed', summary: { loss: 1.25 }, resultCheckpointId: result, error: null });
    expect(done.endedAt).not.toBeNull();

    const e = s.createRun({ kind: 'eval', config: {} });
    s.finishRun(e, { status: 'failed', error: 'boom' });
    expect(s.getRun(e)).toMatchObject({ status: 'failed', error: 'boom' });
    expect(s.listRuns().map((x) => x.id)).toEqual([e, id]);
    expect(s.listRuns({ kind: 'train' }).map((x) => x.id)).toEqual([id]);
    expect(s.listRuns({ limit: 1 }).map((x) => x.id)).toEqual([e]);

    expect(() => s.updateRun(999, { name: 'x' })).toThrow(BlocklabError);
    expect(() => s.heartbeat(999)).toThrow(/has no run 999/);
    expect(s.getRun(999)).toBeUndefined();
  });

  it('keeps each run\'s status history: started, paused at its step, resumed, failed with the reason', () => {
    const s = openStore(fresh());
    const id = s.createRun({ kind: 'train', config: {}, totalSteps: 40 });
    s.heartbeat(id, 12);
    s.finishRun(id, { status: 'paused', lastStep: 12 });
    s.updateRun(id, { status: 'running', error: null, endedAt: null });
    s.updateRun(id, { name: 'no status change' });
    s.heartbeat(id, 30);
    s.finishRun(id, { status: 'failed', error: 'the training loss became NaN at step 31' });
    const events = s.runEvents(id);
    expect(events.map((e) => [e.status, e.step, e.note])).toEqual([
      ['running', null, null],
      ['paused', 12, null],
      ['running', 12, null],
      ['failed', 30, 'the training loss became NaN at step 31'],
    ]);
    expect(events.every((e) => !Number.isNaN(Date.parse(e.at)))).toBe(true);
    expect(s.getRun(id)!.status).toBe('failed');
  });

  it('enforces foreign keys', () => {
    const s = openStore(fresh());
    let err: unknown;
    try {
      s.createRun({ kind: 'train', config: {}, baseCheckpointId: 42 });
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).toBe('SQLITE_CONSTRAINT_FOREIGNKEY');
    expect(s.listRuns()).toHaveLength(0);
    expect(() => s.registerCheckpoint({ path: '/m/x', contentHash: 'h', madeBy: 'train', parentId: 5 })).toThrow(/FOREIGN KEY/);
    const run = s.createRun({ kind: 'train', config: {} });
    expect(() => s.finishRun(run, { status: 'completed', resultCheckpointId: 123 })).toThrow(/FOREIGN KEY/);
  });
});

describe('interrupted runs', () => {
  it('marks a run whose process is gone and leaves a live one alone', () => {
    const path = fresh();
    const s = openStore(path);
    const live = s.createRun({ kind: 'train', config: {} });
    const dead = s.createRun({ kind: 'train', config: {} });
    const elsewhere = s.createRun({ kind: 'eval', config: {} });
    const finished = s.createRun({ kind: 'train', config: {} });
    const gone = deadPid();
    expect(processExists(gone)).toBe(false);
    expect(processExists(process.pid)).toBe(true);
    s.updateRun(dead, { pid: gone, lastStep: 40 });
    s.updateRun(elsewhere, { host: 'some-other-host', pid: gone });
    s.updateRun(finished, { pid: gone });
    s.finishRun(finished, { status: 'completed' });
    s.close();

    const t = openStore(path); // open() marks
    expect(t.getRun(dead)).toMatchObject({ status: 'interrupted', error: INTERRUPTED_ERROR, lastStep: 40 });
    expect(t.getRun(dead)!.endedAt).toBe(t.getRun(dead)!.heartbeatAt);
    expect(t.getRun(live)).toMatchObject({ status: 'running', error: null, endedAt: null });
    expect(t.getRun(elsewhere)!.status).toBe('running'); // another host cannot be checked
    expect(t.getRun(finished)!.status).toBe('completed');
    expect(t.markInterruptedRuns()).toEqual([]);
    // an injected liveness check decides
    expect(t.markInterruptedRuns(() => false)).toEqual([live, elsewhere]);
    expect(t.listRuns({ status: 'running' })).toEqual([]);
  });

  it('leaves runs alone when opened read-only', () => {
    const path = fresh();
    const s = openStore(path);
    const id = s.createRun({ kind: 'train', config: {} });
    s.updateRun(id, { pid: deadPid() });
    s.close();
    const r = openStore(path, { readonly: true });
    expect(r.getRun(id)!.status).toBe('running');
    expect(() => r.markInterruptedRuns()).toThrow(/read-only/);
  });

  it('processExists refuses pids that address groups', () => {
    expect(processExists(0)).toBe(false);
    expect(processExists(-1)).toBe(false);
    expect(processExists(2 ** 22 + 12345)).toBe(false);
  });
});

describe('metrics', () => {
  it('writes 100k rows in a few transactions, visible only after each flush', () => {
    const s = openStore(fresh());
    const run = s.createRun({ kind: 'train', config: {} });
    const count = () => s.db.prepare('SELECT count(*) FROM metrics WHERE run_id = ?').pluck().get(run) as number;
    const flushed: number[] = [];
    const w = s.metricWriter(run, { maxRows: 10_000, maxDelayMs: 600_000, onFlush: (k) => flushed.push(k) });
    const N = 100_000;
    for (let i = 0; i < 9_999; i++) w.add(i >> 1, i % 2 ? 'loss' : 'lr', i);
    expect(count()).toBe(0); // buffered
    expect(w.stats).toEqual({ flushes: 0, rows: 0, pending: 9_999 });
    w.add(9_999 >> 1, 'loss', 9_999); // the 10 000th row fills the buffer
    expect(count()).toBe(10_000);
    for (let i = 10_000; i < N - 5; i++) w.add(i >> 1, i % 2 ? 'loss' : 'lr', i);
    expect(count()).toBe(90_000);
    for (let i = N - 5; i < N; i++) w.add(i >> 1, i % 2 ? 'loss' : 'lr', i);
    expect(count()).toBe(N);
    w.add(N, 'tail', 1);
    expect(count()).toBe(N);
    w.close();
    expect(count()).toBe(N + 1);
    expect(w.stats).toEqual({ flushes: 11, rows: N + 1, pending: 0 });
    expect(flushed).toEqual([...Array(10).fill(10_000), 1]);
    expect(() => w.add(0, 'x', 0)).toThrow(/closed/);

    const all = s.getMetrics(run);
    expect(all).toHaveLength(N + 1);
    let sorted = true;
    for (let i = 1; i < all.length; i++) sorted &&= all[i].step >= all[i - 1].step;
    expect(sorted).toBe(true);
    const loss = s.getMetrics(run, ['loss']);
    expect(loss).toHaveLength(N / 2);
    expect(loss[0]).toMatchObject({ step: 0, name: 'loss', value: 1 });
    expect(typeof loss[0].wall_time).toBe('number');
    expect(s.metricNames(run)).toEqual(['loss', 'lr', 'tail']);
  });

  it('uses default batches of 500', () => {
    const s = openStore(fresh());
    const run = s.createRun({ kind: 'train', config: {} });
    const w = s.metricWriter(run, { maxDelayMs: 600_000 });
    for (let i = 0; i < 1_250; i++) w.add(i, 'loss', i);
    expect(w.stats).toEqual({ flushes: 2, rows: 1_000, pending: 250 });
    s.close(); // closing the store flushes its writers
    expect(w.stats).toEqual({ flushes: 3, rows: 1_250, pending: 0 });
  });

  it('flushes an idle buffer after maxDelayMs, and on add once the oldest row is that old', async () => {
    const s = openStore(fresh());
    const run = s.createRun({ kind: 'train', config: {} });
    const count = () => s.db.prepare('SELECT count(*) FROM metrics').pluck().get() as number;
    const w = s.metricWriter(run, { maxDelayMs: 20 });
    w.add(0, 'loss', 1);
    expect(count()).toBe(0);
    await new Promise((r) => setTimeout(r, 80));
    expect(count()).toBe(1); // the timer flushed
    const v = s.metricWriter(run, { maxDelayMs: 0 });
    v.add(1, 'loss', 2); // already "old": flushed at once
    expect(count()).toBe(2);
    w.close();
    v.close();
  });

  it('keeps NaN and infinities', () => {
    const s = openStore(fresh());
    const run = s.createRun({ kind: 'train', config: {} });
    const w = s.metricWriter(run);
    w.add(0, 'loss', NaN, 123.5);
    w.add(1, 'loss', Infinity);
    w.add(2, 'loss', -Infinity);
    for (let i = 3; i < 200; i++) w.add(i, 'loss', i % 3 === 0 ? NaN : i); // through the multi-row insert too
    w.close();
    const m = s.getMetrics(run);
    expect(m.slice(0, 3).map((r) => r.value)).toEqual([NaN, Infinity, -Infinity]);
    expect(m.slice(3).map((r) => r.value)).toEqual(Array.from({ length: 197 }, (_, k) => ((k + 3) % 3 === 0 ? NaN : k + 3)));
    expect(m[0].wall_time).toBe(123.5);
  });

  it('refuses a writer for a missing run', () => {
    const s = openStore(fresh());
    expect(() => s.metricWriter(5)).toThrow(/has no run 5/);
  });
});

describe('the read-only SQL cell', () => {
  it('runs reads, returns columns and limited rows, refuses writes', () => {
    const path = fresh();
    const s = openStore(path);
    const run = s.createRun({ kind: 'train', config: { lr: 0.1 }, name: 'r1' });
    const w = s.metricWriter(run);
    for (let i = 0; i < 50; i++) w.add(i, 'loss', 1 / (i + 1));
    w.close();
    s.close();

    const r = openStore(path, { readonly: true });
    expect(r.isReadonly).toBe(true);
    const res = r.query('SELECT id, name, json_extract(config, ?) AS lr FROM runs', ['$.lr']);
    expect(res).toEqual({ columns: ['id', 'name', 'lr'], rows: [[run, 'r1', 0.1]], truncated: false });
    const limited = r.query('SELECT step, value FROM metrics WHERE name = :name ORDER BY step', { name: 'loss' }, { maxRows: 10 });
    expect(limited.rows).toHaveLength(10);
    expect(limited.truncated).toBe(true);
    expect(r.query('WITH x AS (SELECT 1 AS a) SELECT a FROM x').rows).toEqual([[1]]);
    expect(r.query('PRAGMA user_version').rows).toEqual([[SCHEMA_VERSION]]);

    for (const sql of [
      'DELETE FROM metrics',
      `INSERT INTO runs (kind, status) VALUES ('train', 'running')`,
      `UPDATE runs SET name = 'x'`,
      'PRAGMA user_version = 3',
      'DELETE FROM runs RETURNING id',
      'DROP TABLE metrics',
      `ATTACH '${join(dir, 'other.db')}' AS other`,
      'PRAGMA query_only = OFF',
      'PRAGMA journal_mode = DELETE',
      'VACUUM',
    ]) {
      expect(() => r.query(sql), sql).toThrow(/the SQL cell only reads/);
    }
    expect(() => r.query('SELEC 1')).toThrow(/could not be prepared/);
    expect(() => r.query('SELECT 1; DELETE FROM runs')).toThrow(BlocklabError);
    expect(() => r.createRun({ kind: 'train', config: {} })).toThrow(/opened read-only/);
    expect(r.query('SELECT count(*) FROM metrics').rows).toEqual([[50]]);
    expect(r.schemaVersion).toBe(SCHEMA_VERSION);
  });

  it('refuses writes on a read-write store too', () => {
    const s = openStore(fresh());
    s.createRun({ kind: 'train', config: {} });
    expect(() => s.query('DELETE FROM runs RETURNING id')).toThrow(/the SQL cell only reads/);
    expect(s.query('SELECT count(*) AS n FROM runs')).toEqual({ columns: ['n'], rows: [[1]], truncated: false });
  });
});

describe('defaultStorePath', () => {
  it('follows $BLOCKLAB_STORE, then the per-platform user-data folder', () => {
    expect(defaultStorePath({ BLOCKLAB_STORE: '/x/y.sqlite' }, 'linux', '/home/u')).toBe('/x/y.sqlite');
    expect(defaultStorePath({}, 'linux', '/home/u')).toBe('/home/u/.config/blocklab/blocklab.sqlite');
    expect(defaultStorePath({ XDG_CONFIG_HOME: '/cfg' }, 'linux', '/home/u')).toBe('/cfg/blocklab/blocklab.sqlite');
    expect(defaultStorePath({ XDG_CONFIG_HOME: 'relative' }, 'linux', '/home/u')).toBe('/home/u/.config/blocklab/blocklab.sqlite');
    expect(defaultStorePath({}, 'darwin', '/Users/u')).toBe('/Users/u/Library/Application Support/blocklab/blocklab.sqlite');
    expect(defaultStorePath({ APPDATA: 'C:\\Users\\u\\AppData\\Roaming' }, 'win32', 'C:\\Users\\u')).toBe(
      'C:\\Users\\u\\AppData\\Roaming\\blocklab\\blocklab.sqlite',
    );
    expect(defaultStorePath({}, 'win32', 'C:\\Users\\u')).toBe('C:\\Users\\u\\AppData\\Roaming\\blocklab\\blocklab.sqlite');
  });
});
