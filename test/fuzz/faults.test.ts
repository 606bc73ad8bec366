/**
 * Faults and a soak, against real `blocklab serve` processes and their engine processes:
 * - the server SIGKILLed at seeded random moments while notebooks are being saved: the store
 *   passes PRAGMA integrity_check and no acknowledged save is lost;
 * - an engine SIGKILLed at random moments of an expansion and of an HF export: the output folder
 *   is complete or absent, and the run is not left "running";
 * - a training engine SIGKILLed at a random step: the run is interrupted, resumes, and its final
 *   weights equal an uninterrupted run's bit for bit;
 * - a soak of short jobs (chat turns, queries, inspections, saves) through the API: no growth in
 *   the server's memory, open files or engine processes.
 * The desktop app's main process runs this same API and store code; Electron itself cannot run
 * here. BLOCKLAB_SOAK_SCALE multiplies the soak (the long version by hand); BLOCKLAB_FUZZ_SEED
 * picks other kill moments.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoDir } from '../../src/main/engine/resources.js';
import { connectApi, startServe, tinyUi, type ApiSession, type ServeProcess } from '../helpers/serve-process.js';
import { testDir } from '../helpers/tmp.js';
import type { JobEvent } from '../../src/shared/api.js';

const SEED = Number(process.env.BLOCKLAB_FUZZ_SEED ?? 20261202);
const SOAK = Number(process.env.BLOCKLAB_SOAK_SCALE ?? 1);
const BASE = join(demoDir(), 'base-model');
let corpus: string;

let dir: string;
let ui: string;
const servers: ServeProcess[] = [];

/** A seeded LCG in [0, 1): kill moments are random, and the same on every run. */
let state = SEED >>> 0;
const random = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);

beforeAll(async () => {
  dir = await testDir('faults');
  ui = await tinyUi(dir);
  // a small corpus: the faults are the subject here, not the data pipeline
  corpus = join(dir, 'corpus.txt');
  await writeFile(corpus, readFileSync(join(demoDir(), 'corpora', 'code', 'train.jsonl'), 'utf8').slice(0, 12_000));
});

afterAll(async () => {
  for (const s of servers) if (s.alive()) await s.stop();
});

async function serve(store: string): Promise<ServeProcess> {
  const s = await startServe(dir, { ui, store });
  servers.push(s);
  return s;
}

function killHard(s: ServeProcess): Promise<void> {
  return new Promise((resolve) => {
    s.proc.once('exit', () => resolve());
    s.proc.kill('SIGKILL');
  });
}

/** Engine processes of a server (its children), from /proc. */
function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function rss(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
}

const openFiles = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

async function waitForEnd(s: ApiSession, jobId: string, during?: (e: JobEvent) => void): Promise<Extract<JobEvent, { kind: 'done' | 'error' }>> {
  let seen = 0;
  for (let i = 0; i < 3000; i++) {
    const mine = s.pushes.filter((p) => p.type === 'job' && p.jobId === jobId).map((p) => (p as { event: JobEvent }).event);
    for (const e of mine.slice(seen)) during?.(e);
    seen = mine.length;
    const end = mine.find((e) => e.kind === 'done' || e.kind === 'error');
    if (end) return end as Extract<JobEvent, { kind: 'done' | 'error' }>;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`job ${jobId} did not end`);
}

