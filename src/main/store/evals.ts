/**
 * Benchmarks and evaluation results in the experiment store (tables `benchmarks` and
 * `eval_results` of schema v1). Functions that take the store, in the style of its methods:
 * synchronous, JSON columns parsed, rows camelCased. Imports neither tfjs nor Electron.
 *
 * A benchmark row is one task file *with one evaluation setup*: its `name` is the store key
 * NAME@HASH12/Kshot[/limitN][/lenL] (see engine/eval.ts), unique; `content_hash` covers the file,
 * its sidecar and its few-shot split. A result row is one (checkpoint, benchmark, metric).
 */
import { resolve } from 'node:path';
import { BlocklabError } from '../engine/errors.js';
import type { ExperimentStore } from './store.js';

export interface NewBenchmark {
  /** the store key (unique) */
  name: string;
  kind: string;
  domain: string;
  path: string;
  contentHash: string;
  /** JSON-serialisable: display name, role, shots, limit, description, ... */
  info?: Record<string, unknown> | null;
}

export interface BenchmarkRow {
  id: number;
  name: string;
  kind: string | null;
  domain: string | null;
  /** absolute */
  path: string | null;
  contentHash: string | null;
  info: Record<string, unknown> | null;
}

export interface EvalMetricValue {
  metric: string;
  /** NaN is stored as NULL and comes back as null */
  value: number | null;
  stderr: number | null;
  nItems: number;
}

export interface EvalResultRow {
  id: number;
  runId: number | null;
  checkpointId: number;
  benchmarkId: number;
  metric: string;
  value: number | null;
  stderr: number | null;
  nItems: number | null;
  createdAt: string;
}

type Row = Record<string, unknown>;


function benchmarkFromRow(r: Row): BenchmarkRow {
  return {
    id: r.id as number,
    name: r.name as string,
    kind: r.kind as string | null,
    domain: r.domain as string | null,
    path: r.path as string | null,
    contentHash: r.content_hash as string | null,
    info: typeof r.info === 'string' ? (JSON.parse(r.info) as Record<string, unknown>) : null,
  };
}

function resultFromRow(r: Row): EvalResultRow {
  return {
    id: r.id as number,
    runId: r.run_id as number | null,
    checkpointId: r.checkpoint_id as number,
    benchmarkId: r.benchmark_id as number,
    metric: r.metric as string,
    value: r.value as number | null,
    stderr: r.stderr as number | null,
    nItems: r.n_items as number | null,
    createdAt: r.created_at as string,
  };
}

/** SQLite has no NaN and JSON has no ±Infinity: only finite numbers are stored, anything else is NULL. */
function finiteOrNull(v: number | null | undefined): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/**
 * Registers a benchmark (file + setup) under its key and returns its id. A known key keeps its
 * id and gets the latest path and info; a known key with a different content hash is refused
 * (the key embeds the hash, so this means a hash-prefix collision or a hand-edited store).
 */
export function registerBenchmark(store: ExperimentStore, b: NewBenchmark): number {
  store.assertWritable('recording evaluations');
  const db = store.db;
  return db
    .transaction((): number => {
      const existing = db.prepare('SELECT id, content_hash FROM benchmarks WHERE name = ?').get(b.name) as { id: number; content_hash: string | null } | undefined;
      const info = b.info ? JSON.stringify(b.info) : null;
      if (existing) {
        if (existing.content_hash !== null && existing.content_hash !== b.contentHash) {
          throw new BlocklabError(
            `holds benchmark ${b.name} with different contents (hash ${existing.content_hash.slice(0, 12)}…); rename the benchmark in its header`,
            { file: store.path },
          );
        }
        db.prepare('UPDATE benchmarks SET kind = ?, domain = ?, path = ?, content_hash = ?, info = ? WHERE id = ?').run(
          b.kind,
          b.domain,
          resolve(b.path),
          b.contentHash,
          info,
          existing.id,
        );
        return existing.id;
      }
      const r = db
        .prepare('INSERT INTO benchmarks (name, kind, domain, path, content_hash, info) VALUES (?, ?, ?, ?, ?, ?)')
        .run(b.name, b.kind, b.domain, resolve(b.path), b.contentHash, info);
      return Number(r.lastInsertRowid);
    })
    .immediate();
}

export function getBenchmark(store: ExperimentStore, id: number): BenchmarkRow | undefined {
  const r = store.db.prepare('SELECT * FROM benchmarks WHERE id = ?').get(id) as Row | undefined;
  return r && benchmarkFromRow(r);
}

export function findBenchmark(store: ExperimentStore, name: string): BenchmarkRow | undefined {
  const r = store.db.prepare('SELECT * FROM benchmarks WHERE name = ?').get(name) as Row | undefined;
  return r && benchmarkFromRow(r);
}

/** All benchmarks, oldest first. */
export function listBenchmarks(store: ExperimentStore): BenchmarkRow[] {
  return (store.db.prepare('SELECT * FROM benchmarks ORDER BY id').all() as Row[]).map(benchmarkFromRow);
}

/**
 * Stores the metrics of one (checkpoint, benchmark) evaluation in one transaction, replacing
 * earlier values of the same metrics (their run becomes `runId`).
 */
export function saveEvalResults(
  store: ExperimentStore,
  r: { runId: number | null; checkpointId: number; benchmarkId: number; metrics: readonly EvalMetricValue[] },
): void {
  store.assertWritable('recording evaluations');
  const db = store.db;
  const upsert = db.prepare(
    `INSERT INTO eval_results (run_id, checkpoint_id, benchmark_id, metric, value, stderr, n_items, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (checkpoint_id, benchmark_id, metric) DO UPDATE SET
       run_id = excluded.run_id, value = excluded.value, stderr = excluded.stderr,
       n_items = excluded.n_items, created_at = excluded.created_at`,
  );
  const now = new Date().toISOString();
  db.transaction(() => {
    for (const m of r.metrics) {
      upsert.run(r.runId, r.checkpointId, r.benchmarkId, m.metric, finiteOrNull(m.value), finiteOrNull(m.stderr), m.nItems, now);
    }
  }).immediate();
}

/** Result rows matching every given filter, by checkpoint, benchmark, metric. */
export function getEvalResults(store: ExperimentStore, filter: { checkpointId?: number; benchmarkId?: number; runId?: number } = {}): EvalResultRow[] {
  const rows = store.db
    .prepare(
      `SELECT * FROM eval_results
       WHERE (@c IS NULL OR checkpoint_id = @c) AND (@b IS NULL OR benchmark_id = @b) AND (@r IS NULL OR run_id = @r)
       ORDER BY checkpoint_id, benchmark_id, metric`,
    )
    .all({ c: filter.checkpointId ?? null, b: filter.benchmarkId ?? null, r: filter.runId ?? null }) as Row[];
  return rows.map(resultFromRow);
}

/** Removes the results of one (checkpoint, benchmark); returns how many rows went. */
export function deleteEvalResults(store: ExperimentStore, checkpointId: number, benchmarkId: number): number {
  store.assertWritable('recording evaluations');
  return store.db.prepare('DELETE FROM eval_results WHERE checkpoint_id = ? AND benchmark_id = ?').run(checkpointId, benchmarkId).changes;
}
