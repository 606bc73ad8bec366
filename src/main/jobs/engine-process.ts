/**
 * The engine process: runs one job that its supervisor sends (train, expand, eval, generate,
 * export, a read-only SQL query), reports progress over IPC, and exits. Heavy work lives here so
 * the caller's event loop stays free, and a crash or an out-of-memory here fails the job, not
 * the caller. It runs as a `child_process.fork` (CLI, server, tests) or as an Electron
 * `utilityProcess` (the app): the two differ only in how messages travel.
 */
import { resolve } from 'node:path';
import { FromEngineSchema, ToEngineSchema, type FromEngine, type JobRequest } from '../../shared/jobs.js';
import { BlocklabError } from '../engine/errors.js';
import type { Checkpoint } from '../engine/checkpoint.js';
import type { HfTokenizer } from '../engine/tokenizer.js';

/** The current job's; a kept-alive process gets a fresh one for each job. */
let controller = new AbortController();

/** Electron's utility process has `process.parentPort`; a forked Node child has `process.send`. */
interface ParentPort {
  postMessage(message: unknown): void;
  on(event: 'message', listener: (e: { data: unknown }) => void): void;
}
const parentPort = (process as unknown as { parentPort?: ParentPort }).parentPort;

function send(message: FromEngine): Promise<void> {
  FromEngineSchema.parse(message);
  if (parentPort) {
    parentPort.postMessage(message);
    return Promise.resolve();
  }
  return new Promise((done) => {
    if (!process.send || !process.connected) return done();
    process.send(message, undefined, {}, () => done());
  });
}

type Result = Record<string, unknown>;

async function runTrain(t: Extract<JobRequest, { kind: 'train' }>['train']): Promise<Result> {
  const { train } = await import('../engine/trainer.js');
  const result = await train(
    t,
    {
      onLog: (message) => void send({ type: 'log', message }),
      onStart: (info) => void send({ type: 'started', info: info as unknown as Result }),
      onStep: (metrics) => void send({ type: 'step', metrics }),
      onEval: (step, valLoss) => void send({ type: 'eval', step, valLoss }),
      onCheckpoint: (step, dir) => void send({ type: 'checkpoint', step, dir }),
    },
    controller.signal,
  );
  return result as unknown as Result;
}

async function runExpand(r: Extract<JobRequest, { kind: 'expand' }>): Promise<Result> {
  const { expandModel } = await import('../engine/index.js');
  const { ExpansionRequestSchema } = await import('../../shared/expansion.js');
  const parsed = ExpansionRequestSchema.safeParse(r.config);
  if (!parsed.success) throw new BlocklabError(`the expansion config is invalid: ${parsed.error.issues[0]?.path.join('.') || 'config'}: ${parsed.error.issues[0]?.message}`);
  void send({ type: 'progress', progress: { done: 0, total: 1, unit: 'checkpoint', message: `expanding ${r.model}`, etaSeconds: null } });
  const e = await expandModel(r.model, parsed.data, { out: r.out, overwrite: r.overwrite, backend: r.backend });
  return { ...e } as unknown as Result;
}

async function runEvalJob(r: Extract<JobRequest, { kind: 'eval' }>): Promise<Result> {
  const { runEval, forgettingFromEval } = await import('../engine/eval.js');
  const { ExperimentStore } = await import('../store/index.js');
  const store = ExperimentStore.open(r.storePath);
  try {
    const opts = {
      limit: r.limit ?? null,
      shots: r.shots,
      name: r.name,
      backend: r.backend,
      signal: controller.signal,
      // one overall progress (evaluations of checkpoint × benchmark) with the current one beside it
      onProgress: (p: { checkpoint: string; benchmark: string; done: number; total: number; unit: string; task: number; tasks: number; overallEtaSeconds: number | null }) =>
        void send({
          type: 'progress',
          progress: {
            done: p.task + (p.total > 0 && p.done >= p.total ? 1 : 0),
            total: p.tasks,
            unit: 'evaluations',
            message: `${p.checkpoint} × ${p.benchmark}`,
            etaSeconds: p.overallEtaSeconds,
            current: { label: `${p.checkpoint} × ${p.benchmark}`, done: p.done, total: p.total, unit: p.unit },
          },
        }),
    };
    if (r.base) {
      const others = r.checkpoints.filter((c) => resolve(c) !== resolve(r.base!));
      if (others.length === 0) throw new BlocklabError('choose at least one checkpoint besides the base to measure forgetting against it');
      const report = await runEval(store, { ...opts, models: [r.base, ...others], benchmarks: r.benchmarks });
      return { report, compare: forgettingFromEval(report, r.base, others) } as unknown as Result;
    }
    const report = await runEval(store, { ...opts, models: r.checkpoints, benchmarks: r.benchmarks });
    return { report, compare: null } as unknown as Result;
  } finally {
    store.close();
  }
}

