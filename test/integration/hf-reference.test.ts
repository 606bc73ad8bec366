/**
 * Per-token NLL, last-position logits and greedy continuations against values computed by a
 * PyTorch transcription of transformers' LlamaForCausalLM / MistralForCausalLM /
 * Qwen2ForCausalLM (test/reference/hf_reference.py; fixtures in test/fixtures/hf-reference,
 * made independently of the TypeScript engine, see their README).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initTestBackend, TEST_BACKEND } from '../helpers/backend.js';
import { loadModel, scoreIds } from '../../src/main/engine/index.js';
import { generate } from '../../src/main/engine/generate.js';

const ROOT = join(import.meta.dirname, '..', 'fixtures', 'hf-reference');
const FIXTURES = readdirSync(ROOT).filter((f) => statSync(join(ROOT, f)).isDirectory());

interface Expected {
  ids: number[];
  nll: number[];
  mean_nll: number;
  last_logits: number[];
  greedy_continuation: number[];
}

beforeAll(async () => {
  await initTestBackend();
});

describe('matches the transformers reference', () => {
  it('has fixtures for every supported architecture', () => {
    expect(FIXTURES.some((f) => f.startsWith('llama'))).toBe(true);
    expect(FIXTURES.some((f) => f.startsWith('mistral'))).toBe(true);
    expect(FIXTURES.some((f) => f.startsWith('qwen2'))).toBe(true);
  });

  it.each(FIXTURES)('%s', async (name) => {
    const dir = join(ROOT, name);
    const want = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected;
    const loaded = await loadModel(dir);
    try {
      const got = await scoreIds(loaded, want.ids);
      const nllDiff = Math.max(...want.nll.map((w, i) => Math.abs(w - got.nll[i])));
      // measured over the six fixtures, wasm / webgpu: max |Δnll| 9.5e-6 / 1.1e-5, |Δmean| 9.7e-7 /
      // 5.5e-7, max |Δlogit| 8.1e-6 / 8.1e-6 (float32 on both sides, different summation orders)
      expect(nllDiff).toBeLessThan(1e-4);
      expect(Math.abs(got.mean_nll - want.mean_nll)).toBeLessThan(1e-5);

      const logits = loaded.model.forward([want.ids], { lastOnly: true });
      const last = Array.from(await logits.data());
      logits.dispose();
      const logitDiff = Math.max(...want.last_logits.map((w, i) => Math.abs(w - last[i])));
      console.log(`transformers reference (${name}, ${TEST_BACKEND}): max |Δnll| ${nllDiff.toExponential(2)}, |Δmean| ${Math.abs(got.mean_nll - want.mean_nll).toExponential(2)}, max |Δlogit| ${logitDiff.toExponential(2)}`);
      expect(logitDiff).toBeLessThan(1e-4);

      const greedy = await generate(loaded.model, want.ids, () => '', {
        temperature: 0,
        maxTokens: want.greedy_continuation.length,
        eosTokenIds: [],
      });
      expect(greedy.ids).toEqual(want.greedy_continuation);
    } finally {
      loaded.dispose();
    }
  });
});
