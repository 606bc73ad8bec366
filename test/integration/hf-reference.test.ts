/**
 * Per-token NLL, logits (the last position's, and the top-1 token at every position) and greedy
 * continuations against values computed by a PyTorch transcription of transformers'
 * LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM (test/reference/hf_reference.py;
 * fixtures in test/fixtures/hf-reference, made independently of the TypeScript engine, see their
 * README). Tolerances are per dtype, about 10× the measured error (test/helpers/reference-comparison.ts);
 * test/integration/wrong-models.test.ts shows that this comparison fails on wrong models.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initTestBackend, TEST_BACKEND } from '../helpers/backend.js';
import { FIXTURES, FIXTURE_ROOT, expectedFor, measureAgainstReference, referenceFailures, toleranceFor, type Measured } from '../helpers/reference-comparison.js';

const measured = new Map<string, Measured>();

beforeAll(async () => {
  await initTestBackend();
});

afterAll(() => {
  const rows = [...measured].map(([name, m]) => `${name.padEnd(30)} nll ${m.nll.toExponential(2)}  mean ${m.meanNll.toExponential(2)}  last logits ${m.lastLogits.toExponential(2)}`);
  if (rows.length) console.log(`engine vs transformers reference on ${TEST_BACKEND}, measured:\n${rows.join('\n')}`);
});

describe('matches the transformers reference', () => {
  it('has fixtures for every supported architecture and every stored dtype', () => {
    expect(FIXTURES.some((f) => f.startsWith('llama'))).toBe(true);
    expect(FIXTURES.some((f) => f.startsWith('mistral'))).toBe(true);
    expect(FIXTURES.some((f) => f.startsWith('qwen2'))).toBe(true);
    for (const dtype of ['f32', 'f16', 'bf16']) expect(FIXTURES.some((f) => f.endsWith(`-${dtype}`) || f.includes(`-${dtype}-`))).toBe(true);
  });

  it.each(FIXTURES)('%s', async (name) => {
    const want = expectedFor(name);
    const tol = toleranceFor(name);
    const m = await measureAgainstReference(join(FIXTURE_ROOT, name), want, tol);
    measured.set(name, m);
    expect(referenceFailures(m, tol)).toEqual([]);
    // the comparison covered what it claims: a full continuation and a top-1 check at most positions
    expect(m.greedy).toHaveLength(want.greedy_continuation.length);
    expect(want.argmax_margin.filter((x) => x > 2 * tol.lastLogits).length).toBeGreaterThan(0.9 * want.ids.length);
  });
});
