/**
 * Text generation with a KV cache: prefill the prompt once, then one token per forward pass.
 * Sampling follows transformers' logits-processor order: repetition penalty → temperature →
 * top-k → top-p → draw (temperature 0 is greedy). Seeded, so a run can be repeated exactly.
 */
import { tf } from './backend.js';
import { BlocklabError } from './errors.js';
import { disposeCache, type LlamaModel } from './model.js';
import { seededRandom } from './random.js';
import { yieldToEventLoop } from './event-loop.js';

export interface SamplingOptions {
  /** 0 = greedy */
  temperature: number;
  /** 0 = off */
  topK: number;
  /** 1 = off */
  topP: number;
  /** 1 = off; >1 discourages tokens already in the prompt or the output (CTRL / transformers rule) */
  repetitionPenalty: number;
  seed: number;
}

export const DEFAULT_SAMPLING: SamplingOptions = { temperature: 0.7, topK: 0, topP: 0.9, repetitionPenalty: 1, seed: 0 };

export interface GenerateOptions extends Partial<SamplingOptions> {
  maxTokens?: number;
  /** generation ends when the output contains one of these; the stop string is not returned */
  stop?: string[];
  /** token ids that end generation (EOS); not included in the output text */
  eosTokenIds?: number[];
  /** called with each new piece of text as it becomes final */
  onText?: (delta: string) => void;
  /** mask[id] = 1: never sample this id (HfTokenizer.undecodableIds) */
  never?: Uint8Array;
  signal?: AbortSignal;
}

export interface GenerateResult {
  text: string;
  ids: number[];
  finishReason: 'eos' | 'stop' | 'length' | 'aborted';
  promptTokens: number;
  generatedTokens: number;
  prefillSeconds: number;
  decodeSeconds: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
}

export function validateSampling(o: SamplingOptions): void {
  if (!(o.temperature >= 0) || !Number.isFinite(o.temperature)) throw new BlocklabError(`--temperature must be ≥ 0 (got ${o.temperature})`);
  if (!(o.topP > 0 && o.topP <= 1)) throw new BlocklabError(`--top-p must be in (0, 1] (got ${o.topP})`);
  if (!Number.isInteger(o.topK) || o.topK < 0) throw new BlocklabError(`--top-k must be a whole number ≥ 0 (got ${o.topK})`);
  if (!(o.repetitionPenalty > 0) || !Number.isFinite(o.repetitionPenalty)) throw new BlocklabError(`--repetition-penalty must be > 0 (got ${o.repetitionPenalty})`);
  if (!Number.isInteger(o.seed)) throw new BlocklabError(`--seed must be an integer (got ${o.seed})`);
}

/**
 * Picks the next token from one position's logits (modified in place). `seen` holds every id
 * of the prompt and the output so far, for the repetition penalty.
 */
