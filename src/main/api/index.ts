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
import { parseParams, type ApiMethod, type ApiPush, type ApiResults, type AppInfo, type BenchmarkChoice, type CheckpointSummary, type FileEntry, type RunDetail, type RunSummary } from '../../shared/api.js';
import { notebookToFile, parseNotebookFile, NOTEBOOK_FILE_SUFFIX, type Cell } from '../../shared/notebook.js';
import { BlocklabError } from '../engine/errors.js';
import { demoDir } from '../engine/resources.js';
import { EngineWorker, runEngineTask } from '../jobs/supervisor.js';
import { checkpointLabel } from '../report/build.js';
import { DEFAULT_QUERY_MAX_ROWS, type CheckpointRow, type ExperimentStore, type RunRow } from '../store/index.js';
import { createNotebook, deleteNotebook, getNotebook, listNotebooks, saveNotebook } from '../store/notebooks.js';
import { JobManager } from './jobs.js';

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

export function createApi(ctx: ApiContext): Api {
  const { store } = ctx;
  const jobs = new JobManager({ store, storePath: ctx.storePath, workDir: ctx.userDataDir, push: ctx.push });
  const sqlEngine = new EngineWorker({ keepAlive: true, idleMs: 5 * 60_000 });
  const version = packageVersion();

  const handlers: { [M in ApiMethod]: (p: ReturnType<typeof parseParams<M>>) => Promise<ApiResults[M]> | ApiResults[M] } = {
    async 'app.info'() {
      const { initBackend } = await import('../engine/backend.js');
      const { chromiumMissing, chromiumPath } = await import('../report/index.js');
      let backend: AppInfo['backend'] = { active: null, candidates: [], note: null };
      try {
        const r = await initBackend('auto');
        backend = {
          active: r.active,
          candidates: r.candidates.map((c) => ({ name: c.name, available: c.available, reason: c.note, install: c.install })),
          note: r.active === 'wasm' || r.active === 'cpu' ? 'running on the CPU; see the GPU backends below for what to install' : null,
        };
      } catch (e) {
        backend.note = `no backend could start: ${(e as Error).message}`;
      }
      const gpuCandidates = backend.candidates.filter((c) => c.name === 'tensorflow-gpu' || c.name === 'webgpu');
      const gpuOn = gpuCandidates.some((c) => c.available);
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
          detail: gpuOn ? `GPU backend available: ${gpuCandidates.filter((c) => c.available).map((c) => c.name).join(', ')}` : 'no GPU backend is available; training and chat run on the CPU',
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
      return { fileName, text: JSON.stringify(notebookToFile(nb), null, 2) + '\n' };
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
    async 'checkpoints.inspect'(p) {
      const { inspectCheckpoint } = await import('../engine/index.js');
      const path = resolve(p.path);
      const info = (await inspectCheckpoint(path)) as unknown as Record<string, unknown>;
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
      return out;
    },

    'runs.list': (p) => store.listRuns({ kind: p.kind, limit: p.limit ?? 200 }).map(runSummary),
    'runs.get': (p) => {
      const out: RunDetail[] = [];
      for (const id of p.ids) {
        const run = store.getRun(id);
        if (!run) throw new BlocklabError(`there is no run ${id} in the store`);
        const curves: Record<string, [number, number][]> = {};
        // a resumed run may hold two rows for a step: the later one wins
        const byName = new Map<string, Map<number, number>>();
        for (const m of store.getMetrics(id, p.metrics)) {
          if (!byName.has(m.name)) byName.set(m.name, new Map());
          byName.get(m.name)!.set(m.step, m.value);
        }
        for (const [name, points] of byName) curves[name] = [...points].sort((a, b) => a[0] - b[0]);
        out.push({ ...runSummary(run), curves });
      }
      return out;
    },

    async 'sql.query'(p) {
      // a second, read-only connection in an engine process (kept warm between queries): a
      // runaway query is killed, never blocks the app
      const request = { kind: 'sql' as const, storePath: ctx.storePath, sql: p.sql, maxRows: p.maxRows ?? DEFAULT_QUERY_MAX_ROWS };
      const task = sqlEngine.busy ? runEngineTask(request) : sqlEngine.run(request);
      let timer: NodeJS.Timeout | undefined;
      const limitMs = ctx.sqlTimeoutMs ?? SQL_TIMEOUT_MS;
      const timedOut = new Promise<null>((resolveTimeout) => (timer = setTimeout(() => resolveTimeout(null), limitMs)));
      const o = await Promise.race([task.done, timedOut]);
      clearTimeout(timer);
      if (o === null) {
        task.kill('SIGKILL');
        throw new BlocklabError(`the query took longer than ${limitMs / 1000} s and was stopped; add a LIMIT or a WHERE`);
      }
      if (!o.ok) throw new BlocklabError(o.error);
      return o.result as unknown as ApiResults['sql.query'];
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
      sqlEngine.close();
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
