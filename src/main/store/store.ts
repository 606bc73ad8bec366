/**
 * The experiment store (DESIGN.md §5): one SQLite file, opened with better-sqlite3 in WAL mode
 * with foreign keys on, holding checkpoints, expansions, runs and their metrics (and, later,
 * benchmarks, eval results, notebooks, cells and chats — see schema.ts).
 *
 * Every method is synchronous. JSON columns are serialised on the way in and parsed on the way
 * out; rows come back camelCased. Imports neither tfjs nor Electron.
 */
import Database from 'better-sqlite3';
import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { BlocklabError } from '../engine/errors.js';
import type { ExpansionRecord } from '../../shared/expansion.js';
import { APPLICATION_ID, MIGRATIONS, migrate, newerSchemaError, userVersion, type Migration } from './schema.js';

// ---------------------------------------------------------------------------------------------
// Types

export const CHECKPOINT_MADE_BY = ['import', 'expand', 'train', 'export'] as const;
export type CheckpointMadeBy = (typeof CHECKPOINT_MADE_BY)[number];

export const RUN_KINDS = ['train', 'eval', 'expand', 'export', 'import'] as const;
export type RunKind = (typeof RUN_KINDS)[number];

/** `cancelled`: stopped by a person (resumable for training); `paused`: stopped to be resumed (Pause, --stop-after). */
export const RUN_STATUSES = ['queued', 'running', 'completed', 'failed', 'cancelled', 'paused', 'interrupted'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];
/** The statuses a run can end in. */
export type FinishedRunStatus = Exclude<RunStatus, 'queued' | 'running'>;

/** What a checkpoint's `info` JSON holds; free-form beyond the named fields. */
export interface CheckpointInfo {
  architecture?: string;
  layers?: number;
  params?: number;
  dtype?: string;
  [key: string]: unknown;
}

export interface NewCheckpoint {
  path: string;
  contentHash: string | null;
  parentId?: number | null;
  madeBy: CheckpointMadeBy;
  runId?: number | null;
  info?: CheckpointInfo | null;
}

export interface CheckpointRow {
  id: number;
  /** absolute */
  path: string;
  contentHash: string | null;
  parentId: number | null;
  madeBy: CheckpointMadeBy;
  runId: number | null;
  info: CheckpointInfo | null;
  createdAt: string;
}

export interface NewExpansion {
  /** the expanded checkpoint */
  checkpointId: number;
  baseCheckpointId: number;
  record: ExpansionRecord;
}

export interface ExpansionRow {
  id: number;
  checkpointId: number;
  baseCheckpointId: number;
  placement: string | null;
  newLayers: number[];
  sources: number[];
  record: ExpansionRecord;
  identityMaxAbsLogitDiff: number | null;
  createdAt: string;
}

export interface NewRun {
  kind: RunKind;
  method?: string | null;
  /** JSON-serialisable */
  config: unknown;
  seed?: number | null;
  backend?: string | null;
  baseCheckpointId?: number | null;
  outDir?: string | null;
  totalSteps?: number | null;
  name?: string | null;
}

export interface RunRow {
  id: number;
  kind: RunKind;
  method: string | null;
  status: RunStatus;
  config: unknown;
  backend: string | null;
  seed: number | null;
  baseCheckpointId: number | null;
  resultCheckpointId: number | null;
  outDir: string | null;
  pid: number | null;
  host: string | null;
  /** ISO 8601 UTC */
  startedAt: string | null;
  endedAt: string | null;
  heartbeatAt: string | null;
  lastStep: number | null;
  totalSteps: number | null;
  error: string | null;
  summary: unknown;
  name: string | null;
}

/** The fields updateRun may set (undefined = leave alone, null = clear). */
export type RunUpdate = Partial<Omit<RunRow, 'id' | 'kind'>>;

export interface FinishRun {
  status: FinishedRunStatus;
  /** cleared when not given, so a resumed run that completes carries no stale error */
  error?: string | null;
  summary?: unknown;
  resultCheckpointId?: number | null;
  lastStep?: number | null;
}

/** One change of a run's status (run_events): the run page's status history. */
export interface RunEventRow {
  at: string;
  status: RunStatus;
  step: number | null;
  note: string | null;
}

