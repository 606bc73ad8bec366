/**
 * llama.cpp for reference tests: node-llama-cpp 3.21.1's prebuilt CPU build, loaded once per
 * test file. `llama` is null (with `skipReason`) only where it cannot load; suites skip then,
 * except in CI, where they must run.
 */
type NodeLlamaCpp = typeof import('node-llama-cpp');
type Llama = Awaited<ReturnType<NodeLlamaCpp['getLlama']>>;
type LlamaModel = Awaited<ReturnType<Llama['loadModel']>>;
export type Token = import('node-llama-cpp').Token;

export let nlc: NodeLlamaCpp | null = null;
export let llama: Llama | null = null;
export let skipReason = '';
try {
  nlc = await import('node-llama-cpp');
  llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: nlc.LlamaLogLevel.error, progressLogs: false });
} catch (e) {
  skipReason = `node-llama-cpp cannot load a prebuilt llama.cpp here (${String((e as Error).message ?? e).split('\n')[0]})`;
}
if (skipReason) console.warn(`skipping the llama.cpp checks: ${skipReason}`);

/**
 * A context that computes attention in float32 like the engine: F32 KV cache, no flash
 * attention (an F16 cache alone costs ~2e-2 in log p).
 */
export function exactContext(model: LlamaModel, contextSize: number) {
  return model.createContext({
    contextSize,
    flashAttention: false,
    experimentalKvCacheKeyType: 'F32',
    experimentalKvCacheValueType: 'F32',
  } as Parameters<LlamaModel['createContext']>[0]);
}
