/**
 * The API of src/shared/api.ts, implemented once for both transports (Electron IPC in
 * src/main/index.ts, the WebSocket in src/main/server). Every request's params are validated
 * with the shared schemas before a handler sees them; handlers answer from the store, read
 * folders, or start jobs — never heavy work on this event loop.
 */
import { existsSync, readFileSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join, parse, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseParams, type ApiMethod, type ApiPush, type ApiResponse, type ApiResults, type AppInfo, type BenchmarkChoice, type CheckpointSummary, type FileEntry, type RunDetail, type RunSummary } from '../../shared/api.js';
import { notebookFileText, parseNotebookFile, NOTEBOOK_FILE_SUFFIX, type Cell } from '../../shared/notebook.js';
import { BlocklabError } from '../engine/errors.js';
import { demoDir } from '../engine/resources.js';
import { EngineQueue } from '../jobs/supervisor.js';
import { checkpointLabel } from '../report/build.js';
import { DEFAULT_QUERY_MAX_ROWS, type CheckpointRow, type ExperimentStore, type RunRow } from '../store/index.js';
import { createNotebook, deleteNotebook, getNotebook, listNotebooks, saveNotebook } from '../store/notebooks.js';
import { JobManager } from './jobs.js';
import { checkBrowsable } from './paths.js';

export interface ApiContext {
  store: ExperimentStore;
  storePath: string;
  mode: 'electron' | 'server';
  /** where the app keeps what it makes (checkpoints, runs, exports) when not told otherwise */
  userDataDir: string;
  /** sends a push to every connected window */
  push(p: ApiPush): void;
  /** how long a SQL cell's query may run (default 10 s) */
  sqlTimeoutMs?: number;
}

export interface Api {
  handle(method: ApiMethod, params: unknown): Promise<unknown>;
  jobs: JobManager;
  close(): void;
}

const SQL_TIMEOUT_MS = 10_000;
const INSPECT_TIMEOUT_MS = 60_000;
const MAX_DIR_ENTRIES = 2000;

/** The app's version from package.json: three folders up from these sources, two from the bundle in out/main. */
function packageVersion(): string {
  for (const rel of ['../../../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(fileURLToPath(new URL(rel, import.meta.url)), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'blocklab' && pkg.version) return pkg.version;
    } catch {
      // try the next place
    }
  }
  return '0.0.0';
}

function runSummary(r: RunRow): RunSummary {
  return {
    id: r.id,
    kind: r.kind,
    name: r.name,
    method: r.method,
    status: r.status,
    config: (r.config ?? null) as Record<string, unknown> | null,
    summary: (r.summary ?? null) as Record<string, unknown> | null,
    error: r.error,
    lastStep: r.lastStep,
    totalSteps: r.totalSteps,
    outDir: r.outDir,
    backend: r.backend,
    startedAt: r.startedAt,
    endedAt: r.endedAt,
    resultCheckpointId: r.resultCheckpointId,
    baseCheckpointId: r.baseCheckpointId,
  };
}

function checkpointSummary(c: CheckpointRow): CheckpointSummary {
  // a trainer's periodic save (run-folder/checkpoint-000040), as opposed to a model someone made
  const intermediate = c.madeBy === 'train' && /^checkpoint-\d+$/.test(basename(c.path));
  return {
    id: c.id,
    path: c.path,
    label: intermediate ? `${basename(dirname(c.path))}/${basename(c.path)}` : checkpointLabel(c.path),
    madeBy: c.madeBy,
    parentId: c.parentId,
    runId: c.runId,
    createdAt: c.createdAt,
    exists: existsSync(join(c.path, 'config.json')),
    intermediate,
  };
}

async function isCheckpointDir(dir: string): Promise<boolean> {
  try {
    const names = await readdir(dir);
    return names.includes('config.json') && names.some((n) => n.endsWith('.safetensors') || n === 'model.safetensors.index.json');
  } catch {
    return false;
  }
}