export interface MetricRow {
  step: number;
  name: string;
  /** NaN comes back as NaN (stored as NULL: SQLite has no NaN) */
  value: number;
  /** seconds since the Unix epoch */
  wall_time: number | null;
}

export interface MetricWriterOptions {
  /** flush when this many rows are buffered (default 500) */
  maxRows?: number;
  /** flush when the oldest buffered row is this old (default 1000 ms); checked on add and by a timer */
  maxDelayMs?: number;
  /** called after each flush that wrote rows, with the number written */
  onFlush?: (rows: number) => void;
}

export interface MetricWriterStats {
  /** transactions committed */
  flushes: number;
  /** rows written */
  rows: number;
  /** rows buffered, not yet written */
  pending: number;
}

export interface MetricWriter {
  /** buffers one row; `wallTime` defaults to now (seconds since the epoch) */
  add(step: number, name: string, value: number, wallTime?: number): void;
  /** writes the buffered rows in one transaction; returns how many */
  flush(): number;
  /** flushes and stops the timer; later adds throw. Idempotent. */
  close(): void;
  readonly stats: Readonly<MetricWriterStats>;
}

export type QueryParams = readonly unknown[] | Record<string, unknown>;

export interface QueryResult {
  columns: string[];
  rows: unknown[][];
  /** more rows existed than maxRows */
  truncated: boolean;
}

/** Whether the process that owns a run is still alive. */
export type IsAlive = (pid: number | null, host: string | null) => boolean;

export interface OpenOptions {
  /** open an existing store read-only: no migration, no interrupted-run marking, query only */
  readonly?: boolean;
  /** decides which 'running' runs are dead at open (default: defaultIsAlive) */
  isAlive?: IsAlive;
  /** @internal tests only: the migration list (default MIGRATIONS) */
  migrations?: readonly Migration[];
}

export const INTERRUPTED_ERROR =
  'the process stopped without finishing (killed or crashed); resume with `blocklab train --resume`';

export const DEFAULT_QUERY_MAX_ROWS = 1000;

/** rows per multi-row INSERT when flushing metrics (5 parameters each, far below SQLite's limit) */
const METRIC_CHUNK = 64;

// ---------------------------------------------------------------------------------------------
// Liveness

/** Whether a process with this pid exists on this machine (EPERM: it exists, owned by someone else). */
export function processExists(pid: number): boolean {
  // pid 0 and negative pids address process groups; they never name a run's process.
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A run on another host cannot be checked from here and counts as alive; one on this host is
 * alive while its pid exists (a reused pid makes a dead run look alive: it is then marked at a
 * later start).
 */
export const defaultIsAlive: IsAlive = (pid, host) => {
  if (host != null && host !== hostname()) return true;
  return pid != null && processExists(pid);
};

// ---------------------------------------------------------------------------------------------
// Row mapping

type Row = Record<string, unknown>;

function toJson(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  return JSON.stringify(value) ?? null;
}

function fromJson(text: unknown): unknown {
  return typeof text === 'string' ? JSON.parse(text) : null;
}

function nowIso(): string {
  return new Date().toISOString();
}

function checkpointFromRow(r: Row): CheckpointRow {
  return {
    id: r.id as number,
    path: r.path as string,
    contentHash: r.content_hash as string | null,
    parentId: r.parent_id as number | null,
    madeBy: r.made_by as CheckpointMadeBy,
    runId: r.run_id as number | null,
    info: fromJson(r.info) as CheckpointInfo | null,
    createdAt: r.created_at as string,
  };
}

function expansionFromRow(r: Row): ExpansionRow {
  return {
    id: r.id as number,
    checkpointId: r.checkpoint_id as number,
    baseCheckpointId: r.base_checkpoint_id as number,
    placement: r.placement as string | null,
    newLayers: (fromJson(r.new_layers) as number[] | null) ?? [],
    sources: (fromJson(r.sources) as number[] | null) ?? [],
    record: fromJson(r.record) as ExpansionRecord,
    identityMaxAbsLogitDiff: r.identity_max_abs_logit_diff as number | null,
    createdAt: r.created_at as string,
  };
}

/** RunRow field → [column, is JSON]. */
const RUN_COLUMNS = {
  method: ['method', false],
  status: ['status', false],
  config: ['config', true],
  backend: ['backend', false],
  seed: ['seed', false],
  baseCheckpointId: ['base_checkpoint_id', false],
  resultCheckpointId: ['result_checkpoint_id', false],
  outDir: ['out_dir', false],
  pid: ['pid', false],
  host: ['host', false],
  startedAt: ['started_at', false],
  endedAt: ['ended_at', false],
  heartbeatAt: ['heartbeat_at', false],
  lastStep: ['last_step', false],
  totalSteps: ['total_steps', false],
  error: ['error', false],
  summary: ['summary', true],
  name: ['name', false],
} as const satisfies Record<keyof RunUpdate, readonly [string, boolean]>;

function runFromRow(r: Row): RunRow {
  return {
    id: r.id as number,
    kind: r.kind as RunKind,
    method: r.method as string | null,
    status: r.status as RunStatus,
    config: fromJson(r.config),
    backend: r.backend as string | null,
    seed: r.seed as number | null,
    baseCheckpointId: r.base_checkpoint_id as number | null,
    resultCheckpointId: r.result_checkpoint_id as number | null,
    outDir: r.out_dir as string | null,
    pid: r.pid as number | null,
    host: r.host as string | null,
    startedAt: r.started_at as string | null,
    endedAt: r.ended_at as string | null,
    heartbeatAt: r.heartbeat_at as string | null,
    lastStep: r.last_step as number | null,
    totalSteps: r.total_steps as number | null,
    error: r.error as string | null,
    summary: fromJson(r.summary),
    name: r.name as string | null,
  };
}

function oneOf<T extends string>(allowed: readonly T[], value: string, what: string): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new Error(`invalid ${what} ${JSON.stringify(value)}: expected one of ${allowed.join(', ')}`);
  }
  return value as T;
}

