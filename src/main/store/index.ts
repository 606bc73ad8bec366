/**
 * The experiment store's public surface (DESIGN.md §5). Runs under plain Node: imports
 * neither tfjs nor Electron.
 */
export {
  ExperimentStore,
  processExists,
  defaultIsAlive,
  CHECKPOINT_MADE_BY,
  RUN_KINDS,
  RUN_STATUSES,
  INTERRUPTED_ERROR,
  DEFAULT_QUERY_MAX_ROWS,
  type CheckpointMadeBy,
  type RunKind,
  type RunStatus,
  type FinishedRunStatus,
  type CheckpointInfo,
  type NewCheckpoint,
  type CheckpointRow,
  type NewExpansion,
  type ExpansionRow,
  type NewRun,
  type RunRow,
  type RunEventRow,
  type RunUpdate,
  type FinishRun,
  type MetricRow,
  type MetricWriter,
  type MetricWriterOptions,
  type MetricWriterStats,
  type QueryParams,
  type QueryResult,
  type IsAlive,
  type OpenOptions,
} from './store.js';
export { MIGRATIONS, SCHEMA_VERSION, APPLICATION_ID, migrate, userVersion, type Migration, type MigrateResult } from './schema.js';
export { defaultStorePath, userDataFolder, STORE_FILE_NAME } from './paths.js';