export function sampleToken(logits: Float32Array, o: SamplingOptions, seen: Iterable<number>, random: () => number, never?: Uint8Array): number {
  const V = logits.length;
  // ids the tokenizer cannot decode (a vocabulary padded past the tokenizer's) are never drawn
  if (never) for (let i = 0; i < V; i++) if (never[i]) logits[i] = -Infinity;
  if (o.repetitionPenalty !== 1) {
    for (const id of new Set(seen)) {
      const s = logits[id];
      logits[id] = s < 0 ? s * o.repetitionPenalty : s / o.repetitionPenalty;
    }
  }
  if (o.temperature === 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  // Candidates sorted by logit, best first; cut by top-k, then by top-p on the softmax.
  let order: Int32Array | number[] = Int32Array.from({ length: V }, (_, i) => i);
  order = Array.from(order).sort((a, b) => logits[b] - logits[a]);
  if (o.topK > 0 && o.topK < order.length) order = order.slice(0, o.topK);
  const maxLogit = logits[order[0]];
  const weights = order.map((id) => Math.exp((logits[id] - maxLogit) / o.temperature));
  let total = weights.reduce((a, b) => a + b, 0);
  if (o.topP < 1) {
    // keep the smallest prefix whose probability reaches top_p (always at least one token)
    let cum = 0;
    let keep = 0;
    while (keep < order.length && (keep === 0 || cum < o.topP * total)) cum += weights[keep++];
    order = order.slice(0, keep);
    weights.length = keep;
    total = cum;
  }
  let r = random() * total;
  for (let i = 0; i < order.length; i++) {
    r -= weights[i];
    if (r < 0) return order[i];
  }
  return order[order.length - 1];
}

/** Longest suffix of `text` that is a proper prefix of some stop string (held back while streaming). */
function pendingStopPrefix(text: string, stops: string[]): number {
  let longest = 0;
  for (const s of stops) {
    for (let n = Math.min(s.length - 1, text.length); n > longest; n--) {
      if (text.endsWith(s.slice(0, n))) {
        longest = n;
        break;
      }
    }
  }
  return longest;
}

/**
 * Generates from `promptIds`. `decode` turns generated ids into text (the tokenizer's decode);
 * text is streamed through onText as it becomes final (an incomplete UTF-8 sequence or a
 * possible start of a stop string is held back).
 */
export async function generate(
  model: LlamaModel,
  promptIds: number[],
  decode: (ids: number[]) => string,
  options: GenerateOptions = {},
): Promise<GenerateResult> {
  const sampling: SamplingOptions = {
    temperature: options.temperature ?? DEFAULT_SAMPLING.temperature,
    topK: options.topK ?? DEFAULT_SAMPLING.topK,
    topP: options.topP ?? DEFAULT_SAMPLING.topP,
    repetitionPenalty: options.repetitionPenalty ?? DEFAULT_SAMPLING.repetitionPenalty,
    seed: options.seed ?? DEFAULT_SAMPLING.seed,
  };
  validateSampling(sampling);
  const maxTokens = options.maxTokens ?? 128;
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new BlocklabError(`--max-tokens must be a whole number ≥ 0 (got ${maxTokens})`);
  if (promptIds.length === 0) throw new BlocklabError('the prompt is empty after tokenization; give some text');
  const room = model.config.maxPositionEmbeddings - promptIds.length;
  if (room <= 0) {
    throw new BlocklabError(`the prompt has ${promptIds.length} tokens, the model's limit is ${model.config.maxPositionEmbeddings}; shorten it`);
  }
  const limit = Math.min(maxTokens, room);
  const stops = (options.stop ?? []).filter((s) => s.length > 0);
  const eos = new Set(options.eosTokenIds ?? model.config.eosTokenIds);
  const random = seededRandom(sampling.seed);
  const seen = [...promptIds];
  const out: number[] = [];
  let emitted = 0;
  let text = '';
  let finishReason: GenerateResult['finishReason'] = 'length';

  const cache = model.newCache();
  const t0 = performance.now();
  let prefillSeconds = 0;
  try {
    let logits = model.forward([promptIds], { cache, lastOnly: true });
    for (let step = 0; ; step++) {
      const row = new Float32Array(await logits.data());
      logits.dispose();
      if (step === 0) prefillSeconds = (performance.now() - t0) / 1000;
      if (step >= limit) break;
      await yieldToEventLoop(); // a stop request (IPC, a signal) arrives between tokens
      if (options.signal?.aborted) {
        finishReason = 'aborted';
        break;
      }
      const id = sampleToken(row, sampling, seen, random, options.never);
      if (eos.has(id)) {
        finishReason = 'eos';
        break;
      }
      out.push(id);
      seen.push(id);
      text = decode(out);
      const stopAt = stops.length ? Math.min(...stops.map((s) => text.indexOf(s)).filter((i) => i >= 0)) : Infinity;
      if (Number.isFinite(stopAt)) {
        text = text.slice(0, stopAt);
        finishReason = 'stop';
        break;
      }
      // Stream what is final: not a trailing replacement char (a split UTF-8 sequence), not a
      // possible beginning of a stop string.
      let ready = text.length - pendingStopPrefix(text, stops);
      while (ready > emitted && text.charCodeAt(ready - 1) === 0xfffd) ready--;
      if (ready > emitted) {
        options.onText?.(text.slice(emitted, ready));
        emitted = ready;
      }
      if (step + 1 >= limit) break;
      logits = model.forward([[id]], { cache, lastOnly: true });
    }
  } finally {
    disposeCache(cache);
  }
  if (text.length > emitted) options.onText?.(text.slice(emitted));
  const decodeSeconds = (performance.now() - t0) / 1000 - prefillSeconds;
  return {
    text,
    ids: out,
    finishReason,
    promptTokens: promptIds.length,
    generatedTokens: out.length,
    prefillSeconds,
    decodeSeconds,
    prefillTokensPerSecond: promptIds.length / Math.max(prefillSeconds, 1e-9),
    decodeTokensPerSecond: out.length > 1 ? (out.length - 1) / Math.max(decodeSeconds, 1e-9) : 0,
  };
}

