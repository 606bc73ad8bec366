/**
 * The app's long work through its API, as a Train/Eval/Chat cell drives it: each job runs in a
 * real engine process on the bundled demo model, streams its events as pushes, and ends in the
 * store. Expand → train (pause, resume) → eval against the base → chat → exports.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiParams, ApiPush, JobEvent, JobResult } from '../../src/shared/api.js';
import { createApi, type Api } from '../../src/main/api/index.js';
import { demoDir } from '../../src/main/engine/resources.js';
import { ExperimentStore } from '../../src/main/store/index.js';
import { testDir } from '../helpers/tmp.js';

let dir: string;
let store: ExperimentStore;
let api: Api;
const listeners = new Set<(p: ApiPush) => void>();

beforeAll(async () => {
  dir = await testDir('app-jobs');
  store = ExperimentStore.open(join(dir, 'store.sqlite'));
  api = createApi({ store, storePath: join(dir, 'store.sqlite'), mode: 'server', userDataDir: dir, push: (p) => listeners.forEach((l) => l(p)) });
});

afterAll(() => {
  api?.close();
  store?.close();
});

interface Finished {
  events: JobEvent[];
  end: Extract<JobEvent, { kind: 'done' | 'error' }>;
  runId: number | null;
}

/** Starts a job and collects its events until it ends; `during` sees each event as it comes. */
async function runJob(job: ApiParams<'jobs.start'>['job'], during?: (e: JobEvent, jobId: string) => void): Promise<Finished> {
  const events: JobEvent[] = [];
  let jobId = '';
  const early: { jobId: string; event: JobEvent }[] = [];
  let resolveEnd!: (e: Finished['end']) => void;
  const ended = new Promise<Finished['end']>((r) => (resolveEnd = r));
  const onEvent = (e: JobEvent) => {
    events.push(e);
    during?.(e, jobId);
    if (e.kind === 'done' || e.kind === 'error') resolveEnd(e);
  };
  const listener = (p: ApiPush) => {
    if (p.type !== 'job') return;
    if (!jobId) early.push({ jobId: p.jobId, event: p.event });
    else if (p.jobId === jobId) onEvent(p.event);
  };
  listeners.add(listener);
  const started = (await api.handle('jobs.start', { job })) as { jobId: string; runId: number | null };
  jobId = started.jobId;
  for (const x of early) if (x.jobId === jobId) onEvent(x.event);
  const end = await ended;
  listeners.delete(listener);
  return { events, end, runId: started.runId };
}

function result<K extends JobResult['kind']>(f: Finished, kind: K): Extract<JobResult, { kind: K }> {
  if (f.end.kind === 'error') throw new Error(`job failed: ${f.end.message}`);
  expect(f.end.result.kind).toBe(kind);
  return f.end.result as Extract<JobResult, { kind: K }>;
}

const base = () => join(demoDir(), 'base-model');

