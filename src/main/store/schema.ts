/**
 * The experiment store's schema, as an ordered list of migrations.
 *
 * `PRAGMA user_version` is the number of migrations applied: MIGRATIONS[i] takes a database
 * from version i to version i + 1, in one transaction (its SQL and the version bump commit
 * together or not at all). To change the schema, APPEND a migration — never edit one that
 * has shipped, since databases in the wild have already run it.
 *
 * Enumerations (runs.kind, runs.status, checkpoints.made_by) are checked in TypeScript, not
 * with SQL CHECK constraints: SQLite cannot alter a CHECK without rebuilding the table, and a
 * new run kind should be a one-line change.
 */
import type Database from 'better-sqlite3';
import { BlocklabError } from '../engine/errors.js';

export interface Migration {
  /** what the migration does, for people reading the code or an error */
  readonly description: string;
  /** SQL (may hold several statements) or a function given the open connection */
  readonly up: string | ((db: Database.Database) => void);
  /**
   * Set for migrations that rebuild tables (create new, copy, drop old, rename): foreign keys
   * are switched off around the transaction, as SQLite's ALTER TABLE guide prescribes, and
   * `PRAGMA foreign_key_check` must come back empty before the transaction commits.
   */
  readonly foreignKeysOff?: boolean;
}

/** Marks the file as a Blocklab store ('BLab'); an unrelated SQLite file has 0 or another id. */
export const APPLICATION_ID = 0x424c6162;

const ISO_NOW = `(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))`;

const V1 = `
PRAGMA application_id = ${APPLICATION_ID};

CREATE TABLE runs (
  id                   INTEGER PRIMARY KEY,
  kind                 TEXT NOT NULL,            -- train | eval | expand | export | import
  method               TEXT,
  status               TEXT NOT NULL,            -- queued | running | completed | failed | cancelled | interrupted (| paused, v2)
  config               TEXT,                     -- JSON
  backend              TEXT,
  seed                 INTEGER,
  base_checkpoint_id   INTEGER REFERENCES checkpoints(id),
  result_checkpoint_id INTEGER REFERENCES checkpoints(id),
  out_dir              TEXT,
  pid                  INTEGER,
  host                 TEXT,
  started_at           TEXT,
  ended_at             TEXT,
  heartbeat_at         TEXT,
  last_step            INTEGER,
  total_steps          INTEGER,
  error                TEXT,
  summary              TEXT,                     -- JSON
  name                 TEXT
);
CREATE INDEX runs_kind ON runs(kind, id);
CREATE INDEX runs_status ON runs(status);

CREATE TABLE checkpoints (
  id           INTEGER PRIMARY KEY,
  path         TEXT NOT NULL,
  content_hash TEXT,
  parent_id    INTEGER REFERENCES checkpoints(id),
  made_by      TEXT NOT NULL,                    -- import | expand | train | export
  run_id       INTEGER REFERENCES runs(id),
  info         TEXT,                             -- JSON: architecture, layers, params, dtype
  created_at   TEXT NOT NULL DEFAULT ${ISO_NOW},
  UNIQUE (path, content_hash)
);
CREATE INDEX checkpoints_parent ON checkpoints(parent_id);

CREATE TABLE expansions (
  id                          INTEGER PRIMARY KEY,
  checkpoint_id               INTEGER NOT NULL UNIQUE REFERENCES checkpoints(id),
  base_checkpoint_id          INTEGER NOT NULL REFERENCES checkpoints(id),
  placement                   TEXT,
  new_layers                  TEXT,              -- JSON number[]
  sources                     TEXT,              -- JSON number[]
  record                      TEXT,              -- JSON: the whole expansion record
  identity_max_abs_logit_diff REAL,
  created_at                  TEXT NOT NULL DEFAULT ${ISO_NOW}
);
CREATE INDEX expansions_base ON expansions(base_checkpoint_id);

CREATE TABLE metrics (
  run_id    INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step      INTEGER NOT NULL,
  name      TEXT NOT NULL,
  value     REAL,                                -- NULL stands for NaN (SQLite has no NaN)
  wall_time REAL                                 -- seconds since the Unix epoch
);
CREATE INDEX metrics_run_name_step ON metrics(run_id, name, step);

CREATE TABLE benchmarks (
  id           INTEGER PRIMARY KEY,
  name         TEXT NOT NULL UNIQUE,
  kind         TEXT,
  domain       TEXT,
  path         TEXT,
  content_hash TEXT,
  info         TEXT                              -- JSON
);

CREATE TABLE eval_results (
  id            INTEGER PRIMARY KEY,
  run_id        INTEGER REFERENCES runs(id) ON DELETE SET NULL,
  checkpoint_id INTEGER NOT NULL REFERENCES checkpoints(id),
  benchmark_id  INTEGER NOT NULL REFERENCES benchmarks(id),
  metric        TEXT NOT NULL,
  value         REAL,
  stderr        REAL,
  n_items       INTEGER,
  created_at    TEXT NOT NULL DEFAULT ${ISO_NOW},
  UNIQUE (checkpoint_id, benchmark_id, metric)
);
CREATE INDEX eval_results_run ON eval_results(run_id);
CREATE INDEX eval_results_benchmark ON eval_results(benchmark_id);

CREATE TABLE notebooks (
  id         INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  created_at TEXT NOT NULL DEFAULT ${ISO_NOW},
  updated_at TEXT NOT NULL DEFAULT ${ISO_NOW}
);

CREATE TABLE cells (
  id          INTEGER PRIMARY KEY,
  notebook_id INTEGER NOT NULL REFERENCES notebooks(id) ON DELETE CASCADE,
  position    REAL NOT NULL,                     -- REAL so a cell can go between two others
  kind        TEXT NOT NULL,
  source      TEXT,
  state       TEXT                               -- JSON
);
CREATE INDEX cells_notebook ON cells(notebook_id, position);

CREATE TABLE chats (
  id            INTEGER PRIMARY KEY,
  checkpoint_id INTEGER REFERENCES checkpoints(id),
  title         TEXT,
  messages      TEXT,                            -- JSON
  settings      TEXT,                            -- JSON
  created_at    TEXT NOT NULL DEFAULT ${ISO_NOW}
);
CREATE INDEX chats_checkpoint ON chats(checkpoint_id);
`;

