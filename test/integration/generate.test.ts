/**
 * generate() on a tiny random checkpoint: greedy decoding with the KV cache against an
 * independent recomputation (a full forward pass, no cache, over prompt + prefix at every
 * step), the ends of generation (length, EOS, stop strings, abort, context limit), streaming
 * (stop-string prefixes and split UTF-8 held back) and option checks; generateText's chat
 * formatting with the tiny tokenizer's Llama 3 template.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initTestBackend } from '../helpers/backend.js';
import { BlocklabError, generateText, loadModel, makeTinyCheckpoint, tf, type LoadedModel } from '../../src/main/engine/index.js';
import { generate, type GenerateOptions } from '../../src/main/engine/generate.js';
import type { LlamaModel } from '../../src/main/engine/model.js';
import type { ModelConfig } from '../../src/main/engine/config.js';
import { someIds, testDir } from '../helpers/tmp.js';

const MAX_POS = 48;
const VOCAB = 261; // 256 bytes + 5 special tokens

let loaded: LoadedModel;
let model: LlamaModel;
const PROMPT = someIds(6, 256, 11);

beforeAll(async () => {
  await initTestBackend();
  const root = await testDir('generate');
  const dir = join(root, 'tiny');
  await makeTinyCheckpoint(dir, { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, maxPositions: MAX_POS, seed: 3 });
  loaded = await loadModel(dir);
  model = loaded.model;
});

afterAll(() => loaded?.dispose());

/** One character per id (CJK block, all distinct), so text positions map to tokens. */
const charOf = (id: number) => String.fromCodePoint(0x4e00 + id);
const letters = (ids: number[]) => ids.map(charOf).join('');

/** Last-position logits of a full forward pass over `ids`, without a cache. */
async function lastLogits(ids: number[]): Promise<Float32Array> {
  const out = model.forward([ids]);
  const all = (await out.data()) as Float32Array;
  out.dispose();
  return all.slice((ids.length - 1) * VOCAB, ids.length * VOCAB);
}

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** Greedy continuation recomputed from scratch at every step (optionally with the CTRL penalty). */
async function referenceGreedy(prompt: number[], n: number, penalty = 1): Promise<number[]> {
  const seq = [...prompt];
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const row = Array.from(await lastLogits(seq));
    if (penalty !== 1) {
      for (const id of new Set(seq)) row[id] = row[id] > 0 ? row[id] / penalty : row[id] * penalty;
    }
    const id = argmax(row);
    out.push(id);
    seq.push(id);
  }
  return out;
}

const GREEDY: GenerateOptions = { temperature: 0, eosTokenIds: [] };

function collect(): { deltas: string[]; onText: (d: string) => void } {
  const deltas: string[] = [];
  return { deltas, onText: (d) => deltas.push(d) };
}

/** The first k ≥ 2 whose token does not occur earlier in `ids` (so it is a clean cut point). */
function firstNewAfter(ids: number[], from = 2): number {
  for (let k = from; k < ids.length; k++) if (!ids.slice(0, k).includes(ids[k])) return k;
  throw new Error(`greedy output ${ids} has no new token after position ${from}; pick another prompt or seed`);
}

let reference: number[];
beforeAll(async () => {
  reference = await referenceGreedy(PROMPT, 14);
});

