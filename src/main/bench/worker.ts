/**
 * A bench worker process: runs one measurement that its parent sends over IPC, answers with the
 * figures (or one line of error) and exits. One process per measurement keeps each training
 * method's RSS high-water mark its own, and a wasm heap grown by one method out of the next.
 */
import { benchInference, type InferTask } from './infer.js';
import { benchTraining, type TrainTask } from './train.js';

export type WorkerTask = InferTask | TrainTask;
export type WorkerReply = { ok: true; result: unknown } | { ok: false; error: string };

function send(message: WorkerReply): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(message, undefined, {}, () => resolve());
  });
}

/** One line, short: tfjs-wasm errors can carry the whole wasm module source in their message. */
function shortMessage(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  const line = text.split('\n').find((l) => l.trim()) ?? 'unknown error';
  return line.trim().slice(0, 300);
}

process.once('message', async (task: WorkerTask) => {
  let reply: WorkerReply;
  try {
    reply = { ok: true, result: task.kind === 'train' ? await benchTraining(task) : await benchInference(task) };
  } catch (e) {
    const { explainOutOfMemory } = await import('../engine/plan.js');
    reply = { ok: false, error: shortMessage(explainOutOfMemory(e)) };
  }
  await send(reply);
  process.disconnect?.();
});