/**
 * v2: a run's status history (started, paused, stopped, resumed, finished, interrupted) for the
 * run page; existing runs get what their row knows: when they started and how they ended.
 */
const V2 = `
CREATE TABLE run_events (
  id      INTEGER PRIMARY KEY,
  run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  at      TEXT NOT NULL,
  status  TEXT NOT NULL,                         -- the run's status from this moment on
  step    INTEGER,                               -- how far it had got
  note    TEXT
);
CREATE INDEX run_events_run ON run_events(run_id, id);
INSERT INTO run_events (run_id, at, status, step)
  SELECT id, coalesce(started_at, ${ISO_NOW}), 'running', NULL FROM runs;
INSERT INTO run_events (run_id, at, status, step, note)
  SELECT id, ended_at, status, last_step, error FROM runs WHERE ended_at IS NOT NULL AND status NOT IN ('queued', 'running');
`;

export const MIGRATIONS: readonly Migration[] = [
  { description: 'v1: checkpoints, expansions, runs, metrics, benchmarks, eval results, notebooks, cells, chats', up: V1 },
  { description: 'v2: run_events, the status history of each run', up: V2 },
];

/** The schema version this code writes and understands. */
export const SCHEMA_VERSION = MIGRATIONS.length;

export function userVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/** The one-line refusal for a database made by a newer Blocklab. */
export function newerSchemaError(file: string, found: number, known: number): BlocklabError {
  return new BlocklabError(
    `was written by a newer Blocklab (schema ${found}, this one knows ${known}); upgrade Blocklab or use another --store`,
    { file },
  );
}

export interface MigrateResult {
  from: number;
  to: number;
  /** the versions reached by the migrations this call applied, in order */
  applied: number[];
}

/**
 * Brings `db` up to `migrations.length`, one migration per transaction. Safe against a second
 * process migrating at the same time: each step takes the write lock (BEGIN IMMEDIATE) and
 * re-reads the version, so a step already done by someone else is skipped. Refuses a
 * database newer than `migrations` without writing to it.
 */
export function migrate(db: Database.Database, migrations: readonly Migration[] = MIGRATIONS, file = db.name): MigrateResult {
  const target = migrations.length;
  const from = userVersion(db);
  if (from > target) throw newerSchemaError(file, from, target);
  const applied: number[] = [];
  for (;;) {
    const peek = userVersion(db);
    if (peek >= target) break;
    const fkOff = migrations[peek].foreignKeysOff === true;
    if (fkOff) db.pragma('foreign_keys = OFF'); // a no-op inside a transaction, so before it
    try {
      const reached = db
        .transaction((): number | null => {
          const v = userVersion(db);
          if (v > target) throw newerSchemaError(file, v, target);
          if (v === target) return null;
          const m = migrations[v];
          if (typeof m.up === 'string') db.exec(m.up);
          else m.up(db);
          if (m.foreignKeysOff) {
            const bad = db.pragma('foreign_key_check') as unknown[];
            if (bad.length > 0) {
              throw new Error(`migration to schema ${v + 1} (${m.description}) left ${bad.length} broken foreign keys`);
            }
          }
          db.pragma(`user_version = ${v + 1}`);
          return v + 1;
        })
        .immediate();
      if (reached === null) break;
      applied.push(reached);
    } finally {
      if (fkOff) db.pragma('foreign_keys = ON');
    }
  }
  return { from, to: userVersion(db), applied };
}
