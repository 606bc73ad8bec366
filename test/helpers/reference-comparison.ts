/**
 * The comparison of the engine with the transformers reference fixtures
 * (test/fixtures/hf-reference/<name>/expected.json, made by test/reference/make_fixtures.py),
 * as one function: hf-reference.test.ts asserts that it passes on every fixture, and
 * wrong-models.test.ts asserts that it fails on every deliberately wrong model. It uses the
 * engine's public functions only (loadModel, scoreIds, the forward pass, generate).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, scoreIds } from '../../src/main/engine/index.js';
import { generate } from '../../src/main/engine/generate.js';

export const FIXTURE_ROOT = join(import.meta.dirname, '..', 'fixtures', 'hf-reference');
export const FIXTURES = readdirSync(FIXTURE_ROOT).filter((f) => statSync(join(FIXTURE_ROOT, f)).isDirectory());

export interface Expected {
  ids: number[];
  nll: number[];
  mean_nll: number;
  last_logits: number[];
  argmax: number[];
  argmax_margin: number[];
  greedy_continuation: number[];
}

export function expectedFor(name: string): Expected {
  return JSON.parse(readFileSync(join(FIXTURE_ROOT, name, 'expected.json'), 'utf8')) as Expected;
}

/** What the engine got wrong, measured. */
export interface Measured {
  /** max over positions of |nll − reference| */
  nll: number;
  /** |mean nll − reference| */
  meanNll: number;
  /** max over the vocabulary of |last-position logit − reference| */
  lastLogits: number;
  /** positions whose reference top-1 wins by more than twice the logit tolerance but the engine's top-1 differs */
  argmaxMismatches: number;
  /** the engine's greedy continuation (KV cache), and whether it equals the reference's */
  greedy: number[];
  greedyMatches: boolean;
}

export interface Tolerance {
  nll: number;
  meanNll: number;
  lastLogits: number;
}

/**
 * Tolerances per storage dtype, each about 10× the largest error measured on the fixtures of
 * that dtype (wasm backend, 2026-12; the engine computes in float32 from the stored values, so
 * the error is float32 rounding in both the engine and the PyTorch float32 reference — which
 * itself differs from a float64 forward pass by up to 1.3e-5 per token on the 384-token fixture):
 *
 *   dtype  per-token NLL   mean NLL    last logits   (measured max → tolerance)
 *   F32    1.1e-5 → 1e-4   9.1e-7 → 1e-5   8.1e-6 → 8e-5
 *   F16    9.5e-6 → 1e-4   9.7e-7 → 1e-5   5.8e-6 → 6e-5
 *   BF16   8.6e-6 → 9e-5   5.1e-7 → 5e-6   8.1e-6 → 8e-5
 *
 * The wrong models of test/helpers/wrong-models.ts move these by 1.5e-4 (rope_theta × 1.001 on
 * the 48-token small-activation fixture) to 10 and more; wrong-models.test.ts checks that
 * every one of them fails on every fixture it applies to.
 */
export const TOLERANCES: Record<'F32' | 'F16' | 'BF16', Tolerance> = {
  F32: { nll: 1e-4, meanNll: 1e-5, lastLogits: 8e-5 },
  F16: { nll: 1e-4, meanNll: 1e-5, lastLogits: 6e-5 },
  BF16: { nll: 9e-5, meanNll: 5e-6, lastLogits: 8e-5 },
};

/** The tolerance for a fixture: by the dtype its config.json says it is stored in. */
export function toleranceFor(name: string): Tolerance {
  const config = JSON.parse(readFileSync(join(FIXTURE_ROOT, name, 'config.json'), 'utf8')) as { torch_dtype: string };
  const dtype = ({ float32: 'F32', float16: 'F16', bfloat16: 'BF16' } as const)[config.torch_dtype as 'float32'];
  if (!dtype) throw new Error(`${name}: torch_dtype ${config.torch_dtype} has no tolerance`);
  return TOLERANCES[dtype];
}

/** Runs the engine on a checkpoint folder and measures it against the reference's expected values. */
export async function measureAgainstReference(dir: string, want: Expected, tol: Tolerance): Promise<Measured> {
  const loaded = await loadModel(dir);
  try {
    const got = await scoreIds(loaded, want.ids);
    const nll = Math.max(...want.nll.map((w, i) => Math.abs(w - got.nll[i])));

    const logits = loaded.model.forward([want.ids]);
    const V = want.last_logits.length;
    const all = (await logits.data()) as Float32Array;
    logits.dispose();
    const T = want.ids.length;
    const last = all.subarray((T - 1) * V, T * V);
    const lastLogits = Math.max(...want.last_logits.map((w, i) => Math.abs(w - last[i])));
    let argmaxMismatches = 0;
    for (let t = 0; t < T; t++) {
      if (want.argmax_margin[t] <= 2 * tol.lastLogits) continue; // within tolerance, either token may win
      const row = all.subarray(t * V, (t + 1) * V);
      let best = 0;
      for (let v = 1; v < V; v++) if (row[v] > row[best]) best = v;
      if (best !== want.argmax[t]) argmaxMismatches++;
    }

    const greedy = (
      await generate(loaded.model, want.ids, () => '', { temperature: 0, maxTokens: want.greedy_continuation.length, eosTokenIds: [] })
    ).ids;
    return {
      nll,
      meanNll: Math.abs(got.mean_nll - want.mean_nll),
      lastLogits,
      argmaxMismatches,
      greedy,
      greedyMatches: greedy.length === want.greedy_continuation.length && greedy.every((id, i) => id === want.greedy_continuation[i]),
    };
  } finally {
    loaded.dispose();
  }
}

/** Every way `m` is out of tolerance, in words; empty when the engine matches the reference. */
export function referenceFailures(m: Measured, tol: Tolerance): string[] {
  const out: string[] = [];
  if (!(m.nll <= tol.nll)) out.push(`per-token NLL differs by ${m.nll.toExponential(2)} (tolerance ${tol.nll})`);
  if (!(m.meanNll <= tol.meanNll)) out.push(`mean NLL differs by ${m.meanNll.toExponential(2)} (tolerance ${tol.meanNll})`);
  if (!(m.lastLogits <= tol.lastLogits)) out.push(`last-position logits differ by ${m.lastLogits.toExponential(2)} (tolerance ${tol.lastLogits})`);
  if (m.argmaxMismatches > 0) out.push(`top-1 token differs at ${m.argmaxMismatches} positions`);
  if (!m.greedyMatches) out.push(`greedy continuation differs (${JSON.stringify(m.greedy)})`);
  return out;
}