/** The demo notebook's file with its placeholders filled: {{demo}} (bundled files) and {{work}} (outputs). */
async function demoNotebookCells(work: string): Promise<{ name: string; cells: Cell[] }> {
  const file = join(demoDir(), 'notebook.blocklab.json');
  const text = await readFile(file, 'utf8');
  const esc = (p: string) => JSON.stringify(p).slice(1, -1);
  const filled = text.replaceAll('{{demo}}', esc(demoDir())).replaceAll('{{work}}', esc(work));
  const nb = parseNotebookFile(filled, file);
  return { name: nb.name, cells: nb.cells };
}

/** Checkpoints whose parent chain reaches one of `roots` (not the roots, nor any of `exclude`), oldest first. */
function descendantsOf(all: CheckpointRow[], roots: Set<number>, exclude: CheckpointRow[]): CheckpointRow[] {
  const inside = new Set(roots);
  const skip = new Set(exclude.map((c) => c.id));
  let grew = true;
  while (grew) {
    grew = false;
    for (const c of all) {
      if (!inside.has(c.id) && c.parentId !== null && inside.has(c.parentId)) {
        inside.add(c.id);
        grew = true;
      }
    }
  }
  return all.filter((c) => inside.has(c.id) && !roots.has(c.id) && !skip.has(c.id)).sort((a, b) => a.id - b.id);
}