describe('greedy decoding with the KV cache', () => {
  it('equals the argmax of a full no-cache forward pass at every step', async () => {
    const r = await generate(model, PROMPT, letters, { ...GREEDY, maxTokens: 14 });
    expect(r.ids).toEqual(reference);
    expect(r.text).toBe(letters(reference));
    expect(r.finishReason).toBe('length');
    expect(r.promptTokens).toBe(PROMPT.length);
    expect(r.generatedTokens).toBe(14);
    // the tiny model is not degenerate: the test would notice a broken cache
    expect(new Set(reference).size).toBeGreaterThan(3);
  });

  it('with a repetition penalty equals the penalised argmax (prompt and output count as seen)', async () => {
    const want = await referenceGreedy(PROMPT, 10, 1.8);
    const r = await generate(model, PROMPT, letters, { ...GREEDY, repetitionPenalty: 1.8, maxTokens: 10 });
    expect(r.ids).toEqual(want);
    expect(want).not.toEqual(reference.slice(0, 10)); // the penalty made a difference here
  });

  it('the repetition penalty covers the prompt tokens from the first step', async () => {
    // the prompt ends with tokens greedy produced; unpenalised, the next token repeats one of them
    const prompt = PROMPT.concat(reference.slice(0, 4));
    const unpenalised = reference[4];
    expect(prompt).toContain(unpenalised);
    const want = await referenceGreedy(prompt, 3, 3);
    expect(want[0]).not.toBe(unpenalised); // only the prompt can have penalised it at step 0
    const r = await generate(model, prompt, letters, { ...GREEDY, repetitionPenalty: 3, maxTokens: 3 });
    expect(r.ids).toEqual(want);
  });

  it('top-k 1 at temperature 1 is greedy', async () => {
    const r = await generate(model, PROMPT, letters, { temperature: 1, topK: 1, eosTokenIds: [], maxTokens: 14, seed: 5 });
    expect(r.ids).toEqual(reference);
  });

  it('a one-token prompt works', async () => {
    const want = await referenceGreedy([PROMPT[0]], 4);
    const r = await generate(model, [PROMPT[0]], letters, { ...GREEDY, maxTokens: 4 });
    expect(r.ids).toEqual(want);
  });
});

describe('sampling in generate', () => {
  const sampled = (seed: number) =>
    generate(model, PROMPT, letters, { temperature: 1.5, topP: 1, topK: 0, eosTokenIds: [], maxTokens: 16, seed });

  it('the same seed gives the same tokens, another seed different ones', async () => {
    const a = await sampled(1);
    const b = await sampled(1);
    const c = await sampled(2);
    expect(a.ids).toEqual(b.ids);
    expect(a.ids).not.toEqual(c.ids);
    expect(a.ids).not.toEqual(reference.concat(reference).slice(0, 16)); // actually sampled
    for (const id of a.ids) expect(id >= 0 && id < VOCAB).toBe(true);
  });
});

describe('ends of generation', () => {
  it('maxTokens is respected (finishReason length)', async () => {
    for (const n of [1, 5]) {
      const r = await generate(model, PROMPT, letters, { ...GREEDY, maxTokens: n });
      expect(r.ids).toEqual(reference.slice(0, n));
      expect(r.finishReason).toBe('length');
    }
    const zero = await generate(model, PROMPT, letters, { ...GREEDY, maxTokens: 0 });
    expect(zero.ids).toEqual([]);
    expect(zero.text).toBe('');
    expect(zero.finishReason).toBe('length');
  });

  it('an EOS id stops generation where greedy would produce it, excluded from the output', async () => {
    const k = firstNewAfter(reference);
    const { deltas, onText } = collect();
    const r = await generate(model, PROMPT, letters, { temperature: 0, eosTokenIds: [reference[k]], maxTokens: 14, onText });
    expect(r.finishReason).toBe('eos');
    expect(r.ids).toEqual(reference.slice(0, k));
    expect(r.text).toBe(letters(reference.slice(0, k)));
    expect(r.generatedTokens).toBe(k);
    expect(deltas.join('')).toBe(r.text);
  });

  it("defaults to the config's EOS ids", async () => {
    const k = firstNewAfter(reference);
    const patched = Object.create(model) as LlamaModel;
    Object.defineProperty(patched, 'config', { value: { ...model.config, eosTokenIds: [reference[k]] } });
    const r = await generate(patched, PROMPT, letters, { temperature: 0, maxTokens: 14 });
    expect(r.finishReason).toBe('eos');
    expect(r.ids).toEqual(reference.slice(0, k));
  });

  it('the context limit caps generation at max_position_embeddings tokens in all', async () => {
    const prompt = someIds(MAX_POS - 3, 256, 4);
    const r = await generate(model, prompt, letters, { ...GREEDY, maxTokens: 10 });
    expect(r.ids.length).toBe(3);
    expect(r.finishReason).toBe('length');
  });

  it('a prompt longer than max_position_embeddings is a BlocklabError', async () => {
    const prompt = someIds(MAX_POS + 1, 256, 4);
    await expect(generate(model, prompt, letters, GREEDY)).rejects.toBeInstanceOf(BlocklabError);
    await expect(generate(model, prompt, letters, GREEDY)).rejects.toThrow(/max|limit|position/i);
  });

  it('an empty prompt is a BlocklabError', async () => {
    await expect(generate(model, [], letters, GREEDY)).rejects.toBeInstanceOf(BlocklabError);
  });

  it('an aborted signal ends generation with finishReason aborted', async () => {
    const ctrl = new AbortController();
    let calls = 0;
    const r = await generate(model, PROMPT, letters, {
      ...GREEDY,
      maxTokens: 14,
      signal: ctrl.signal,
      onText: () => {
        if (++calls === 3) ctrl.abort();
      },
    });
    expect(r.finishReason).toBe('aborted');
    expect(r.ids).toEqual(reference.slice(0, 3));
    expect(r.text).toBe(letters(reference.slice(0, 3)));

    const before = new AbortController();
    before.abort();
    const none = await generate(model, PROMPT, letters, { ...GREEDY, maxTokens: 14, signal: before.signal });
    expect(none.finishReason).toBe('aborted');
    expect(none.ids).toEqual([]);
  });
});