// ---------------------------------------------------------------------------------------------
// Opening

interface SqliteLikeError {
  code?: string;
  message: string;
}

/** Turns an error from opening or first reading a database into a one-line BlocklabError. */
function openError(file: string, err: unknown): unknown {
  if (err instanceof BlocklabError) return err;
  const code = (err as SqliteLikeError)?.code ?? '';
  const detail = (err as SqliteLikeError)?.message ?? String(err);
  const make = (message: string) => new BlocklabError(message, { file, cause: err });
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return make('is not a SQLite database (or is damaged), so it cannot be a Blocklab store; pass another --store, or move this file away');
  }
  if (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_LOCKED')) {
    return make('is locked by another process (waited 5 s); close the other Blocklab or use another --store');
  }
  if (code.startsWith('SQLITE_READONLY')) {
    return make('cannot be written (read-only file or folder); fix its permissions or use another --store');
  }
  if (code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_IOERR') || code === 'SQLITE_PERM') {
    return make(`cannot be opened (${detail}); check the path and its permissions, or use another --store`);
  }
  if (code.startsWith('SQLITE_')) return make(`cannot be opened as a store (${code}: ${detail}); use another --store`);
  return err;
}

function notAStore(file: string): BlocklabError {
  return new BlocklabError('is a SQLite database but not a Blocklab store; pass another --store (Blocklab creates its own file)', { file });
}

/**
 * Reads the database's identity without writing: refuses another application's database and,
 * unless `allowNewer`, one newer than `known`. Throws whatever SQLite throws for a file that is
 * not a database (the caller turns that into a BlocklabError).
 */
function checkIdentity(db: Database.Database, file: string, known: number, allowNewer: boolean): number {
  const version = userVersion(db); // the first read: SQLITE_NOTADB surfaces here
  const appId = db.pragma('application_id', { simple: true }) as number;
  if (appId !== 0 && appId !== APPLICATION_ID) throw notAStore(file);
  if (version > known && !allowNewer) throw newerSchemaError(file, version, known);
  if (appId === 0) {
    const tables = db.prepare(`SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'`).pluck().get() as number;
    // version 0 and empty: a new file. Anything else without our id was made by someone else.
    if (version > 0 ? version <= known : tables > 0) throw notAStore(file);
  }
  return version;
}

// ---------------------------------------------------------------------------------------------
// The store

