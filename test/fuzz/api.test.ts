/**
 * Fuzz: the app's API and its WebSocket, against a real `blocklab serve` process (fast-check,
 * seeded, bounded). Every request — any method, random or hostile params — gets one answer
 * with its id; every frame — random bytes, binary, broken JSON, deep nesting — gets an answer
 * or closes only its own socket (1007/1009); the server never dies, never logs an internal
 * error, and its memory does not run away. Its working folder is a temporary one, so relative
 * paths a request names land there.
 *
 * BLOCKLAB_FUZZ_SEED / BLOCKLAB_FUZZ_SCALE as in inputs.test.ts.
 */
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { API_METHODS, type ApiResponse } from '../../src/shared/api.js';
import { demoDir } from '../../src/main/engine/resources.js';
import { connectApi, startServe, type ApiSession, type ServeProcess } from '../helpers/serve-process.js';
import { testDir } from '../helpers/tmp.js';

const SEED = Number(process.env.BLOCKLAB_FUZZ_SEED ?? 20261202);
const SCALE = Number(process.env.BLOCKLAB_FUZZ_SCALE ?? 1);
const runs = (n: number) => Math.max(1, Math.round(n * SCALE));
const HANG_MS = 30_000;

let dir: string;
let server: ServeProcess;
const BASE = join(demoDir(), 'base-model');