describe('faults', () => {
  it('the server killed (SIGKILL) while notebooks are saved: the store is whole and no acknowledged save is lost', async () => {
    const store = join(dir, 'kill-server.sqlite');
    const results: string[] = [];
    for (let round = 0; round < 2; round++) {
      const server = await serve(store);
      const s = await connectApi(server.port, server.token);
      const nb = (await s.call('notebooks.create', { name: `round ${round}` })) as { ok: true; result: { id: number } };
      let acked = -1;
      let stop = false;
      const writer = (async () => {
        for (let v = 0; !stop; v++) {
          const r = await s.call('notebooks.save', { id: nb.result.id, name: `round ${round}`, cells: [{ id: 'c', kind: 'markdown', source: `version ${v}`, state: { v } }] }).catch(() => null);
          if (!r) return;
          if (r.ok) acked = v;
        }
      })();
      await new Promise((r) => setTimeout(r, 300 + random() * 1500));
      await killHard(server);
      stop = true;
      await writer;
      // reopened: the store passes its integrity check, and holds the last acknowledged version (or a later one)
      const again = await serve(store);
      const t = await connectApi(again.port, again.token);
      const check = (await t.call('sql.query', { sql: 'PRAGMA integrity_check' })) as { ok: true; result: { rows: string[][] } };
      expect(check.result.rows).toEqual([['ok']]);
      const got = (await t.call('notebooks.get', { id: nb.result.id })) as { ok: true; result: { cells: { state: { v: number } }[] } };
      const stored = got.result.cells[0]?.state.v ?? -1;
      expect(stored, `acknowledged ${acked}, stored ${stored}`).toBeGreaterThanOrEqual(acked);
      results.push(`${acked + 1} saves acknowledged, version ${stored} stored`);
      t.ws.close();
      await again.stop();
    }
    console.log(`faults server: 2 SIGKILLs during saves — ${results.join('; ')}; integrity_check ok each time`);
  }, 180_000);

  it('an engine killed at a random moment of an expansion or an HF export leaves its output complete or absent', async () => {
    const server = await serve(join(dir, 'kill-engine.sqlite'));
    const s = await connectApi(server.port, server.token);
    const outcomes: string[] = [];
    for (let k = 0; k < Math.round(2 * SOAK); k++) {
      const out = join(dir, `killed-${k}`);
      const job = k % 2 === 0 ? { kind: 'expand', model: BASE, out, config: { blocks: 2, placement: 'interleave' } } : { kind: 'export-checkpoint', model: BASE, format: 'hf', out };
      const before = new Set(childPids(server.proc.pid!));
      const start = (await s.call('jobs.start', { job })) as { ok: true; result: { jobId: string } };
      expect(start.ok, JSON.stringify(start)).toBe(true);
      // kill the engine that started for this job, at a random moment of its work
      let engines: number[] = [];
      for (let i = 0; i < 200 && engines.length === 0; i++) {
        engines = childPids(server.proc.pid!).filter((p) => !before.has(p));
        await new Promise((r) => setTimeout(r, 25));
      }
      await new Promise((r) => setTimeout(r, random() * 2500));
      for (const p of engines) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // already done
        }
      }
      const end = await waitForEnd(s, start.result.jobId);
      if (existsSync(out)) {
        // complete: marked, with its config and weights
        expect(readdirSync(out)).toEqual(expect.arrayContaining(['.blocklab-output.json', 'config.json', 'model.safetensors']));
        const { openCheckpoint } = await import('../../src/main/engine/checkpoint.js');
        await openCheckpoint(out);
        outcomes.push(`${job.kind}: ${end.kind === 'done' ? 'finished before the kill' : 'killed after the rename'}, complete`);
      } else {
        expect(end.kind).toBe('error');
        outcomes.push(`${job.kind}: killed, absent`);
      }
      const runs = (await s.call('runs.list', {})) as { ok: true; result: { status: string }[] };
      expect(runs.result.filter((r) => r.status === 'running')).toEqual([]);
    }
    console.log(`faults engine: ${outcomes.join('; ')}`);
    s.ws.close();
  }, 240_000);

  it('a training engine killed at a random step: the run resumes and ends bit-identical to an uninterrupted one', async () => {
    const server = await serve(join(dir, 'kill-train.sqlite'));
    const s = await connectApi(server.port, server.token);
    const spec = (out: string) => ({ kind: 'train', train: { model: BASE, data: [corpus], out, method: { kind: 'full' }, steps: 4, lr: 1e-3, batch: 2, seq: 32, saveEvery: 1, evalEvery: 0, seed: 3 } });
    const straight = (await s.call('jobs.start', { job: spec(join(dir, 'straight')) })) as { ok: true; result: { jobId: string } };
    expect((await waitForEnd(s, straight.result.jobId)).kind).toBe('done');

    const killAt = 1 + Math.floor(random() * 3); // after step 1, 2 or 3
    const before = new Set(childPids(server.proc.pid!));
    const started = (await s.call('jobs.start', { job: spec(join(dir, 'killed')) })) as { ok: true; result: { jobId: string; runId: number } };
    const engine = () => childPids(server.proc.pid!).filter((p) => !before.has(p));
    const end = await waitForEnd(s, started.result.jobId, (e) => {
      if (e.kind === 'checkpoint' && e.step === killAt) for (const p of engine()) process.kill(p, 'SIGKILL');
    });
    expect(end.kind).toBe('error');
    const run = (await s.call('runs.get', { ids: [started.result.runId] })) as { ok: true; result: { status: string }[] };
    expect(run.result[0].status).toBe('interrupted');
    const resumed = (await s.call('jobs.start', { job: { kind: 'resume', runId: started.result.runId } })) as { ok: true; result: { jobId: string } };
    expect((await waitForEnd(s, resumed.result.jobId)).kind).toBe('done');

    const { readSafetensorsHeader, readTensorBytes } = await import('../../src/main/engine/safetensors.js');
    const a = await readSafetensorsHeader(join(dir, 'straight', 'model', 'model.safetensors'));
    const b = await readSafetensorsHeader(join(dir, 'killed', 'model', 'model.safetensors'));
    expect([...b.tensors.keys()]).toEqual([...a.tensors.keys()]);
    for (const [name, info] of a.tensors) expect(Buffer.compare(Buffer.from(await readTensorBytes(info)), Buffer.from(await readTensorBytes(b.tensors.get(name)!))), name).toBe(0);
    console.log(`faults training: engine SIGKILLed after the checkpoint of step ${killAt} of 4; resumed; ${a.tensors.size} tensors bit-identical to the uninterrupted run`);
    s.ws.close();
  }, 300_000);
});