export class ExperimentStore {
  /** the database file (absolute), or ':memory:' */
  readonly path: string;
  readonly isReadonly: boolean;
  /**
   * The connection, for store modules that add tables in later versions (notebooks, chats…).
   * Code outside src/main/store should call methods, not SQL.
   */
  readonly db: Database.Database;

  private readonly statements = new Map<string, Database.Statement>();
  private readonly writers = new Set<{ close(): void }>();

  private constructor(db: Database.Database, path: string, isReadonly: boolean) {
    this.db = db;
    this.path = path;
    this.isReadonly = isReadonly;
  }

  /**
   * Opens (creating when needed) the store at `path`. Read-write: creates the parent folder,
   * refuses a file that is not a Blocklab store or that a newer Blocklab wrote (without
   * writing to it), sets WAL / foreign keys / busy timeout / synchronous=NORMAL, migrates to
   * the latest schema and marks runs whose process is gone as interrupted. Read-only: the
   * file must exist; nothing is migrated or marked, and writes are refused.
   */
  static open(path: string, options: OpenOptions = {}): ExperimentStore {
    const file = path === ':memory:' ? path : resolve(path);
    const migrations = options.migrations ?? MIGRATIONS;
    const known = migrations.length;

    if (file !== ':memory:') {
      let st;
      try {
        st = statSync(file);
      } catch {
        st = undefined;
      }
      if (st?.isDirectory()) throw new BlocklabError('is a folder; --store wants a file (e.g. blocklab.sqlite inside it)', { file });
      if (!st && options.readonly) throw new BlocklabError('does not exist; open Blocklab once to create the store, or pass another --store', { file });
      if (!options.readonly) {
        try {
          mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
        } catch (e) {
          throw new BlocklabError(`cannot create its folder (${(e as Error).message}); pass another --store`, { file, cause: e });
        }
        // The store holds the user's experiments, paths and notes: readable by its owner only.
        // SQLite gives the -wal and -shm files the database file's mode.
        try {
          if (!st) closeSync(openSync(file, 'wx', 0o600));
          else if (process.platform !== 'win32' && (st.mode & 0o077) !== 0 && st.uid === process.getuid?.()) chmodSync(file, 0o600);
        } catch {
          // created meanwhile by another process, or not ours to change: SQLite opens it as it is
        }
      }
    }

    let db: Database.Database;
    try {
      db = options.readonly
        ? new Database(file, { readonly: true, fileMustExist: true, timeout: 5000 })
        : new Database(file, { timeout: 5000 });
    } catch (e) {
      throw openError(file, e);
    }

    try {
      // Nothing is written before this check passes.
      checkIdentity(db, file, known, options.readonly === true);
      db.pragma('busy_timeout = 5000');
      if (options.readonly) {
        db.pragma('query_only = ON');
        return new ExperimentStore(db, file, true);
      }
      db.pragma('journal_mode = WAL');
      db.pragma('foreign_keys = ON');
      db.pragma('synchronous = NORMAL');
      migrate(db, migrations, file);
    } catch (e) {
      db.close();
      throw openError(file, e);
    }
    const store = new ExperimentStore(db, file, false);
    try {
      store.markInterruptedRuns(options.isAlive);
    } catch (e) {
      store.close();
      throw openError(file, e);
    }
    return store;
  }

  /** The schema version of the open file. */
  get schemaVersion(): number {
    return userVersion(this.db);
  }

  get isOpen(): boolean {
    return this.db.open;
  }

  /** Flushes every open metric writer and closes the connection. Idempotent. */
  close(): void {
    if (!this.db.open) return;
    let failure: unknown;
    for (const w of [...this.writers]) {
      try {
        w.close();
      } catch (e) {
        failure ??= e; // still close the others and the connection
      }
    }
    if (!this.isReadonly) {
      try {
        this.db.pragma('optimize');
      } catch {
        // best effort
      }
    }
    this.statements.clear();
    this.db.close();
    if (failure !== undefined) throw failure;
  }

  private stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  /** Throws unless the store can be written; `what` names the change (for the store's own, "this change"). */
  assertWritable(what = 'this change'): void {
    if (this.isReadonly) throw new BlocklabError(`was opened read-only; ${what} needs a read-write store`, { file: this.path });
  }