beforeAll(async () => {
  dir = await testDir('fuzz-api');
  const work = join(dir, 'cwd');
  await mkdir(work);
  server = await startServe(dir, { cwd: work });
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

/** Resident memory of the server process, in bytes (Linux). */
function serverRss(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${server.proc.pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

function expectHealthy(): void {
  expect(server.alive(), `the server died:\n${server.stderr().slice(-3000)}`).toBe(true);
  expect(server.stderr()).not.toContain('internal error');
}

/** A call with a hang detector. */
async function call(s: ApiSession, method: string, params: unknown): Promise<ApiResponse> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${method} did not answer in ${HANG_MS} ms: ${JSON.stringify(params).slice(0, 300)}`)), HANG_MS)));
  try {
    return await Promise.race([s.call(method, params), hang]);
  } finally {
    clearTimeout(timer);
  }
}

const nasty: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, -1, 0, 1, 1e308, 2 ** 53, 0.5, '', 'x', [], {}, '../../etc', '/etc/passwd', '/dev/zero', '/proc/self/mem', '~/.ssh', '\u0000', 'a'.repeat(5000)),
  fc.integer(),
  fc.string({ maxLength: 12 }),
  fc.array(fc.string({ maxLength: 4 }), { maxLength: 3 }),
);
const path = fc.oneof(fc.constantFrom(BASE, demoDir(), '/', '/etc', '/proc', '/dev', '~', '.', '..', 'relative/x', '/nonexistent', join(BASE, 'config.json')), fc.string({ maxLength: 20 }));
const cell = fc.record({ id: fc.oneof(fc.stringMatching(/^[a-z]{1,6}$/), nasty), kind: fc.oneof(fc.constantFrom('markdown', 'sql', 'model', 'chat'), nasty), source: fc.oneof(fc.string({ maxLength: 40 }), nasty), state: fc.oneof(fc.dictionary(fc.constantFrom('__id', 'x', 'path'), nasty, { maxKeys: 2 }), nasty) }, { requiredKeys: [] });

/** Params shaped like each method's, with hostile values; and some with nothing of the shape. */
const paramsFor: Record<string, fc.Arbitrary<unknown>> = {
  'notebooks.get': fc.record({ id: nasty }),
  'notebooks.create': fc.record({ name: fc.oneof(fc.string({ maxLength: 8 }), nasty), cells: fc.oneof(fc.array(cell, { maxLength: 3 }), nasty) }, { requiredKeys: [] }),
  'notebooks.save': fc.record({ id: fc.oneof(fc.integer({ min: 0, max: 5 }), nasty), name: fc.oneof(fc.string({ minLength: 1, maxLength: 8 }), nasty), cells: fc.oneof(fc.array(cell, { maxLength: 3 }), nasty), baseUpdatedAt: nasty }, { requiredKeys: [] }),
  'notebooks.delete': fc.record({ id: fc.oneof(fc.integer({ min: 1000, max: 2000 }), nasty) }),
  'notebooks.import': fc.record({ text: fc.oneof(fc.string({ maxLength: 40 }), fc.constant('{"format":"blocklab-notebook","version":1,"name":"n","cells":[{"id":"a","kind":"sql","source":"","state":{"__id":"../x"}}]}'), nasty), fileName: nasty }, { requiredKeys: [] }),
  'notebooks.export': fc.record({ id: nasty }),
  'files.list': fc.record({ dir: fc.oneof(path, nasty) }, { requiredKeys: [] }),
  'checkpoints.inspect': fc.record({ path: fc.oneof(path, nasty) }),
  'runs.list': fc.record({ kind: nasty, limit: nasty }, { requiredKeys: [] }),
  'runs.get': fc.record({ ids: fc.oneof(fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 3 }), nasty), metrics: nasty }, { requiredKeys: [] }),
  'sql.query': fc.record({ sql: fc.oneof(fc.constantFrom('SELECT 1', 'DELETE FROM runs', 'PRAGMA writable_schema=1', "ATTACH '/tmp/x' AS x", 'SELECT * FROM runs', 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 1000) SELECT sum(x) FROM c', 'SELECT zeroblob(1e9)', 'SELECT load_extension("x")', 'VACUUM'), fc.string({ maxLength: 20 }), nasty), maxRows: nasty }, { requiredKeys: [] }),
  'jobs.start': fc.record({
    job: fc.oneof(
      fc.record({ kind: fc.constant('expand'), model: fc.oneof(path, nasty), out: fc.oneof(fc.constantFrom('/etc/x', '.hidden/x', 'out-a'), nasty), config: fc.oneof(fc.record({ blocks: nasty, placement: nasty }, { requiredKeys: [] }), nasty), overwrite: nasty }, { requiredKeys: ['kind'] }),
      fc.record({ kind: fc.constant('eval'), checkpoints: fc.oneof(fc.array(path, { maxLength: 2 }), nasty), benchmarks: fc.oneof(fc.array(fc.oneof(path, fc.constantFrom('builtin:nope', 'builtin:../../x')), { maxLength: 2 }), nasty), limit: nasty }, { requiredKeys: ['kind'] }),
      fc.record({ kind: fc.constant('export-report'), runIds: fc.oneof(fc.array(fc.integer({ min: 0, max: 9 }), { maxLength: 2 }), nasty), formats: fc.oneof(fc.constant(['html']), nasty), out: fc.oneof(fc.constantFrom('/etc/r', '.x/r', 'r1'), nasty), compare: nasty }, { requiredKeys: ['kind'] }),
      fc.record({ kind: fc.constant('export-checkpoint'), model: fc.oneof(path, nasty), format: fc.oneof(fc.constantFrom('hf', 'gguf'), nasty), out: fc.oneof(fc.constantFrom('/usr/x.gguf', 'e1'), nasty) }, { requiredKeys: ['kind'] }),
      fc.record({ kind: fc.constant('chat'), model: fc.oneof(path, nasty), messages: fc.oneof(fc.array(fc.record({ role: fc.oneof(fc.constantFrom('user', 'system'), nasty), content: fc.oneof(fc.string({ maxLength: 10 }), nasty) }), { maxLength: 2 }), nasty), settings: fc.oneof(fc.record({ maxTokens: fc.oneof(fc.integer({ min: 1, max: 2 }), nasty), temperature: nasty }, { requiredKeys: [] }), nasty) }, { requiredKeys: ['kind'] }),
      // well-formed jobs too, so the fuzz also runs (and then cancels) real ones
      fc.integer({ min: 0, max: 1e6 }).map((n) => ({ kind: 'expand', model: BASE, out: `expanded-${n}`, config: { blocks: 2, placement: 'top' } })),
      fc.string({ maxLength: 20 }).map((content) => ({ kind: 'chat', model: BASE, messages: [{ role: 'user', content: content || 'hi' }], settings: { maxTokens: 2, useTemplate: false } })),
      fc.record({ kind: fc.constant('resume'), runId: nasty }),
      fc.record({ kind: nasty }),
    ),
  }),
  'jobs.cancel': fc.record({ jobId: nasty }),
  'jobs.pause': fc.record({ jobId: nasty }),
};

describe('fuzz: the API of a running server', () => {
  it('answers every request, whatever its params, with its id and ok or an error', async () => {
    const s = await connectApi(server.port, server.token);
    const methods = [...Object.keys(API_METHODS), 'fs.rm', '__proto__', 'constructor', ''];
    const request = fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom(...Object.keys(paramsFor)).chain((m) => paramsFor[m].map((params) => ({ method: m, params }))) },
      { weight: 1, arbitrary: fc.record({ method: fc.constantFrom(...methods), params: nasty }) },
    );
    const inputs = fc.sample(request, { numRuns: runs(250), seed: SEED });
    const rss0 = serverRss();
    let ok = 0;
    let refused = 0;
    const started: string[] = [];
    for (const [i, r] of inputs.entries()) {
      const answer = await call(s, r.method, r.params);
      expect(typeof answer.ok, `#${i} ${JSON.stringify(r).slice(0, 300)}`).toBe('boolean');
      if (answer.ok) {
        ok++;
        const jobId = (answer.result as { jobId?: string } | null)?.jobId;
        if (r.method === 'jobs.start' && jobId) started.push(jobId);
      } else {
        refused++;
        expect(answer.error, `#${i}`).toMatch(/\S/);
        expect(answer.error.length).toBeLessThan(4000);
      }
      if (i % 50 === 0) expectHealthy();
    }
    for (const jobId of started) await call(s, 'jobs.cancel', { jobId });
    expectHealthy();
    const grew = serverRss() - rss0;
    console.log(`fuzz api: ${inputs.length} requests, ${ok} answered ok, ${refused} refused, ${started.length} jobs started (cancelled), server RSS ${(rss0 / 2 ** 20).toFixed(0)} → ${(serverRss() / 2 ** 20).toFixed(0)} MiB`);
    expect(grew).toBeLessThan(400 * 2 ** 20);
    s.ws.close();
  }, 600_000);

  it('survives any frame: random bytes, binary, broken or deep JSON; only the sender’s socket closes', async () => {
    const frame = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((b) => ({ data: Buffer.from(b), binary: false })),
      fc.uint8Array({ maxLength: 200 }).map((b) => ({ data: Buffer.from(b), binary: true })),
      fc.string({ maxLength: 100 }).map((t) => ({ data: Buffer.from(t), binary: false })),
      fc.record({ id: fc.oneof(fc.integer(), fc.double(), nasty), method: nasty, params: nasty }, { requiredKeys: [] }).map((o) => ({ data: Buffer.from(JSON.stringify(o)), binary: false })),
      fc.integer({ min: 1, max: 200_000 }).map((d) => ({ data: Buffer.from('['.repeat(d) + ']'.repeat(d)), binary: false })),
      fc.integer({ min: 1, max: 50_000 }).map((d) => ({ data: Buffer.from(`{"id":1,"method":"notebooks.create","params":{"name":"n","cells":[{"id":"a","kind":"sql","source":"","state":${'{"a":'.repeat(d)}1${'}'.repeat(d)}}]}}`), binary: false })),
    );
    const inputs = fc.sample(frame, { numRuns: runs(200), seed: SEED + 1 });
    const bystander = await connectApi(server.port, server.token);
    let answered = 0;
    let closed = 0;
    let ws: WebSocket | null = null;
    const open = async () => {
      const s = new WebSocket(`ws://127.0.0.1:${server.port}/api`, ['blocklab', `blocklab-token.${server.token}`]);
      s.on('error', () => undefined);
      await new Promise((r, j) => {
        s.once('open', r);
        s.once('unexpected-response', () => j(new Error('refused')));
      });
      return s;
    };
    for (const [i, f] of inputs.entries()) {
      ws ??= await open();
      const s = ws;
      const outcome = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`frame #${i} got no answer and no close in ${HANG_MS} ms`)), HANG_MS);
        s.on('message', (m) => {
          const r = JSON.parse(String(m)) as ApiResponse & { push?: unknown };
          if (r.push) return; // a store-changed hint meant for every window, not the answer
          clearTimeout(timer);
          resolve(typeof r.ok === 'boolean' && typeof r.id === 'number' ? 'answered' : `bad answer ${String(m).slice(0, 200)}`);
        });
        s.once('close', (code) => {
          clearTimeout(timer);
          resolve(`closed ${code}`);
        });
        s.send(f.data, { binary: f.binary });
      });
      s.removeAllListeners('message');
      s.removeAllListeners('close');
      if (outcome === 'answered') answered++;
      else {
        expect(outcome, `frame #${i}`).toMatch(/^closed (1007|1009|1002)$/);
        closed++;
        ws = null;
      }
    }
    ws?.close();
    expect((await call(bystander, 'notebooks.list', {})).ok).toBe(true);
    expectHealthy();
    console.log(`fuzz frames: ${inputs.length} frames, ${answered} answered, ${closed} closed their socket (1007/1009/1002), the other socket unaffected`);
    bystander.ws.close();
  }, 600_000);

  it('a notebook file on disk with a hostile name or content is imported or refused, and the store stays whole', async () => {
    const s = await connectApi(server.port, server.token);
    const text = JSON.stringify({ format: 'blocklab-notebook', version: 1, name: '<img src=x onerror=alert(1)>', cells: [{ id: 'a', kind: 'markdown', source: '<svg onload=alert(1)>', state: {} }] });
    await writeFile(join(dir, 'n.blocklab.json'), text);
    const r = await call(s, 'notebooks.import', { text, fileName: '../../../etc/passwd' });
    expect(r.ok).toBe(true);
    const integrity = (await call(s, 'sql.query', { sql: 'PRAGMA integrity_check' })) as { ok: true; result: { rows: string[][] } };
    expect(integrity.result.rows).toEqual([['ok']]);
    s.ws.close();
  });
});
