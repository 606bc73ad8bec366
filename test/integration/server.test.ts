/**
 * `blocklab serve`'s guard and the API behind it, over a real socket: the token is required for
 * the page, its assets (through a per-port cookie that is not the token) and the WebSocket (as a
 * subprotocol); a foreign Host or Origin is refused; API requests are
 * validated; notebooks round-trip; the SQL cell reads and never writes. The UI here is a
 * two-file folder, so this runs without the renderer build (the browser tests use the real one).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RENDERER_CSP } from '../../src/shared/security.js';
import { serve, type RunningServer } from '../../src/main/server/index.js';
import { ExperimentStore } from '../../src/main/store/index.js';
import { testDir } from '../helpers/tmp.js';
import type { ApiPush } from '../../src/shared/api.js';
import { connectApi, startServe } from '../helpers/serve-process.js';
import { englishText } from '../helpers/corpus.js';
import { expandModel, makeTinyCheckpoint } from '../../src/main/engine/index.js';

let dir: string;
let store: ExperimentStore;
let server: RunningServer;

beforeAll(async () => {
  dir = await testDir('server');
  const ui = join(dir, 'ui');
  await mkdir(join(ui, 'assets'), { recursive: true });
  await writeFile(join(ui, 'index.html'), '<!doctype html><title>Blocklab</title><p>ui</p>');
  await writeFile(join(ui, 'assets', 'app.js'), 'console.log(1)');
  await writeFile(join(dir, 'secret.txt'), 'do not serve');
  store = ExperimentStore.open(join(dir, 'store.sqlite'));
  server = await serve({ store, storePath: join(dir, 'store.sqlite'), userDataDir: dir, port: 0, rendererDir: ui, sqlTimeoutMs: 3000 });
});

afterAll(async () => {
  await server?.close();
  store?.close();
});

const base = () => `http://127.0.0.1:${server.port}`;

/** One WebSocket API session (a null token: none offered). */
const connect = (url = `ws://127.0.0.1:${server.port}/api`, headers: Record<string, string> = {}, token: string | null = server.token) => connectApi(server.port, token, headers, url);

describe('the token guard', () => {
  it('refuses the page, its assets and files outside the UI folder without the token', async () => {
    expect((await fetch(`${base()}/`)).status).toBe(403);
    expect((await fetch(`${base()}/assets/app.js`)).status).toBe(403);
    expect((await fetch(`${base()}/?token=wrong${server.token.slice(5)}`)).status).toBe(403);
    const page = await fetch(`${base()}/?token=${server.token}`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<p>ui</p>');
    expect(page.headers.get('content-security-policy')).toContain(RENDERER_CSP);
    // the page's assets load with the cookie it set, and only with it; the cookie is named for
    // this port and is not the token (browsers send 127.0.0.1's cookies to every port)
    const cookie = page.headers.get('set-cookie')!.split(';')[0];
    expect(cookie).toMatch(new RegExp(`^blocklab_page_${server.port}=[0-9a-f]{64}$`));
    expect(cookie).not.toContain(server.token);
    expect((await fetch(`${base()}/assets/app.js`, { headers: { cookie } })).status).toBe(200);
    expect((await fetch(`${base()}/assets/app.js`, { headers: { cookie: `blocklab_page_${server.port}=nope` } })).status).toBe(403);
    // and what the cookie holds opens the page only, never the API
    await expect(connect(undefined, {}, cookie.split('=')[1])).rejects.toThrow();
    const escape = await fetch(`${base()}/..%2Fsecret.txt?token=${server.token}`);
    expect(escape.status).toBe(404);
  });

  it('refuses a WebSocket without the token, from another origin, or for another host name', async () => {
    await expect(connect(undefined, {}, null)).rejects.toThrow(/403|Unexpected server response/);
    await expect(connect(undefined, {}, 'x')).rejects.toThrow();
    // the token is never taken from the URL (where logs and histories keep it)
    await expect(connect(`ws://127.0.0.1:${server.port}/api?token=${server.token}`, {}, null)).rejects.toThrow();
    await expect(connect(undefined, { origin: 'https://evil.example' })).rejects.toThrow();
    await expect(connect(undefined, { host: `evil.example:${server.port}` })).rejects.toThrow();
    const ok = await connect(undefined, { origin: base() });
    ok.ws.close();
  });

  it('refuses the page for a foreign Host header (DNS rebinding)', async () => {
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: server.port, path: `/?token=${server.token}`, headers: { host: `rebind.example:${server.port}` } }, (res) => resolve(res.statusCode ?? 0));
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(403);
  });
});