  private noSuchRun(id: number): BlocklabError {
    return new BlocklabError(`has no run ${id}; list runs with \`blocklab runs\``, { file: this.path });
  }

  // --- checkpoints ---------------------------------------------------------------------------

  /** Registers a checkpoint; returns the existing id when (absolute path, content hash) is known. */
  registerCheckpoint(c: NewCheckpoint): number {
    this.assertWritable();
    const madeBy = oneOf(CHECKPOINT_MADE_BY, c.madeBy, 'checkpoint made_by');
    const path = resolve(c.path);
    const hash = c.contentHash ?? null;
    return this.db
      .transaction((): number => {
        // IS, not =: a NULL hash matches a NULL hash (UNIQUE lets NULLs repeat).
        const existing = this.stmt('SELECT id FROM checkpoints WHERE path = ? AND content_hash IS ?').pluck().get(path, hash);
        if (existing !== undefined) return existing as number;
        const info = this.stmt(
          'INSERT INTO checkpoints (path, content_hash, parent_id, made_by, run_id, info, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
        ).run(path, hash, c.parentId ?? null, madeBy, c.runId ?? null, toJson(c.info), nowIso());
        return Number(info.lastInsertRowid);
      })
      .immediate();
  }

  getCheckpoint(id: number): CheckpointRow | undefined {
    const r = this.stmt('SELECT * FROM checkpoints WHERE id = ?').get(id) as Row | undefined;
    return r && checkpointFromRow(r);
  }

  /** The latest registration of `path` (resolved to absolute). */
  findCheckpoint(path: string): CheckpointRow | undefined {
    const r = this.stmt('SELECT * FROM checkpoints WHERE path = ? ORDER BY id DESC LIMIT 1').get(resolve(path)) as Row | undefined;
    return r && checkpointFromRow(r);
  }

  /** All checkpoints, oldest first. */
  listCheckpoints(): CheckpointRow[] {
    return (this.stmt('SELECT * FROM checkpoints ORDER BY id').all() as Row[]).map(checkpointFromRow);
  }

  // --- expansions ----------------------------------------------------------------------------

  /** Records how an expanded checkpoint was made; replaces an earlier record for the same checkpoint. */
  recordExpansion(e: NewExpansion): number {
    this.assertWritable();
    const r = e.record;
    return this.stmt(
      `INSERT INTO expansions (checkpoint_id, base_checkpoint_id, placement, new_layers, sources, record, identity_max_abs_logit_diff, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (checkpoint_id) DO UPDATE SET
         base_checkpoint_id = excluded.base_checkpoint_id, placement = excluded.placement,
         new_layers = excluded.new_layers, sources = excluded.sources, record = excluded.record,
         identity_max_abs_logit_diff = excluded.identity_max_abs_logit_diff
       RETURNING id`,
    )
      .pluck()
      .get(
        e.checkpointId,
        e.baseCheckpointId,
        r.placement ?? null,
        toJson(r.new_layers ?? []),
        toJson(r.sources ?? []),
        toJson(r),
        r.identity_max_abs_logit_diff ?? null,
        nowIso(),
      ) as number;
  }

  /** The expansion that made checkpoint `checkpointId`, if it was made by one. */
  getExpansion(checkpointId: number): ExpansionRow | undefined {
    const r = this.stmt('SELECT * FROM expansions WHERE checkpoint_id = ?').get(checkpointId) as Row | undefined;
    return r && expansionFromRow(r);
  }

  // --- runs ----------------------------------------------------------------------------------

