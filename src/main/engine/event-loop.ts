/**
 * Lets the event loop run (IPC messages, timers, signals). Long engine loops — training steps,
 * evaluation batches, token generation, corpus reading — call it between iterations: the wasm
 * backend's reads resolve as microtasks, so a loop that only awaits them never lets a cancel
 * or a stop request in.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}