/** The model a kept-alive process holds between chat turns, and what its folder looked like when loaded. */
let warm: { dir: string; key: string; loaded: import('../engine/index.js').LoadedModel } | null = null;

/** Changes when the folder's weights or config are rewritten (a re-run training into the same folder). */
async function folderKey(dir: string): Promise<string> {
  const { readdir, stat } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const names = (await readdir(dir)).filter((n) => n === 'config.json' || n.endsWith('.safetensors') || n.startsWith('tokenizer')).sort();
  const parts: string[] = [];
  for (const n of names) {
    const st = await stat(join(dir, n));
    parts.push(`${n}:${st.size}:${st.mtimeMs}`);
  }
  return parts.join('|');
}

async function runGenerate(r: Extract<JobRequest, { kind: 'generate' }>, keep: boolean): Promise<Result> {
  const { loadModel, generateText, generateTask, backendReport, replanLoaded, reloadUnder } = await import('../engine/index.js');
  // the folder's files and the backend asked for: either changing reloads the model
  const key = `${r.backend ?? 'auto'}|${await folderKey(r.model).catch(() => '')}`;
  // planned for this conversation's length and answer (refused before loading when it does not fit)
  const text = [r.system ?? '', r.prompt ?? '', ...(r.messages ?? []).map((m) => m.content)].join('\n');
  const task = (ckpt: Checkpoint, tok: HfTokenizer | null) => generateTask((tok?.encode(text).length ?? text.length) + 64, r.maxTokens, ckpt.config.maxPositionEmbeddings, 'chat');
  let loadSeconds = 0;
  if (!warm || warm.dir !== r.model || warm.key !== key) {
    warm?.loaded.dispose();
    warm = null;
    const t0 = performance.now();
    const loaded = await loadModel(r.model, r.backend, { task });
    loadSeconds = (performance.now() - t0) / 1000;
    warm = { dir: r.model, key, loaded };
  } else {
    // a longer conversation than the warm model was planned for is planned again before it runs:
    // refused when it does not fit (the model stays warm), reloaded when its KV cache moves the weights
    const again = replanLoaded(warm.loaded, task(warm.loaded.checkpoint, warm.loaded.tokenizer));
    if (again && !again.reload) warm.loaded.plan = again.plan;
    if (again?.reload) {
      const old = warm.loaded;
      warm = null;
      const t0 = performance.now();
      warm = { dir: r.model, key, loaded: await reloadUnder(old, again.plan) };
      loadSeconds = (performance.now() - t0) / 1000;
    }
  }
  const loaded = warm.loaded;
  try {
    // generateText's own refusal speaks of passing token ids, which a chat cannot do
    if (!loaded.tokenizer) throw new BlocklabError('has no tokenizer.json, which chat needs; add the tokenizer files to the folder', { file: r.model });
    const result = await generateText(loaded, {
      prompt: r.prompt ?? '',
      ...(r.messages ? { messages: r.messages, system: r.system || undefined } : {}),
      temperature: r.temperature,
      topP: r.topP,
      topK: r.topK,
      repetitionPenalty: r.repetitionPenalty,
      maxTokens: r.maxTokens,
      seed: r.seed,
      useTemplate: r.useTemplate,
      signal: controller.signal,
      onText: (text) => void send({ type: 'token', text }),
    });
    return { ...result, ids: undefined, loadSeconds, backend: backendReport()?.active ?? '', residency: loaded.plan.residency.mode } as unknown as Result;
  } finally {
    if (!keep) {
      warm?.loaded.dispose();
      warm = null;
    }
  }
}