  /** Starts a run owned by this process: status 'running', pid, host, started_at and heartbeat now. */
  createRun(r: NewRun): number {
    this.assertWritable();
    const kind = oneOf(RUN_KINDS, r.kind, 'run kind');
    const now = nowIso();
    const info = this.stmt(
      `INSERT INTO runs (kind, method, status, config, backend, seed, base_checkpoint_id, out_dir, pid, host,
                         started_at, heartbeat_at, total_steps, name)
       VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      kind,
      r.method ?? null,
      toJson(r.config),
      r.backend ?? null,
      r.seed ?? null,
      r.baseCheckpointId ?? null,
      r.outDir ?? null,
      process.pid,
      hostname(),
      now,
      now,
      r.totalSteps ?? null,
      r.name ?? null,
    );
    const id = Number(info.lastInsertRowid);
    this.recordRunEvent(id, 'running', null, null, now);
    return id;
  }

  /** Appends to a run's status history. */
  private recordRunEvent(id: number, status: RunStatus, step: number | null, note: string | null, at = nowIso()): void {
    this.stmt('INSERT INTO run_events (run_id, at, status, step, note) VALUES (?, ?, ?, ?, ?)').run(id, at, status, step, note);
  }

  /** A run's status history, oldest first. */
  runEvents(id: number): RunEventRow[] {
    return (this.stmt('SELECT at, status, step, note FROM run_events WHERE run_id = ? ORDER BY id').all(id) as Row[]).map((r) => ({
      at: r.at as string,
      status: r.status as RunStatus,
      step: r.step as number | null,
      note: r.note as string | null,
    }));
  }

  /** Sets the given fields (undefined ones are left alone). */
  updateRun(id: number, patch: RunUpdate): void {
    this.assertWritable();
    const sets: string[] = [];
    const values: unknown[] = [];
    for (const [key, value] of Object.entries(patch)) {
      if (value === undefined) continue;
      const spec = (RUN_COLUMNS as Record<string, readonly [string, boolean]>)[key];
      if (!spec) throw new Error(`updateRun: unknown field ${JSON.stringify(key)}`);
      if (key === 'status') oneOf(RUN_STATUSES, value as string, 'run status');
      sets.push(`${spec[0]} = ?`);
      values.push(spec[1] ? toJson(value) : value);
    }
    if (sets.length === 0) {
      if (!this.getRun(id)) throw this.noSuchRun(id);
      return;
    }
    const before = patch.status !== undefined ? (this.stmt('SELECT status, last_step FROM runs WHERE id = ?').get(id) as Row | undefined) : undefined;
    const info = this.stmt(`UPDATE runs SET ${sets.join(', ')} WHERE id = ?`).run(...values, id);
    if (info.changes === 0) throw this.noSuchRun(id);
    // a change of status (a resume, how it ended) goes in the run's history
    if (patch.status !== undefined && (before?.status !== patch.status || patch.status === 'running')) {
      const step = patch.lastStep !== undefined ? patch.lastStep : ((before?.last_step as number | null) ?? null);
      this.recordRunEvent(id, patch.status, step, patch.error ?? null);
    }
  }

  /** Ends a run: status, ended_at now, error (cleared unless given), summary / result when given. */
  finishRun(id: number, f: FinishRun): void {
    this.assertWritable();
    const status = oneOf(RUN_STATUSES, f.status, 'run status');
    if (status === 'queued' || status === 'running') throw new Error(`finishRun: ${status} is not a final status`);
    const now = nowIso();
    const patch: RunUpdate = { status, endedAt: now, heartbeatAt: now, error: f.error ?? null };
    if (f.summary !== undefined) patch.summary = f.summary;
    if (f.resultCheckpointId !== undefined) patch.resultCheckpointId = f.resultCheckpointId;
    if (f.lastStep !== undefined) patch.lastStep = f.lastStep;
    this.updateRun(id, patch);
  }

  /** Records that the run is alive, and optionally how far it got. */
  heartbeat(id: number, lastStep?: number): void {
    this.assertWritable();
    const info = this.stmt('UPDATE runs SET heartbeat_at = ?, last_step = coalesce(?, last_step) WHERE id = ?').run(
      nowIso(),
      lastStep ?? null,
      id,
    );
    if (info.changes === 0) throw this.noSuchRun(id);
  }

  getRun(id: number): RunRow | undefined {
    const r = this.stmt('SELECT * FROM runs WHERE id = ?').get(id) as Row | undefined;
    return r && runFromRow(r);
  }

  /** Runs, newest first. */
  listRuns(filter: { kind?: RunKind; status?: RunStatus; limit?: number } = {}): RunRow[] {
    const rows = this.stmt(
      `SELECT * FROM runs WHERE (@kind IS NULL OR kind = @kind) AND (@status IS NULL OR status = @status)
       ORDER BY id DESC LIMIT @limit`,
    ).all({ kind: filter.kind ?? null, status: filter.status ?? null, limit: filter.limit ?? -1 }) as Row[];
    return rows.map(runFromRow);
  }

  /**
   * Marks every 'running' run whose process is gone as 'interrupted' (ended_at = its last
   * heartbeat) and returns their ids. `open()` calls it; call it again to re-check.
   */
  markInterruptedRuns(isAlive: IsAlive = defaultIsAlive): number[] {
    this.assertWritable();
    return this.db
      .transaction((): number[] => {
        const running = this.stmt(`SELECT id, pid, host FROM runs WHERE status = 'running'`).all() as {
          id: number;
          pid: number | null;
          host: string | null;
        }[];
        const dead = running.filter((r) => !isAlive(r.pid, r.host)).map((r) => r.id);
        const mark = this.stmt(
          `UPDATE runs SET status = 'interrupted', error = ?, ended_at = coalesce(heartbeat_at, started_at, ?)
           WHERE id = ? AND status = 'running'`,
        );
        const now = nowIso();
        for (const id of dead) {
          mark.run(INTERRUPTED_ERROR, now, id);
          const r = this.stmt('SELECT ended_at, last_step FROM runs WHERE id = ?').get(id) as Row;
          this.recordRunEvent(id, 'interrupted', (r.last_step as number | null) ?? null, INTERRUPTED_ERROR, (r.ended_at as string | null) ?? now);
        }
        return dead;
      })
      .immediate();
  }

  // --- metrics -------------------------------------------------------------------------------

  /**
   * A buffered writer of (step, name, value) rows for one run: rows are inserted in one
   * transaction per flush, when `maxRows` are buffered or the oldest is `maxDelayMs` old (also
   * checked by an unref'd timer, so an idle run's last rows land). Rows are visible to readers
   * only after a flush. Call close() when the run ends; store.close() closes writers too.
   */
  metricWriter(runId: number, options: MetricWriterOptions = {}): MetricWriter {
    this.assertWritable();
    if (!this.getRun(runId)) throw this.noSuchRun(runId);
    const maxRows = Math.max(1, Math.floor(options.maxRows ?? 500));
    const maxDelayMs = Math.max(0, options.maxDelayMs ?? 1000);
    // Rows go in METRIC_CHUNK at a time (one statement, fewer native calls), the rest one by one.
    const insertOne = this.stmt('INSERT INTO metrics (run_id, step, name, value, wall_time) VALUES (?, ?, ?, ?, ?)');
    const insertChunk = this.stmt(
      `INSERT INTO metrics (run_id, step, name, value, wall_time) VALUES ${Array(METRIC_CHUNK).fill('(?, ?, ?, ?, ?)').join(', ')}`,
    );
    const chunk: unknown[] = new Array(METRIC_CHUNK * 5);
    const writeAll = this.db.transaction((steps: number[], names: string[], values: number[], times: number[]) => {
      const n = steps.length;
      let i = 0;
      for (; i + METRIC_CHUNK <= n; i += METRIC_CHUNK) {
        for (let j = 0, k = 0; j < METRIC_CHUNK; j++) {
          chunk[k++] = runId;
          chunk[k++] = steps[i + j];
          chunk[k++] = names[i + j];
          chunk[k++] = values[i + j];
          chunk[k++] = times[i + j];
        }
        insertChunk.run(chunk);
      }
      for (; i < n; i++) insertOne.run(runId, steps[i], names[i], values[i], times[i]);
    });

    let steps: number[] = [];
    let names: string[] = [];
    let values: number[] = [];
    let times: number[] = [];
    let firstAt = 0;
    let timer: NodeJS.Timeout | undefined;
    let closed = false;
    let failure: unknown;
    const stats: MetricWriterStats = { flushes: 0, rows: 0, pending: 0 };
    const writers = this.writers;

    const rethrow = () => {
      if (failure !== undefined) {
        const f = failure;
        failure = undefined;
        throw f;
      }
    };

    const flush = (): number => {
      if (timer) {
        clearTimeout(timer);
        timer = undefined;
      }
      const n = steps.length;
      if (n === 0) return 0;
      const batch = [steps, names, values, times] as const;
      steps = [];
      names = [];
      values = [];
      times = [];
      stats.pending = 0;
      writeAll(...batch);
      stats.flushes++;
      stats.rows += n;
      options.onFlush?.(n);
      return n;
    };

    const writer: MetricWriter = {
      add(step, name, value, wallTime) {
        if (closed) throw new Error(`metric writer for run ${runId} is closed`);
        rethrow();
        if (steps.length === 0) {
          firstAt = Date.now();
          if (maxDelayMs > 0) {
            timer = setTimeout(() => {
              timer = undefined;
              try {
                flush();
              } catch (e) {
                failure = e; // surfaces at the next add, flush or close
              }
            }, maxDelayMs);
            timer.unref();
          }
        }
        steps.push(step);
        names.push(name);
        values.push(value);
        times.push(wallTime ?? Date.now() / 1000);
        stats.pending = steps.length;
        if (steps.length >= maxRows || Date.now() - firstAt >= maxDelayMs) flush();
      },
      flush() {
        rethrow();
        return flush();
      },
      close() {
        if (closed) return;
        closed = true;
        writers.delete(writer);
        rethrow();
        flush();
      },
      get stats() {
        return stats;
      },
    };
    writers.add(writer);
    return writer;
  }

  /** A run's metrics, by step (then name); `names` restricts to those names. */
  getMetrics(runId: number, names?: readonly string[]): MetricRow[] {
    const rows = (
      names
        ? this.stmt(
            `SELECT step, name, value, wall_time FROM metrics
             WHERE run_id = ? AND name IN (SELECT value FROM json_each(?)) ORDER BY step, name, rowid`,
          ).all(runId, JSON.stringify(names))
        : this.stmt('SELECT step, name, value, wall_time FROM metrics WHERE run_id = ? ORDER BY step, name, rowid').all(runId)
    ) as MetricRow[];
    for (const r of rows) if (r.value === null) r.value = NaN;
    return rows;
  }

  /** Removes every metric row of a run (a re-import writes them anew); returns how many. */
  deleteMetrics(runId: number): number {
    this.assertWritable();
    return this.stmt('DELETE FROM metrics WHERE run_id = ?').run(runId).changes;
  }

  /** The distinct metric names of a run, sorted. */
  metricNames(runId: number): string[] {
    return this.stmt('SELECT DISTINCT name FROM metrics WHERE run_id = ? ORDER BY name').pluck().all(runId) as string[];
  }

  // --- the SQL cell --------------------------------------------------------------------------

  /**
   * Runs one read-only statement (SELECT, WITH …, a read-only PRAGMA) and returns at most
   * `maxRows` rows as arrays in column order. Anything that could change the store — INSERT,
   * UPDATE, DELETE (even with RETURNING), DDL, ATTACH, a PRAGMA that sets — is refused.
   */
  query(sql: string, params: QueryParams = [], options: { maxRows?: number } = {}): QueryResult {
    const maxRows = options.maxRows ?? DEFAULT_QUERY_MAX_ROWS;
    const fail = (what: string, e: unknown) =>
      new BlocklabError(`${what}: ${(e as Error).message ?? String(e)}`.replace(/\s*\n\s*/g, ' '), { file: this.path, cause: e });
    let stmt: Database.Statement;
    try {
      stmt = this.db.prepare(sql);
    } catch (e) {
      throw fail('the query could not be prepared (fix the SQL)', e);
    }
    // reader: it returns rows; readonly: SQLite says it writes nothing (DELETE … RETURNING is a reader, not readonly).
    if (!stmt.reader || !stmt.readonly) {
      throw new BlocklabError(
        'the SQL cell only reads (SELECT, WITH …, read-only PRAGMA); this statement would change the store, so it was not run',
        { file: this.path },
      );
    }
    stmt.raw(true);
    const columns = stmt.columns().map((c) => c.name);
    const rows: unknown[][] = [];
    let truncated = false;
    try {
      const it = Array.isArray(params) ? stmt.iterate(...(params as unknown[])) : stmt.iterate(params);
      for (const row of it as Iterable<unknown[]>) {
        if (rows.length >= maxRows) {
          truncated = true;
          break;
        }
        rows.push(row);
      }
    } catch (e) {
      throw fail('the query failed', e);
    }
    return { columns, rows, truncated };
  }
}