describe('stop strings and streaming', () => {
  it('cuts the text before the stop string and never streams any of it', async () => {
    const k = firstNewAfter(reference);
    const stop = charOf(reference[k]) + charOf(reference[k + 1]);
    const full = letters(reference);
    const at = full.indexOf(stop);
    expect(at).toBe(k); // reference[k] is new, so the stop string starts exactly at token k
    const { deltas, onText } = collect();
    const r = await generate(model, PROMPT, letters, { ...GREEDY, maxTokens: 14, stop: [stop], onText });
    expect(r.finishReason).toBe('stop');
    expect(r.text).toBe(full.slice(0, at));
    expect(r.ids).toEqual(reference.slice(0, k + 2)); // generation ran until the stop string was complete
    const streamed = deltas.join('');
    expect(streamed).toBe(r.text);
    expect(streamed.includes(stop[0])).toBe(false); // the held-back first character never went out
  });

  it('the earliest of several stop strings wins', async () => {
    const k = firstNewAfter(reference);
    const k2 = firstNewAfter(reference, k + 1);
    const early = charOf(reference[k]);
    const late = charOf(reference[k2]);
    const r = await generate(model, PROMPT, letters, { ...GREEDY, maxTokens: 14, stop: [late, early] });
    expect(r.finishReason).toBe('stop');
    expect(r.text).toBe(letters(reference.slice(0, k)));
    expect(r.ids).toEqual(reference.slice(0, k + 1));
  });

  it('a stop string inside one token cuts that token’s text', async () => {
    // each id decodes to "<char>·"; the stop string "·<next char>" straddles two tokens
    const dotted = (ids: number[]) => ids.map((id) => charOf(id) + '·').join('');
    const k = firstNewAfter(reference);
    const stop = '·' + charOf(reference[k]);
    const { deltas, onText } = collect();
    const r = await generate(model, PROMPT, dotted, { ...GREEDY, maxTokens: 14, stop: [stop], onText });
    expect(r.finishReason).toBe('stop');
    const full = dotted(reference);
    expect(r.text).toBe(full.slice(0, full.indexOf(stop)));
    expect(r.text.endsWith(charOf(reference[k - 1]))).toBe(true);
    expect(deltas.join('')).toBe(r.text);
    // every "·" was held back as a possible start of the stop string until the next token came
    for (const d of deltas) expect(d.endsWith('·')).toBe(false);
  });

  it('a held-back stop-string prefix is released when the stop string does not follow', async () => {
    const k = firstNewAfter(reference);
    const stop = charOf(reference[k]) + '!'; // '!' never appears in the decoded text
    const { deltas, onText } = collect();
    const r = await generate(model, PROMPT, letters, { ...GREEDY, maxTokens: 14, stop: [stop], onText });
    expect(r.finishReason).toBe('length');
    expect(r.text).toBe(letters(reference));
    expect(deltas.join('')).toBe(r.text);
    // token k's character went out only together with the next token's
    const withK = deltas.find((d) => d.includes(charOf(reference[k])))!;
    expect(withK.startsWith(charOf(reference[k]) + charOf(reference[k + 1]))).toBe(true);
  });

  it('holds back a trailing U+FFFD (incomplete UTF-8) until it is completed', async () => {
    // two tokens make one character; an odd count leaves a replacement character at the end
    const paired = (ids: number[]) => {
      let s = '';
      for (let i = 0; i + 1 < ids.length; i += 2) s += charOf(ids[i]);
      return ids.length % 2 ? s + '\uFFFD' : s;
    };
    const { deltas, onText } = collect();
    const r = await generate(model, PROMPT, paired, { ...GREEDY, maxTokens: 10, onText });
    expect(r.text).toBe(paired(reference.slice(0, 10)));
    expect(deltas.join('')).toBe(r.text);
    expect(deltas.some((d) => d.includes('\uFFFD'))).toBe(false);
    expect(deltas.length).toBe(5); // one delta per completed pair
  });

  it('a U+FFFD still pending at the end is part of the final text and the stream', async () => {
    const paired = (ids: number[]) => letters(ids.slice(0, ids.length - (ids.length % 2))) + (ids.length % 2 ? '\uFFFD' : '');
    const { deltas, onText } = collect();
    const r = await generate(model, PROMPT, paired, { ...GREEDY, maxTokens: 3, onText });
    expect(r.text).toBe(letters(reference.slice(0, 2)) + '\uFFFD');
    expect(deltas.join('')).toBe(r.text);
  });
});