describe('starting', () => {
  it('says what to do when the port is taken or the UI is not built', async () => {
    await expect(serve({ store, storePath: join(dir, 'store.sqlite'), userDataDir: dir, port: server.port, rendererDir: join(dir, 'ui') })).rejects.toThrow(
      new RegExp(`port ${server.port} is in use.*--port 0`),
    );
    await expect(serve({ store, storePath: join(dir, 'store.sqlite'), userDataDir: dir, port: 0, rendererDir: join(dir, 'nothing') })).rejects.toThrow(/not built; run `npm run build`/);
  });
});

describe('blocklab serve (the command)', () => {
  it('prints the URL (one JSON document with --json), serves it, and stops cleanly on SIGTERM', async () => {
    const { spawn } = await import('node:child_process');
    const { REPO_ROOT } = await import('../helpers/cli-runner.js');
    const proc = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'blocklab.mjs'), '--store', join(dir, 'cli.sqlite'), 'serve', '--port', '0', '--ui', join(dir, 'ui'), '--json'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      proc.stdout!.setEncoding('utf8').on('data', (c: string) => {
        out += c;
        if (out.includes('\n')) resolve(out.split('\n')[0]);
      });
      proc.once('exit', (code) => reject(new Error(`serve exited ${code}`)));
    });
    const doc = JSON.parse(line) as { url: string; port: number; store: string };
    expect(doc.url).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${doc.port}/\\?token=[0-9a-f]{48}$`));
    expect(doc.store).toBe(join(dir, 'cli.sqlite'));
    expect((await fetch(doc.url)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${doc.port}/`)).status).toBe(403);
    const code = await new Promise<number | null>((resolve) => {
      proc.once('exit', (c) => resolve(c));
      proc.kill('SIGTERM');
    });
    expect(code).toBe(0);
  }, 60_000);
});

describe('blocklab serve and its jobs', () => {
  it('Ctrl-C stops serving only after its running training job has written a checkpoint of the step it was on', async () => {
    const base = join(dir, 'serve-base');
    const model = join(dir, 'serve-expanded');
    await makeTinyCheckpoint(base, { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64 });
    await expandModel(base, { blocks: 1 }, { out: model });
    const corpus = join(dir, 'serve-corpus.txt');
    await writeFile(corpus, englishText(12_000));
    const serveDir = join(dir, 'serve-jobs');
    await mkdir(serveDir, { recursive: true });
    const proc = await startServe(serveDir);
    const storePath = proc.store;
    const exited = new Promise<number | null>((resolve) => {
      if (!proc.alive()) resolve(proc.proc.exitCode);
      else proc.proc.once('exit', (c) => resolve(c));
    });
    const session = await connectApi(proc.port, proc.token);
    const out = join(dir, 'serve-run');
    const firstStep = new Promise<void>((resolve) => {
      session.ws.on('message', (data) => {
        const m = JSON.parse(String(data)) as { push?: ApiPush };
        if (m.push?.type === 'job' && m.push.event.kind === 'step') resolve();
      });
    });
    const started = (await session.call('jobs.start', {
      job: { kind: 'train', train: { model, data: [corpus], method: { kind: 'blocks' }, steps: 5000, lr: 1e-3, batch: 2, seq: 32, out } },
    })) as { ok: boolean; result: { runId: number } };
    expect(started.ok).toBe(true);
    await firstStep;
    proc.proc.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(proc.stderr()).toContain('stopping: running jobs write a checkpoint first');

    const store2 = ExperimentStore.open(storePath);
    try {
      const run = store2.getRun(started.result.runId)!;
      expect(run.status).toBe('cancelled');
      expect(run.lastStep).toBeGreaterThanOrEqual(1);
      expect(run.lastStep).toBeLessThan(5000);
      const state = JSON.parse(await readFile(join(out, `checkpoint-${String(run.lastStep).padStart(6, '0')}`, 'trainer_state.json'), 'utf8'));
      expect(state.step).toBe(run.lastStep);
    } finally {
      store2.close();
    }
  }, 120_000);
});