async function runExport(r: Extract<JobRequest, { kind: 'export' }>): Promise<Result> {
  const { BlocklabError, exportModel, exportGguf, parseDtypeOption, parseGgufDtype } = await import('../engine/index.js');
  if (r.format === 'gguf') {
    const dtype = r.dtype ? parseGgufDtype(r.dtype) : undefined;
    if (dtype === null) throw new BlocklabError(`${r.dtype} is not a GGUF type; choose float32, float16, q8_0, q4_0 or q4_k_m`);
    let scored = 0;
    const g = await exportGguf(r.model, {
      out: r.out,
      overwrite: r.overwrite,
      dtype,
      onTensor: (i, total, name) => void send({ type: 'progress', progress: { done: i + 1, total, unit: 'tensors', message: name, etaSeconds: null } }),
      onPhase: (message) => void send({ type: 'progress', progress: { done: scored++, total: 2, unit: 'scores', message, etaSeconds: null } }),
    });
    return { out: r.out, format: 'gguf', bytes: g.bytes, dtype: g.dtype, nll: g.nll, warnings: g.warnings };
  }
  const dtype = r.dtype ? parseDtypeOption(r.dtype) : undefined;
  if (dtype === null) throw new BlocklabError(`${r.dtype} is a GGUF type; a Hugging Face export holds float32, float16 or bfloat16`);
  const w = await exportModel(r.model, { out: r.out, dtype, overwrite: r.overwrite });
  return { out: w.dir, format: 'hf', bytes: w.bytes, dtype: w.dtype, nll: null, warnings: [] };
}

async function runSql(r: Extract<JobRequest, { kind: 'sql' }>): Promise<Result> {
  const { ExperimentStore } = await import('../store/index.js');
  const store = ExperimentStore.open(r.storePath, { readonly: true });
  try {
    const t0 = performance.now();
    const q = store.query(r.sql, [], { maxRows: r.maxRows });
    return { ...q, ms: performance.now() - t0 } as unknown as Result;
  } finally {
    store.close();
  }
}

let running = false;

async function run(request: JobRequest, keep: boolean): Promise<void> {
  controller = new AbortController();
  running = true;
  try {
    let result: Result;
    switch (request.kind) {
      case 'train':
        result = await runTrain(request.train);
        break;
      case 'expand':
        result = await runExpand(request);
        break;
      case 'eval':
        result = await runEvalJob(request);
        break;
      case 'generate':
        result = await runGenerate(request, keep);
        break;
      case 'export':
        result = await runExport(request);
        break;
      case 'sql':
        result = await runSql(request);
        break;
      case 'inspect': {
        const { inspectCheckpoint } = await import('../engine/index.js');
        result = (await inspectCheckpoint(request.model)) as unknown as Result;
        break;
      }
      case 'export-run': {
        const { exportRunLlamaFactory } = await import('../interop/llamafactory.js');
        const r = await exportRunLlamaFactory(request.train, {
          out: request.out,
          overwrite: request.overwrite,
          nodes: request.nodes,
          masterAddr: request.masterAddr,
          log: (message) => void send({ type: 'log', message }),
        });
        result = r as unknown as Result;
        break;
      }
    }
    await send({ type: 'done', result });
  } catch (caught) {
    // a backend out of memory (tfjs-wasm's "Aborted()") is said as that, with the memory plan's advice
    const { explainOutOfMemory } = await import('../engine/plan.js');
    const e = explainOutOfMemory(caught);
    const err = e as Error;
    const aborted = controller.signal.aborted && e === caught && (err?.name === 'AbortError' || /abort|cancel/i.test(err?.message ?? ''));
    if (aborted) await send({ type: 'done', result: { stopped: 'cancelled' } });
    else await send({ type: 'error', message: err?.message ?? String(e), userError: e instanceof BlocklabError, stack: err?.stack });
  }
  running = false;
  if (keep && (parentPort || process.connected)) return; // wait for the next job
  if (parentPort) process.exit(0);
  process.disconnect?.();
}

function onMessage(raw: unknown): void {
  const parsed = ToEngineSchema.safeParse(raw);
  if (!parsed.success) {
    void send({ type: 'error', message: `engine process got an invalid message: ${parsed.error.issues[0]?.message}`, userError: false });
    return;
  }
  const msg = parsed.data;
  if (msg.type === 'cancel') {
    controller.abort();
    // the acknowledgement tells the supervisor this process is alive and stopping, not stuck
    if (running) void send({ type: 'cancelling' });
  }
  else void run(msg.request, msg.keep === true);
}

if (parentPort) parentPort.on('message', (e) => onMessage(e.data));
else {
  process.on('message', onMessage);
  // The supervisor went away (killed, crashed): stop at the next step boundary, with a checkpoint;
  // a kept-alive process waiting for its next job just ends.
  process.on('disconnect', () => {
    controller.abort();
    if (!running) process.exit(0);
  });
}

void send({ type: 'ready' });
