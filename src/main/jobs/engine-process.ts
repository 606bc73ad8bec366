/**
 * The engine process: runs one job that its supervisor sends, reports progress over IPC, and
 * exits. Heavy work lives here so the caller's event loop stays free, and a crash or an
 * out-of-memory here fails the job, not the caller.
 */
import { FromEngineSchema, ToEngineSchema, type FromEngine, type JobRequest } from '../../shared/jobs.js';
import { BlocklabError } from '../engine/errors.js';
import { train } from '../engine/trainer.js';

const controller = new AbortController();

function send(message: FromEngine): Promise<void> {
  FromEngineSchema.parse(message);
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(message, undefined, {}, () => resolve());
  });
}

async function run(request: JobRequest): Promise<void> {
  try {
    const t = request.train;
    const result = await train(
      t,
      {
        onLog: (message) => void send({ type: 'log', message }),
        onStart: (info) => void send({ type: 'started', info: info as unknown as Record<string, unknown> }),
        onStep: (metrics) => void send({ type: 'step', metrics }),
        onEval: (step, valLoss) => void send({ type: 'eval', step, valLoss }),
        onCheckpoint: (step, dir) => void send({ type: 'checkpoint', step, dir }),
      },
      controller.signal,
    );
    await send({ type: 'done', result: result as unknown as Record<string, unknown> });
  } catch (e) {
    const err = e as Error;
    await send({ type: 'error', message: err?.message ?? String(e), userError: e instanceof BlocklabError, stack: err?.stack });
  }
  process.disconnect?.();
}

process.on('message', (raw) => {
  const parsed = ToEngineSchema.safeParse(raw);
  if (!parsed.success) {
    void send({ type: 'error', message: `engine process got an invalid message: ${parsed.error.issues[0]?.message}`, userError: false });
    return;
  }
  const msg = parsed.data;
  if (msg.type === 'cancel') controller.abort();
  else void run(msg.request);
});

// The supervisor went away (killed, crashed): stop at the next step boundary, with a checkpoint.
process.on('disconnect', () => controller.abort());

void send({ type: 'ready' });
