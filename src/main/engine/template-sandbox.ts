/**
 * Chat templates run in a sandbox with a time and memory limit. A chat template is code from a
 * downloaded file (Jinja, rendered by @huggingface/jinja), and `{% for i in range(100000) %}`
 * nested twice pins a CPU for hours: rendering happens in a worker thread with a heap limit,
 * while this thread waits for it at most TEMPLATE_TIME_LIMIT_MS (Atomics.wait: the caller's API
 * stays synchronous); a template that overruns gets its worker terminated and a clear error.
 */
import { createRequire } from 'node:module';
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';
import { BlocklabError } from './errors.js';

/** How long one rendering may take (a real template renders in milliseconds). */
export const TEMPLATE_TIME_LIMIT_MS = 5000;
/** The rendered prompt's largest size; anything longer is no model's context. */
export const TEMPLATE_MAX_OUTPUT_CHARS = 8 * 1024 * 1024;
const TEMPLATE_HEAP_MB = 256;
/** How long a fresh worker may take to start (not counted against a rendering). */
const START_LIMIT_MS = 60_000;

// The worker: compiles each template once, renders on request, answers on the request's port
// and wakes the waiting thread through the shared flag.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { Template } = require(workerData.jinja);
const compiled = new Map();
const ready = new Int32Array(workerData.ready);
Atomics.store(ready, 0, 1);
Atomics.notify(ready, 0);
parentPort.on('message', ({ port, flag, template, context, maxChars }) => {
  let answer;
  try {
    let t = compiled.get(template);
    if (!t) {
      if (compiled.size > 8) compiled.clear();
      t = new Template(template);
      compiled.set(template, t);
    }
    const text = t.render(context);
    answer = text.length > maxChars ? { error: 'the rendered prompt is longer than ' + maxChars + ' characters' } : { text };
  } catch (e) {
    answer = { error: String((e && e.message) || e) };
  }
  port.postMessage(answer);
  port.close();
  const f = new Int32Array(flag);
  Atomics.store(f, 0, 1);
  Atomics.notify(f, 0);
});
`;

let worker: Worker | null = null;

function startWorker(): Worker {
  const ready = new SharedArrayBuffer(4);
  const w = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { jinja: createRequire(import.meta.url).resolve('@huggingface/jinja'), ready },
    resourceLimits: { maxOldGenerationSizeMb: TEMPLATE_HEAP_MB, maxYoungGenerationSizeMb: 32 },
    stdout: false,
    stderr: true,
  });
  w.on('error', () => {
    if (worker === w) worker = null; // out of memory, or terminated: the next rendering starts a fresh one
  });
  w.on('exit', () => {
    if (worker === w) worker = null;
  });
  w.unref();
  if (Atomics.wait(new Int32Array(ready), 0, 0, START_LIMIT_MS) === 'timed-out') {
    void w.terminate();
    throw new BlocklabError('the chat template sandbox did not start; the machine may be out of memory');
  }
  return w;
}

/**
 * Renders `template` with `context`, synchronously, within the limits. Throws a BlocklabError
 * whose message says what went wrong (the template's own error, or that it overran).
 */
export function renderTemplateSandboxed(template: string, context: Record<string, unknown>, limitMs = TEMPLATE_TIME_LIMIT_MS): string {
  worker ??= startWorker();
  const w = worker;
  const flag = new SharedArrayBuffer(4);
  const { port1, port2 } = new MessageChannel();
  w.postMessage({ port: port2, flag, template, context, maxChars: TEMPLATE_MAX_OUTPUT_CHARS }, [port2]);
  const waited = Atomics.wait(new Int32Array(flag), 0, 0, limitMs);
  const reply = receiveMessageOnPort(port1)?.message as { text?: string; error?: string } | undefined;
  port1.close();
  if (waited === 'timed-out' || reply === undefined) {
    worker = null;
    void w.terminate();
    throw new BlocklabError(`did not finish within ${limitMs / 1000} s (or needed more than ${TEMPLATE_HEAP_MB} MB); the template loops too long — fix or remove it`);
  }
  if (reply.error !== undefined) throw new BlocklabError(reply.error);
  return reply.text ?? '';
}