describe('streaming real UTF-8 through the byte-level tokenizer', () => {
  /** A stand-in model whose next token follows a script (logits: one-hot). */
  function scripted(script: number[]): LlamaModel {
    let step = 0;
    const config = { ...model.config } as ModelConfig;
    return {
      config,
      newCache: () => ({ k: [], v: [], length: 0 }),
      forward: () => {
        const row = new Float32Array(config.vocabSize).fill(-10);
        row[script[Math.min(step++, script.length - 1)]] = 10;
        return tf.tensor3d(row, [1, 1, config.vocabSize]);
      },
    } as unknown as LlamaModel;
  }

  it('multi-byte characters reach onText only when complete', async () => {
    const tok = loaded.tokenizer!;
    const text = 'aé€😀b';
    const bytes = Array.from(new TextEncoder().encode(text)); // byte ids = byte values
    const eos = tok.eosTokenIds[0];
    const { deltas, onText } = collect();
    const r = await generate(scripted([...bytes, eos]), [tok.encode('x')[0]], (ids) => tok.decode(ids, { skipSpecialTokens: true }), {
      temperature: 0,
      maxTokens: 40,
      onText,
    });
    expect(r.finishReason).toBe('eos');
    expect(r.ids).toEqual(bytes);
    expect(r.text).toBe(text);
    expect(deltas).toEqual(['a', 'é', '€', '😀', 'b']);
  });
});

describe('option checks', () => {
  it.each([
    [{ temperature: -1 }, /temperature/],
    [{ temperature: Number.NaN }, /temperature/],
    [{ topP: 0 }, /top.p/],
    [{ topP: 1.5 }, /top.p/],
    [{ topK: -1 }, /top.k/],
    [{ topK: 1.5 }, /top.k/],
    [{ repetitionPenalty: 0 }, /repetition.penalty/],
    [{ seed: 0.5 }, /seed/],
    [{ maxTokens: -1 }, /max.tokens/],
  ] as [GenerateOptions, RegExp][])('%o is a BlocklabError naming the option', async (o, re) => {
    const err = await generate(model, PROMPT, letters, { ...GREEDY, ...o }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlocklabError);
    expect((err as Error).message).toMatch(re);
  });
});

describe('generateText', () => {
  it('with chat: true formats the prompt with the Llama 3 chat template, system prompt included', async () => {
    const r = await generateText(loaded, { prompt: 'hi', system: 'Be brief.', chat: true, temperature: 0, maxTokens: 2 });
    expect(r.prompt).toContain('<|start_header_id|>user<|end_header_id|>');
    expect(r.prompt).toContain('Be brief.');
    expect(r.prompt).toBe(
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>' +
        '<|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    // 9 special tokens + 36 bytes; BOS written once by the template, not added again
    expect(r.promptTokens).toBe(45);
    expect(r.generatedTokens).toBeLessThanOrEqual(2);
  });

  it('with chat: true and no system prompt has only the user and assistant turns', async () => {
    const r = await generateText(loaded, { prompt: 'hi', chat: true, temperature: 0, maxTokens: 1 });
    expect(r.prompt).toBe(
      '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    expect(r.prompt).not.toContain('system');
  });

  it('without chat the prompt is the text itself', async () => {
    const r = await generateText(loaded, { prompt: 'hello', temperature: 0, maxTokens: 2 });
    expect(r.prompt).toBe('hello');
    expect(r.prompt).not.toContain('<|start_header_id|>');
  });
});