describe('soak', () => {
  it('hundreds of short jobs and requests through the API: memory, open files and engine processes stay flat', async () => {
    const server = await serve(join(dir, 'soak.sqlite'));
    const pid = server.proc.pid!;
    const s = await connectApi(server.port, server.token);
    const nb = (await s.call('notebooks.create', { name: 'soak' })) as { ok: true; result: { id: number } };
    const round = async (i: number) => {
      const chat = (await s.call('jobs.start', { job: { kind: 'chat', model: BASE, messages: [{ role: 'user', content: `turn ${i}` }], settings: { maxTokens: 2, useTemplate: false, seed: i } } })) as { ok: true; result: { jobId: string } };
      expect(chat.ok, JSON.stringify(chat)).toBe(true);
      expect((await waitForEnd(s, chat.result.jobId)).kind).toBe('done');
      expect((await s.call('sql.query', { sql: 'SELECT COUNT(*) FROM runs' })).ok).toBe(true);
      expect((await s.call('checkpoints.inspect', { path: BASE })).ok).toBe(true);
      expect((await s.call('notebooks.save', { id: nb.result.id, name: 'soak', cells: [{ id: 'a', kind: 'markdown', source: `# ${i}`, state: {} }] })).ok).toBe(true);
      s.pushes.length = 0;
    };
    for (let i = 0; i < 5; i++) await round(i); // warm: the chat, SQL and inspection engines are up
    const before = { rss: rss(pid), files: openFiles(pid), engines: childPids(pid).length };
    const n = Math.round(25 * SOAK);
    for (let i = 0; i < n; i++) await round(5 + i);
    const after = { rss: rss(pid), files: openFiles(pid), engines: childPids(pid).length };
    console.log(
      `soak: ${n} rounds (${n} chat jobs, ${n} queries, ${n} inspections, ${n} saves: ${4 * n} requests) — server RSS ${(before.rss / 2 ** 20).toFixed(0)} → ${(after.rss / 2 ** 20).toFixed(0)} MiB, open files ${before.files} → ${after.files}, engine processes ${before.engines} → ${after.engines}`,
    );
    expect(after.files - before.files).toBeLessThanOrEqual(4);
    expect(after.engines).toBeLessThanOrEqual(before.engines);
    expect(after.rss - before.rss).toBeLessThan(120 * 2 ** 20);
    expect(server.stderr()).not.toContain('internal error');
    s.ws.close();
  }, 600_000);
});