export function createApi(ctx: ApiContext): Api {
  const { store } = ctx;

  /** A run with its metric curves (all, or the named ones), one point per step. */
  function runDetail(id: number, metrics?: string[]): RunDetail {
    const run = store.getRun(id);
    if (!run) throw new BlocklabError(`there is no run ${id} in the store`);
    const curves: Record<string, [number, number][]> = {};
    // a resumed run may hold two rows for a step: the later one wins
    const byName = new Map<string, Map<number, number>>();
    for (const m of store.getMetrics(id, metrics)) {
      if (!byName.has(m.name)) byName.set(m.name, new Map());
      byName.get(m.name)!.set(m.step, m.value);
    }
    for (const [name, points] of byName) curves[name] = [...points].sort((a, b) => a[0] - b[0]);
    return { ...runSummary(run), curves };
  }
  // Reading a checkpoint's headers trusts nothing in them, but a hostile file can still make that
  // slow (a 100 MB header): it runs in an engine process, never on this event loop.
  const inspectQueue = new EngineQueue({ idleMs: 5 * 60_000, maxWaiting: 32, what: 'checkpoint inspections' });
  const inspect = (path: string) =>
    inspectQueue.run({ kind: 'inspect', model: path }, INSPECT_TIMEOUT_MS, (ms) => `${path}: reading this checkpoint's headers took longer than ${ms / 1000} s and was stopped; are its files on a slow or stuck disk?`);
  const jobs = new JobManager({ store, storePath: ctx.storePath, workDir: ctx.userDataDir, push: ctx.push, inspect });
  const sqlQueue = new EngineQueue({ idleMs: 5 * 60_000, maxWaiting: 32, what: 'queries' });
  const version = packageVersion();
  const policy = { userDataDir: ctx.userDataDir };
  const browsable = (path: string) => {
    try {
      checkBrowsable(path, policy);
      return true;
    } catch {
      return false;
    }
  };

  const handlers: { [M in ApiMethod]: (p: ReturnType<typeof parseParams<M>>) => Promise<ApiResults[M]> | ApiResults[M] } = {
    async 'app.info'() {
      const { initBackend } = await import('../engine/backend.js');
      const { chromiumMissing, chromiumPath } = await import('../report/index.js');
      const { gpuMemory } = await import('../engine/gpu-memory.js');
      let backend: AppInfo['backend'] = { active: null, candidates: [], note: null, webgpuAdapter: null, gpuMemory: null };
      try {
        const r = await initBackend('auto', { diagnose: true });
        backend = {
          active: r.active,
          candidates: r.candidates.map((c) => ({ name: c.name, available: c.available, reason: c.note, install: c.install })),
          note: r.active === 'wasm' || r.active === 'cpu' ? 'running on the CPU; see the GPU backends below for what to install' : null,
          webgpuAdapter: r.webgpuAdapter,
          gpuMemory: r.webgpuAdapter && !r.webgpuAdapter.software ? gpuMemory(r.webgpuAdapter) : null,
        };
      } catch (e) {
        backend.note = `no backend could start: ${(e as Error).message}`;
      }
      const gpuCandidates = backend.candidates.filter((c) => c.name === 'tensorflow-gpu' || c.name === 'webgpu');
      // a software WebGPU adapter (llvmpipe) is available but is not a GPU
      const isGpu = (c: (typeof gpuCandidates)[number]) => c.available && !(c.name === 'webgpu' && backend.webgpuAdapter?.software);
      const gpuOn = gpuCandidates.some(isGpu);
      const chromium = chromiumPath();
      return {
        version,
        mode: ctx.mode,
        storePath: ctx.storePath,
        demoDir: demoDir(),
        userDataDir: ctx.userDataDir,
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
        backend,
        gpu: {
          available: gpuOn,
          detail: gpuOn ? `GPU backend available: ${gpuCandidates.filter(isGpu).map((c) => c.name).join(', ')}` : 'no GPU backend is available; training and chat run on the CPU',
          missing: gpuOn ? [] : gpuCandidates.map((c) => `${c.name}: ${c.reason ?? 'unavailable'}${c.install ? ` — ${c.install}` : ''}`),
        },
        chromium: (await chromiumMissing(chromium)) ? null : chromium,
      };
    },

    'notebooks.list': () => listNotebooks(store),
    'notebooks.get': (p) => getNotebook(store, p.id),
    'notebooks.create': (p) => {
      const nb = createNotebook(store, p.name, p.cells ?? []);
      ctx.push({ type: 'changed', what: 'notebooks' });
      return nb;
    },
    'notebooks.save': (p) => ({ updatedAt: saveNotebook(store, p.id, p.name, p.cells, p.baseUpdatedAt) }),
    'notebooks.delete': (p) => {
      const deleted = deleteNotebook(store, p.id);
      ctx.push({ type: 'changed', what: 'notebooks' });
      return { deleted };
    },
    'notebooks.import': (p) => {
      const file = parseNotebookFile(p.text, p.fileName ?? 'the imported file');
      const nb = createNotebook(store, file.name, file.cells);
      ctx.push({ type: 'changed', what: 'notebooks' });
      return nb;
    },
    'notebooks.export': (p) => {
      const nb = getNotebook(store, p.id);
      const fileName = `${nb.name.replace(/[^\w.-]+/g, '-').replace(/^-+|-+$/g, '') || 'notebook'}${NOTEBOOK_FILE_SUFFIX}`;
      return { fileName, text: notebookFileText(nb) };
    },
    async 'notebooks.demo'(p) {
      if (!p.fresh) {
        const existing = listNotebooks(store).find((n) => n.name === DEMO_NOTEBOOK_NAME);
        if (existing) return getNotebook(store, existing.id);
      }
      const { cells } = await demoNotebookCells(join(ctx.userDataDir, 'demo'));
      const nb = createNotebook(store, DEMO_NOTEBOOK_NAME, cells);
      ctx.push({ type: 'changed', what: 'notebooks' });
      return nb;
    },

    async 'files.list'(p) {
      const dir = resolve(p.dir ?? homedir());
      // the folders a user picks models and data from: not the system's, not hidden ones (~/.ssh)
      checkBrowsable(dir, policy);
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        throw new BlocklabError(code === 'ENOENT' ? 'does not exist' : code === 'ENOTDIR' ? 'is a file, not a folder' : `cannot be read (${code ?? (e as Error).message})`, { file: dir });
      }
      const entries: FileEntry[] = [];
      for (const name of names.filter((n) => !n.startsWith('.')).sort((a, b) => a.localeCompare(b)).slice(0, MAX_DIR_ENTRIES)) {
        const path = join(dir, name);
        if (!browsable(path)) continue;
        let isDir = false;
        try {
          isDir = (await stat(path)).isDirectory();
        } catch {
          continue; // a dangling link
        }
        entries.push({ name, path, isDir, isCheckpoint: isDir && (await isCheckpointDir(path)) });
      }
      entries.sort((a, b) => Number(b.isDir) - Number(a.isDir));
      const parent = dirname(dir) === dir ? null : dirname(dir);
      return {
        dir,
        parent,
        entries,
        roots: [
          { label: 'Home', path: homedir() },
          { label: 'Demo files', path: demoDir() },
          { label: 'Blocklab data', path: ctx.userDataDir },
          { label: parse(dir).root || '/', path: parse(dir).root || '/' },
        ],
      };
    },

    // a folder written again (a re-run expansion) is one entry: its newest registration
    'checkpoints.list': () => {
      const newest = new Map<string, CheckpointRow>();
      for (const c of store.listCheckpoints()) if (!newest.has(c.path) || newest.get(c.path)!.id < c.id) newest.set(c.path, c);
      return [...newest.values()].sort((a, b) => a.id - b.id).map(checkpointSummary);
    },
    async 'checkpoints.descendants'(p) {
      const path = resolve(p.path);
      const all = store.listCheckpoints();
      const here = all.filter((c) => c.path === path);
      const newest = here.sort((a, b) => b.id - a.id)[0];
      let freePath = path;
      for (let i = 2; existsSync(freePath); i++) freePath = `${path}-${i}`;
      return {
        checkpoint: newest ? checkpointSummary(newest) : null,
        descendants: descendantsOf(all, new Set(here.map((c) => c.id)), here).map(checkpointSummary),
        freePath,
      };
    },
    async 'checkpoints.inspect'(p) {
      const path = resolve(p.path);
      const info = await inspect(path);
      const lineage: CheckpointSummary[] = [];
      let row = store.findCheckpoint(path);
      const seen = new Set<number>();
      while (row && !seen.has(row.id)) {
        seen.add(row.id);
        lineage.push(checkpointSummary(row));
        row = row.parentId !== null ? store.getCheckpoint(row.parentId) : undefined;
      }
      return { path, info, lineage };
    },

    async 'checkpoints.plan'(p) {
      const { openCheckpoint, planSummary } = await import('../engine/index.js');
      const { initBackend } = await import('../engine/backend.js');
      // the backend jobs run on here (engine processes pick the same one)
      const report = await initBackend('auto');
      return planSummary(await openCheckpoint(resolve(p.path)), { backend: report.active, method: p.method, batch: p.batch, seq: p.seq });
    },

    async 'benchmarks.list'() {
      const { listBuiltinBenchmarks } = await import('../engine/benchmarks.js');
      const { builtinBenchmarkDir } = await import('../engine/resources.js');
      const names = (await listBuiltinBenchmarks()) ?? [];
      const out: BenchmarkChoice[] = [];
      for (const name of names) {
        let header: Record<string, unknown> = {};
        try {
          header = (JSON.parse(await readFile(join(builtinBenchmarkDir(), `${name}.json`), 'utf8')) as { blocklab_benchmark?: Record<string, unknown> }).blocklab_benchmark ?? {};
        } catch {
          // no sidecar: the engine infers kind and domain when it loads the file
        }
        let items: number | null = null;
        try {
          items = (await readFile(join(builtinBenchmarkDir(), `${name}.jsonl`), 'utf8')).split('\n').filter((l) => l.trim()).length;
        } catch {
          items = null;
        }
        out.push({ ref: `builtin:${name}`, name, kind: String(header.kind ?? ''), domain: String(header.domain ?? ''), role: String(header.role ?? ''), items });
      }
      // evaluations done elsewhere (blocklab import-eval): compared from their stored results
      const { listBenchmarks } = await import('../store/evals.js');
      const imported = new Map<string, BenchmarkChoice>();
      for (const b of listBenchmarks(store)) {
        if (b.info?.source !== 'lm-eval') continue;
        const name = String(b.info.display_name ?? b.name);
        imported.set(name, { ref: `lm-eval:${name}`, name, kind: b.kind ?? '', domain: b.domain ?? '', role: String(b.info.role ?? ''), items: typeof b.info.items === 'number' ? b.info.items : null });
      }
      out.push(...imported.values());
      return out;
    },

    'runs.list': (p) => store.listRuns({ kind: p.kind, limit: p.limit ?? 200 }).map(runSummary),
    'runs.get': (p) => p.ids.map((id) => runDetail(id, p.metrics)),
    'runs.page': (p) => {
      const run = runDetail(p.id);
      const all = store.listCheckpoints();
      const made = all.filter((c) => c.runId === p.id || c.id === run.resultCheckpointId);
      const lineage: CheckpointSummary[] = [];
      const seen = new Set<number>();
      for (let row = run.baseCheckpointId !== null ? store.getCheckpoint(run.baseCheckpointId) : undefined; row && !seen.has(row.id); row = row.parentId !== null ? store.getCheckpoint(row.parentId) : undefined) {
        seen.add(row.id);
        lineage.push(checkpointSummary(row));
      }
      const result = made.filter((c) => !checkpointSummary(c).intermediate);
      return {
        run,
        events: store.runEvents(p.id),
        checkpoints: made.map(checkpointSummary),
        lineage,
        descendants: descendantsOf(all, new Set(result.map((c) => c.id)), made).map(checkpointSummary),
      };
    },

    async 'sql.query'(p) {
      // a second, read-only connection in an engine process kept warm between queries; queries
      // take turns there (never one process each), and a runaway one is killed, never blocks the app
      const request = { kind: 'sql' as const, storePath: ctx.storePath, sql: p.sql, maxRows: p.maxRows ?? DEFAULT_QUERY_MAX_ROWS };
      const limitMs = ctx.sqlTimeoutMs ?? SQL_TIMEOUT_MS;
      return (await sqlQueue.run(request, limitMs, (ms) => `the query took longer than ${ms / 1000} s and was stopped; add a LIMIT or a WHERE`)) as unknown as ApiResults['sql.query'];
    },

    'sql.schema': () => {
      const q = store.query(
        `SELECT m.name, p.name, p.type FROM sqlite_schema m, pragma_table_info(m.name) p
         WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.cid`,
        [],
        { maxRows: 10_000 },
      );
      const tables = new Map<string, { name: string; type: string }[]>();
      for (const [table, column, type] of q.rows as [string, string, string][]) {
        if (!tables.has(table)) tables.set(table, []);
        tables.get(table)!.push({ name: column, type: type || '' });
      }
      return { tables: [...tables].map(([name, columns]) => ({ name, columns })) };
    },

    'jobs.start': (p) => jobs.start(p.job),
    'jobs.cancel': (p) => ({ cancelled: jobs.cancel(p.jobId) }),
    'jobs.pause': (p) => ({ paused: jobs.pause(p.jobId) }),
    'jobs.list': () => jobs.list(),
  };

  return {
    jobs,
    async handle(method, params) {
      const handler = handlers[method] as ((p: unknown) => Promise<unknown> | unknown) | undefined;
      if (!handler) throw new BlocklabError(`unknown API method ${method}`);
      return handler(parseParams(method, params));
    },
    close() {
      jobs.stopAll();
      sqlQueue.close();
      inspectQueue.close();
    },
  };
}

export const DEMO_NOTEBOOK_NAME = 'LLaMA Pro demo';

/** Turns any thrown value into the one line the renderer shows. */
export function errorMessage(e: unknown): string {
  if (e instanceof BlocklabError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

/** The failed response for a thrown value, with what a program may act on (a confirmation to ask for). */
export function errorResponse(id: number, e: unknown): ApiResponse {
  if (e instanceof BlocklabError && e.code) return { id, ok: false, error: e.message, code: e.code, ...(e.file ? { path: e.file } : {}) };
  return { id, ok: false, error: errorMessage(e) };
}