describe('the API', () => {
  it('validates requests and says what was wrong', async () => {
    const { ws, call } = await connect();
    const bad = await call('notebooks.get', { id: 'one' });
    expect(bad.ok).toBe(false);
    expect(!bad.ok && bad.error).toMatch(/notebooks\.get.*id/);
    const unknown = await call('fs.delete', {});
    expect(unknown.ok).toBe(false);
    ws.send('not json');
    const still = await call('notebooks.list');
    expect(still.ok).toBe(true);
    ws.close();
  });

  it('creates the demo notebook on the bundled files, saves, exports and re-imports it', async () => {
    const { ws, call, pushes } = await connect();
    const demo = await call('notebooks.demo');
    expect(demo.ok).toBe(true);
    const nb = (demo as { result: { id: number; name: string; cells: { id: string; kind: string; state: Record<string, unknown> }[] } }).result;
    expect(nb.cells.map((c) => c.kind)).toEqual(expect.arrayContaining(['markdown', 'model', 'expansion', 'train', 'eval', 'chat', 'compare', 'sql']));
    const model = nb.cells.find((c) => c.kind === 'model')!;
    // the placeholders became real folders
    await expect(readFile(join(String(model.state.path), 'config.json'), 'utf8')).resolves.toContain('hidden_size');
    // the same demo notebook is reopened, not duplicated
    const again = (await call('notebooks.demo')) as { result: { id: number } };
    expect(again.result.id).toBe(nb.id);

    const cells = [...nb.cells, { id: 'extra', kind: 'markdown', source: '# added', state: {} }];
    expect((await call('notebooks.save', { id: nb.id, name: 'Renamed', cells })).ok).toBe(true);
    const got = (await call('notebooks.get', { id: nb.id })) as { result: { name: string; cells: { id: string; source: string }[] } };
    expect(got.result.name).toBe('Renamed');
    expect(got.result.cells.at(-1)).toMatchObject({ id: 'extra', source: '# added' });

    const exported = (await call('notebooks.export', { id: nb.id })) as { result: { fileName: string; text: string } };
    expect(exported.result.fileName).toBe('Renamed.blocklab.json');
    const imported = (await call('notebooks.import', { text: exported.result.text })) as { ok: boolean; result: { id: number; cells: unknown[] } };
    expect(imported.ok).toBe(true);
    expect(imported.result.id).not.toBe(nb.id);
    expect(imported.result.cells).toEqual(got.result.cells);
    expect(pushes.some((p) => p.type === 'changed' && p.what === 'notebooks')).toBe(true);
    ws.close();
  });

  it('rejects an invalid notebook file with a message that says where', async () => {
    const { ws, call } = await connect();
    const cases: [string, RegExp][] = [
      ['{ not json', /not valid JSON/],
      [JSON.stringify({ format: 'jupyter', version: 1, name: 'x', cells: [] }), /format.*not a Blocklab notebook/],
      [JSON.stringify({ format: 'blocklab-notebook', version: 1, name: 'x', cells: [{ id: 'a', kind: 'shell', source: 'rm -rf /', state: {} }] }), /cells\.0\.kind/],
      [JSON.stringify({ format: 'blocklab-notebook', version: 1, name: 'x', cells: [{ id: 'a', kind: 'sql', source: '', state: {} }, { id: 'a', kind: 'sql', source: '', state: {} }] }), /same id/],
    ];
    const before = ((await call('notebooks.list')) as { result: unknown[] }).result.length;
    for (const [text, message] of cases) {
      const r = await call('notebooks.import', { text, fileName: 'bad.blocklab.json' });
      expect(r.ok).toBe(false);
      expect(!r.ok && r.error).toMatch(message);
      expect(!r.ok && r.error).toContain('bad.blocklab.json');
    }
    expect(((await call('notebooks.list')) as { result: unknown[] }).result.length).toBe(before);
    ws.close();
  });

  it('runs read-only SQL on a second connection and refuses writes, leaving the store as it was', async () => {
    const { ws, call } = await connect();
    const r = (await call('sql.query', { sql: 'SELECT name FROM notebooks ORDER BY id' })) as { ok: boolean; result: { columns: string[]; rows: unknown[][] }; error?: string };
    expect(r.ok, r.error).toBe(true);
    expect(r.result.columns).toEqual(['name']);
    expect(r.result.rows.length).toBeGreaterThan(0);
    const snapshot = async () => {
      const q = async (sql: string) => ((await call('sql.query', { sql })) as { ok: boolean; result: { rows: unknown[][] } }).result.rows;
      return {
        notebooks: await q('SELECT id, name, updated_at FROM notebooks ORDER BY id'),
        tables: await q("SELECT name, sql FROM sqlite_master ORDER BY name"),
        userVersion: await q('PRAGMA user_version'),
        databases: await q('PRAGMA database_list'),
      };
    };
    const before = await snapshot();
    const refused = /the SQL cell only reads \(SELECT, WITH …, read-only PRAGMA\); this statement would change the store, so it was not run/;
    const writes: [string, RegExp][] = [
      ['DELETE FROM notebooks', refused],
      ["UPDATE notebooks SET name = 'x'", refused],
      ["INSERT INTO notebooks (name) VALUES ('y')", refused],
      ['DROP TABLE runs', refused],
      ['CREATE TABLE t (x)', refused],
      ["ATTACH 'x.db' AS x", refused],
      ['PRAGMA user_version = 5', refused],
      ['WITH x AS (SELECT 1) DELETE FROM notebooks', refused],
      ['SELECT 1; DELETE FROM notebooks', /more than one statement/],
    ];
    for (const [sql, message] of writes) {
      const w = await call('sql.query', { sql });
      expect(w.ok, sql).toBe(false);
      expect(!w.ok && w.error, sql).toMatch(message);
    }
    // nothing changed: same rows, same schema, same version, nothing attached, no file made
    expect(await snapshot()).toEqual(before);
    expect(before.notebooks.length).toBeGreaterThan(0);
    await expect(readFile(join(dir, 'x.db'))).rejects.toThrow(/ENOENT/);
    ws.close();
  });

  it('stops a runaway query, and the next one runs', async () => {
    const { ws, call } = await connect();
    // never ends by itself: only the limit can answer this call (no clock is read here)
    const forever = await call('sql.query', { sql: 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c' });
    expect(!forever.ok && forever.error).toMatch(/took longer than 3 s and was stopped/);
    // the killed engine is replaced on the next query
    const next = (await call('sql.query', { sql: 'SELECT 42' })) as { ok: boolean; result: { rows: number[][] } };
    expect(next.ok, JSON.stringify(next)).toBe(true);
    expect(next.result.rows).toEqual([[42]]);
    ws.close();
  }, 30_000);

  it('lists folders, marking checkpoints, and explains a missing one', async () => {
    const { ws, call } = await connect();
    const info = (await call('app.info')) as { result: { demoDir: string; backend: { active: string } } };
    expect(info.result.backend.active).toBeTruthy();
    const list = (await call('files.list', { dir: info.result.demoDir })) as { result: { entries: { name: string; isCheckpoint: boolean }[] } };
    expect(list.result.entries.find((e) => e.name === 'base-model')?.isCheckpoint).toBe(true);
    expect(list.result.entries.find((e) => e.name === 'corpora')?.isCheckpoint).toBe(false);
    const missing = await call('files.list', { dir: join(dir, 'nope') });
    expect(!missing.ok && missing.error).toMatch(/nope: does not exist/);
    ws.close();
  });
});