describe('jobs through the app API', () => {
  let expanded = '';
  let trained = '';
  let runId = 0;

  it('expands the demo model with an identity check and records its lineage', async () => {
    const f = await runJob({ kind: 'expand', model: base(), out: join(dir, 'expanded'), config: { blocks: 2, placement: 'interleave' } });
    const r = result(f, 'expand');
    expect(r.totalLayers).toBe(r.originalLayers + 2);
    expect(r.identity.maxAbsLogitDiff).toBe(0);
    expanded = r.out;
    const info = (await api.handle('checkpoints.inspect', { path: expanded })) as { lineage: { madeBy: string }[] };
    expect(info.lineage.map((l) => l.madeBy)).toEqual(['expand', 'import']);
    // the expansion is a run in the store, pointing at what it made
    const run = store.getRun(f.runId!)!;
    expect(run).toMatchObject({ kind: 'expand', status: 'completed', resultCheckpointId: r.checkpointId });
    // running it again into the same folder lists the folder once
    await runJob({ kind: 'expand', model: base(), out: join(dir, 'expanded'), config: { blocks: 2, placement: 'interleave' }, overwrite: true });
    const list = (await api.handle('checkpoints.list', {})) as { path: string }[];
    expect(list.filter((c) => c.path === expanded)).toHaveLength(1);
  });

  it('refuses an invalid expansion before starting anything', async () => {
    await expect(api.handle('jobs.start', { job: { kind: 'expand', model: base(), config: { blocks: 2, extra: 1 } } })).rejects.toThrow(/config/);
    await expect(api.handle('jobs.start', { job: { kind: 'expand', model: base(), config: { placement: 'interleave', positions: [{ position: 99 }] } } })).rejects.toThrow(/4-layer model.*99/);
    await expect(api.handle('jobs.start', { job: { kind: 'expand', model: join(dir, 'nowhere'), config: { blocks: 1 } } })).rejects.toThrow(/nowhere: no such folder/);
    expect(existsSync(join(dir, 'bad'))).toBe(false);
  });

  it('trains the new blocks with live steps, pauses with a checkpoint, and resumes to the end', async () => {
    const data = join(demoDir(), 'corpora', 'code', 'train.jsonl');
    let paused = false;
    const first = await runJob(
      { kind: 'train', train: { model: expanded, data: [data], method: { kind: 'blocks' }, steps: 8, lr: 1e-3, batch: 2, seq: 64, evalEvery: 4, name: 'app test', out: join(dir, 'run') } },
      (e, jobId) => {
        if (e.kind === 'step' && e.metrics.step === 2 && !paused) {
          paused = true;
          void api.handle('jobs.pause', { jobId });
        }
      },
    );
    const steps = first.events.filter((e) => e.kind === 'step');
    expect(steps.length).toBeGreaterThanOrEqual(2);
    expect(first.end.kind === 'done' && first.end.status).toBe('paused');
    runId = first.runId!;
    // paused, in the store as in the cell (not "cancelled")
    expect(store.getRun(runId)?.status).toBe('paused');

    const second = await runJob({ kind: 'resume', runId });
    const r = result(second, 'train');
    expect(second.end.kind === 'done' && second.end.status).toBe('completed');
    expect(r.steps).toBe(8);
    // the run page's status history: started, paused at its step, resumed, completed
    expect(store.runEvents(runId).map((e) => e.status)).toEqual(['running', 'paused', 'running', 'completed']);
    expect(store.runEvents(runId)[3]!.step).toBe(8);
    trained = r.model!;
    expect(existsSync(join(trained, 'config.json'))).toBe(true);
    // the curve a reloaded Train cell draws: every step once, val_loss at the eval steps
    const [detail] = (await api.handle('runs.get', { ids: [runId], metrics: ['loss', 'val_loss'] })) as { curves: Record<string, [number, number][]> }[];
    expect(detail.curves.loss.map(([s]) => s)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(detail.curves.val_loss.map(([s]) => s)).toEqual(expect.arrayContaining([4, 8]));
  });

  it('refuses a second training job writing to the folder of a running one', async () => {
    const data = join(demoDir(), 'corpora', 'code', 'train.jsonl');
    const train = { model: expanded, data: [data], method: { kind: 'blocks' as const }, steps: 500, lr: 1e-3, batch: 1, seq: 32, out: join(dir, 'busy') };
    let second: Promise<unknown> | null = null; // settles to the refusal (caught at once: it comes before the await)
    const first = runJob({ kind: 'train', train }, (e, jobId) => {
      if (e.kind === 'step' && !second) {
        second = api.handle('jobs.start', { job: { kind: 'train', train } }).then(
          () => new Error('the second job was started'),
          (err: Error) => err,
        );
        void api.handle('jobs.cancel', { jobId });
      }
    });
    const f = await first;
    expect(String(await second)).toMatch(/already writing to .*busy/);
    expect(f.end.kind === 'done' && f.end.status).toBe('cancelled');
  });

  it('measures forgetting and gain against the base, with progress', async () => {
    const f = await runJob({ kind: 'eval', base: base(), checkpoints: [expanded, trained], benchmarks: ['builtin:general-ppl', 'builtin:code-ppl'], limit: 3 });
    const r = result(f, 'eval');
    // one overall progress: evaluations (checkpoint × benchmark) done of all, the current one beside it
    const progress = f.events.filter((e): e is Extract<JobEvent, { kind: 'progress' }> => e.kind === 'progress').map((e) => e.progress);
    expect(progress.length).toBeGreaterThan(0);
    const tasks = progress[0]!.total;
    for (const p of progress) {
      expect(p.unit).toBe('evaluations');
      expect(p.total).toBe(tasks);
      expect(p.current?.label).toMatch(/ × /);
      expect(p.current!.done).toBeLessThanOrEqual(p.current!.total);
    }
    expect(progress.at(-1)!.done).toBe(tasks);
    // done never goes back
    expect(progress.every((p, i) => i === 0 || p.done >= progress[i - 1]!.done)).toBe(true);
    expect(r.compare!.rows.map((x) => x.role).sort()).toEqual(['new', 'old']);
    // the expanded model is the base, exactly: zero forgetting, zero gain
    for (const row of r.compare!.rows) expect(row.checkpoints[0].delta).toBeCloseTo(0, 12);
    // tuning on code moved the code benchmark
    const code = r.compare!.rows.find((x) => x.role === 'new')!;
    expect(code.checkpoints[1].delta).not.toBe(0);
    expect(r.report.results.length).toBeGreaterThan(0);
  });

  it('streams a chat answer token by token; the tokens add up to the answer', async () => {
    const f = await runJob({ kind: 'chat', model: trained, messages: [{ role: 'user', content: 'def add(a, b):' }], settings: { system: '', temperature: 0, topP: 1, maxTokens: 16, useTemplate: true } });
    const r = result(f, 'chat');
    const streamed = f.events.filter((e): e is Extract<JobEvent, { kind: 'token' }> => e.kind === 'token').map((e) => e.text).join('');
    expect(r.generatedTokens).toBeGreaterThan(0);
    expect(streamed).toBe(r.text);
    expect(r.decodeTokensPerSecond).toBeGreaterThan(0);
    // the demo tokenizer carries a Llama-3-style chat template
    expect(r.templated).toBe(true);
    // the next turn finds the model already loaded in its chat engine
    const again = result(await runJob({ kind: 'chat', model: trained, messages: [{ role: 'user', content: 'def add(a, b):' }], settings: { system: '', temperature: 0, topP: 1, maxTokens: 16, useTemplate: true } }), 'chat');
    expect(r.loadSeconds).toBeGreaterThan(0);
    expect(r.residency).toBe('resident'); // the demo model fits: every weight float32
    expect(again.loadSeconds).toBe(0);
    expect(again.text).toBe(r.text); // greedy: the same answer
    // a folder rewritten since (touched here, retrained in life) is loaded afresh
    const { utimes } = await import('node:fs/promises');
    await utimes(join(trained, 'config.json'), new Date(), new Date(Date.now() + 5000));
    const fresh = result(await runJob({ kind: 'chat', model: trained, messages: [{ role: 'user', content: 'x' }], settings: { system: '', temperature: 0, topP: 1, maxTokens: 2, useTemplate: true } }), 'chat');
    expect(fresh.loadSeconds).toBeGreaterThan(0);
    // without it, the same conversation is plain text to continue
    const plain = result(await runJob({ kind: 'chat', model: trained, messages: [{ role: 'user', content: 'def add(a, b):' }], settings: { system: '', temperature: 0, topP: 1, maxTokens: 16, useTemplate: false } }), 'chat');
    expect(plain.templated).toBe(false);
    expect(plain.promptTokens).toBeLessThan(r.promptTokens);
  });

  it('runs a chat on the backend the cell chose (webgpu: a warm engine of its own) with the same greedy answer', async (ctx) => {
    const info = (await api.handle('app.info', {})) as { backend: { webgpuAdapter: { device: string } | null; candidates: { name: string; reason?: string }[] } };
    if (!info.backend.webgpuAdapter) {
      const why = info.backend.candidates.find((c) => c.name === 'webgpu')?.reason ?? 'no adapter';
      if (process.env.BLOCKLAB_REQUIRE_WEBGPU === '1') throw new Error(`BLOCKLAB_REQUIRE_WEBGPU=1, but no WebGPU adapter: ${why}`);
      ctx.skip(`no WebGPU adapter could be created here: ${why}`);
    }
    const ask = (backend: 'webgpu' | 'wasm') =>
      runJob({ kind: 'chat', model: base(), messages: [{ role: 'user', content: 'The' }], settings: { system: '', temperature: 0, topP: 1, maxTokens: 8, useTemplate: false, backend } });
    const gpu = result(await ask('webgpu'), 'chat');
    const cpu = result(await ask('wasm'), 'chat');
    expect(gpu.backend).toBe('webgpu');
    expect(cpu.backend).toBe('wasm');
    expect(gpu.decodeTokensPerSecond).toBeGreaterThan(0);
    expect(gpu.text).toBe(cpu.text);
  });

  it('completion mode continues the prompt as it is; top-k, repetition penalty and seed reach the sampler', async () => {
    const settings = { temperature: 0, topP: 1, maxTokens: 12, mode: 'completion' as const };
    const messages = [{ role: 'user' as const, content: 'def add(a, b):' }];
    const greedy = result(await runJob({ kind: 'chat', model: trained, messages, settings }), 'chat');
    expect(greedy.templated).toBe(false);
    // a history before the prompt is not sent in completion mode: the same prompt tokens
    const withHistory = result(await runJob({ kind: 'chat', model: trained, messages: [{ role: 'user', content: 'earlier' }, { role: 'assistant', content: 'answer' }, ...messages], settings }), 'chat');
    expect(withHistory.promptTokens).toBe(greedy.promptTokens);
    // top-k 1 is greedy whatever the temperature: only if top-k reaches the sampler
    const hot = { ...settings, temperature: 1.5, seed: 3 };
    const topK1 = result(await runJob({ kind: 'chat', model: trained, messages, settings: { ...hot, topK: 1 } }), 'chat');
    expect(topK1.text).toBe(greedy.text);
    // the same seed gives the same sampled answer; a strong repetition penalty changes the greedy one
    const a = result(await runJob({ kind: 'chat', model: trained, messages, settings: hot }), 'chat');
    const b = result(await runJob({ kind: 'chat', model: trained, messages, settings: hot }), 'chat');
    expect(b.text).toBe(a.text);
    const penalised = result(await runJob({ kind: 'chat', model: trained, messages, settings: { ...settings, repetitionPenalty: 5 } }), 'chat');
    expect(penalised.text).not.toBe(greedy.text);
  });

  it('stops a chat mid-answer and keeps what was generated', async () => {
    let stopped = false;
    const f = await runJob({ kind: 'chat', model: base(), messages: [{ role: 'user', content: 'The' }], settings: { system: '', temperature: 0.7, topP: 0.95, maxTokens: 4000, useTemplate: true } }, (e, jobId) => {
      if (e.kind === 'token' && !stopped) {
        stopped = true;
        void api.handle('jobs.cancel', { jobId });
      }
    });
    const r = result(f, 'chat');
    expect(f.end.kind === 'done' && f.end.status).toBe('cancelled');
    expect(r.finishReason).toBe('aborted'); // not EOS, not the end of the context: the stop
    // it stopped well before the room left in the 512-token context (hundreds of tokens, seconds
    // of decoding, against one IPC message), and what it kept is exactly what was streamed
    expect(r.generatedTokens).toBeGreaterThanOrEqual(1);
    expect(r.generatedTokens).toBeLessThan(512 - r.promptTokens);
    const streamed = f.events.filter((e): e is Extract<JobEvent, { kind: 'token' }> => e.kind === 'token').map((e) => e.text).join('');
    expect(streamed).toBe(r.text);
  });

  it('exports the trained checkpoint as GGUF and writes a report with the run', async () => {
    const g = result(await runJob({ kind: 'export-checkpoint', model: trained, format: 'gguf', out: join(dir, 'model.gguf') }), 'export-checkpoint');
    expect(readFileSync(g.out).subarray(0, 4).toString()).toBe('GGUF');
    expect(g).toMatchObject({ dtype: 'F32', nll: null });
    // quantized: the NLL change comes back with the result (and lands in the run's summary)
    const q = result(await runJob({ kind: 'export-checkpoint', model: trained, format: 'gguf', dtype: 'q4_0', out: join(dir, 'model-q4_0.gguf') }), 'export-checkpoint');
    expect(q.dtype).toBe('Q4_0');
    expect(q.bytes).toBeLessThan(g.bytes / 4);
    expect(q.nll!.tokens).toBeGreaterThan(100);
    expect(q.nll!.delta).toBeCloseTo(q.nll!.gguf - q.nll!.checkpoint, 10);
    const hfQ = await runJob({ kind: 'export-checkpoint', model: trained, format: 'hf', dtype: 'q8_0', out: join(dir, 'hf-q8') });
    expect(hfQ.end.kind === 'error' && hfQ.end.message).toMatch(/q8_0 is a GGUF type/);
    const rep = result(await runJob({ kind: 'export-report', runIds: [runId], formats: ['html'], out: join(dir, 'report'), title: 'App report' }), 'export-report');
    expect(rep.files.map((x) => x.format)).toEqual(['html', 'md']);
    expect(rep.html).toContain('App report');
    expect(readFileSync(join(dir, 'report', 'report.html'), 'utf8')).toBe(rep.html);
  });

  it('fails a job on a folder that is not a checkpoint with the folder in the message', async () => {
    await mkdir(join(dir, 'empty'), { recursive: true });
    await writeFile(join(dir, 'empty', 'README'), 'nothing');
    const f = await runJob({ kind: 'chat', model: join(dir, 'empty'), messages: [{ role: 'user', content: 'hi' }], settings: { system: '', temperature: 0, topP: 1, maxTokens: 4, useTemplate: true } });
    expect(f.end.kind).toBe('error');
    expect(f.end.kind === 'error' && f.end.message).toContain(join(dir, 'empty'));
  });
});
