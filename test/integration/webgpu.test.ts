/**
 * What the engine adds to tfjs-backend-webgpu (src/main/engine/webgpu.ts) and how the backend is
 * chosen (backend.ts), on whatever adapter Dawn finds: Mesa's llvmpipe here and in CI, a GPU
 * on a workstation. The engine's numerical tests as a whole also run on webgpu (the `webgpu`
 * project in vitest.config.ts); this file tests what only webgpu has.
 *
 * Without an adapter the tests are skipped, with the reason in their title — unless
 * BLOCKLAB_REQUIRE_WEBGPU=1 (CI), where that is a failure.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, makeTinyCheckpoint, tf } from '../../src/main/engine/index.js';
import { probeWebgpu, webgpuError } from '../../src/main/engine/webgpu.js';
import { oneJson, runCli } from '../helpers/cli-runner.js';
import { someIds, testDir } from '../helpers/tmp.js';

const probe = await probeWebgpu('all');
if (!probe.found && process.env.BLOCKLAB_REQUIRE_WEBGPU === '1') {
  throw new Error(`BLOCKLAB_REQUIRE_WEBGPU=1, but no WebGPU adapter could be created: ${probe.note}`);
}
const adapter = probe.adapter;
const title = adapter ? `webgpu on ${adapter.device || adapter.description}` : `webgpu — SKIPPED, no adapter could be created here: ${probe.note}`;

/** Deterministic values in [-1, 1) (no tfjs random: the reference needs them in JavaScript). */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

describe.skipIf(!adapter)(title, () => {
  let root: string;
  beforeAll(async () => {
    await initBackend('webgpu');
    root = await testDir('webgpu');
  });

  it('adds more tensors than the adapter binds in one shader (AddN in chunks)', async () => {
    // tfjs-webgpu's AddN binds every input at once; 40 > maxStorageBuffersPerShaderStage (16 on
    // llvmpipe) failed validation before the engine's chunking (the gradient norm of a block: 19)
    const parts = Array.from({ length: 40 }, (_, i) => tf.fill([3, 5], i + 1));
    const sum = tf.addN(parts);
    expect(Array.from(await sum.data())).toEqual(new Array(15).fill((40 * 41) / 2));
    for (const t of [...parts, sum]) t.dispose();
  });

  it('gives the same bits on every run for a matmul tfjs would split over atomics, and the right ones', async () => {
    // [64, 4096] · [4096, 64]: a small output and a long inner dimension, which tfjs-webgpu
    // computes with atomic adds in a varying order (19 of 19 repeats differed on llvmpipe)
    const [M, K, N] = [64, 4096, 64];
    const av = values(M * K, 1);
    const bv = values(K * N, 2);
    const a = tf.tensor2d(av, [M, K]);
    const b = tf.tensor2d(bv, [K, N]);
    const runs: Buffer[] = [];
    let last: Float32Array | null = null;
    for (let r = 0; r < 6; r++) {
      const c = tf.matMul(a, b);
      last = (await c.data()) as Float32Array;
      runs.push(Buffer.from(last.buffer.slice(0)));
      c.dispose();
    }
    for (const r of runs) expect(r.equals(runs[0])).toBe(true);
    // against a float64 reference: entries are ~20 (sums of 4096 products of U(-1,1) values);
    // measured max |error| 1.5e-4 on llvmpipe (float32 sums of 4096 terms)
    let maxErr = 0;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += av[i * K + k] * bv[k * N + j];
        maxErr = Math.max(maxErr, Math.abs(s - last![i * N + j]));
      }
    }
    console.log(`split-K shape on webgpu: max |error| ${maxErr.toExponential(2)} against float64`);
    expect(maxErr).toBeLessThan(1e-3);
    a.dispose();
    b.dispose();
  });

  it('doctor: shows the adapter, and picks it automatically only when it is a GPU', async () => {
    const auto = oneJson<{ active: string; candidates: { name: string; available: boolean; note: string }[]; webgpuAdapter: typeof adapter }>(await runCli(['doctor', '--json']));
    const w = auto.candidates.find((c) => c.name === 'webgpu')!;
    expect(w.available).toBe(true);
    expect(auto.webgpuAdapter).toEqual(adapter);
    expect(auto.webgpuAdapter!.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(auto.webgpuAdapter!.maxBufferSize).toBeGreaterThanOrEqual(auto.webgpuAdapter!.maxStorageBufferBindingSize);
    if (adapter!.software) {
      expect(auto.active).not.toBe('webgpu');
      expect(w.note).toMatch(/software adapter .* never picked automatically; --backend webgpu forces it/);
    } else {
      expect(['webgpu', 'tensorflow-gpu']).toContain(auto.active);
    }
    const forced = oneJson<{ active: string; tfjsBackend: string }>(await runCli(['doctor', '--json', '--backend', 'webgpu']));
    expect(forced.active).toBe('webgpu');
    expect(forced.tfjsBackend).toBe('webgpu');
  });

  it('the CLI on --backend webgpu scores as it does on wasm, and generates with tokens/s reported', async () => {
    const dir = join(root, 'tiny');
    await makeTinyCheckpoint(dir, { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, seed: 3 });
    const idsFile = join(root, 'ids.json');
    await writeFile(idsFile, JSON.stringify(someIds(24, 261, 4)));
    const score = async (backend: string) => oneJson<{ nll: number[] }>(await runCli(['score', dir, '--ids-file', idsFile, '--json', '--backend', backend]));
    const [gpu, wasm] = [await score('webgpu'), await score('wasm')];
    const diff = Math.max(...gpu.nll.map((x, i) => Math.abs(x - wasm.nll[i])));
    console.log(`CLI score, webgpu against wasm: max |Δnll| ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(2e-5); // measured 2.4e-6: both float32, different summation orders
    const gen = await runCli(['generate', dir, '--prompt', 'The', '--max-tokens', '8', '--temperature', '0', '--backend', 'webgpu']);
    expect(gen.code, gen.stderr).toBe(0);
    expect(gen.stderr).toMatch(/decode [\d.]+ tok\/s on webgpu/);
  });

  // an embedding and head larger than the adapter binds whole: llvmpipe's 128 MiB (a real GPU's
  // limit is larger, so this shape only exercises the split where the limit is small)
  it.skipIf(!adapter || adapter.maxStorageBufferBindingSize > 160 * 2 ** 20)(
    'an embedding and LM head over maxStorageBufferBindingSize are kept as blocks of rows: scoring matches wasm, block-only training runs and refuses full',
    async () => {
      const V = 32000;
      const D = 1088; // 32000 × 1088 float32 = 133 MiB > 128 MiB
      expect(V * D * 4).toBeGreaterThan(adapter!.maxStorageBufferBindingSize);
      const base = join(root, 'wide-vocab');
      await makeTinyCheckpoint(base, { layers: 1, hidden: D, heads: 8, kvHeads: 4, intermediate: 256, tie: false, padVocabTo: V, dtype: 'BF16', distribution: 'uniform', seed: 5 });
      const idsFile = join(root, 'wide-ids.json');
      await writeFile(idsFile, JSON.stringify(someIds(16, 261, 9)));
      const score = async (backend: string) => {
        const r = await runCli(['score', base, '--ids-file', idsFile, '--json', '--backend', backend]);
        expect(r.code, r.stderr).toBe(0);
        return oneJson<{ nll: number[] }>(r);
      };
      const [gpu, wasm] = [await score('webgpu'), await score('wasm')];
      const diff = Math.max(...gpu.nll.map((x, i) => Math.abs(x - wasm.nll[i])));
      console.log(`split head, webgpu against wasm: max |Δnll| ${diff.toExponential(2)}`);
      expect(diff).toBeLessThan(1e-4); // measured 1.3e-5: float32 both, 1088-long dot products summed in other orders
      // block-only tuning: the head's cross-entropy reads it a block of rows at a time
      const expanded = join(root, 'wide-vocab-x');
      const ex = await runCli(['expand', base, '--blocks', '1', '--out', expanded, '--json']);
      expect(ex.code, ex.stderr).toBe(0);
      const corpus = join(root, 'wide-corpus.txt');
      await writeFile(corpus, 'the quick brown fox jumps over the lazy dog. '.repeat(40));
      const run = await runCli(['train', expanded, '--data', corpus, '--out', join(root, 'wide-run'), '--steps', '2', '--batch', '1', '--seq', '16', '--eval-every', '0', '--json', '--backend', 'webgpu']);
      expect(run.code, run.stderr).toBe(0);
      const r = oneJson<{ steps: number; last_loss: number }>(run);
      expect(r.steps).toBe(2);
      expect(Number.isFinite(r.last_loss)).toBe(true);
      // full fine-tuning would train the 133 MiB head as one tensor: refused before loading, saying why
      const full = await runCli(['train', expanded, '--data', corpus, '--out', join(root, 'wide-full'), '--method', 'full', '--steps', '1', '--batch', '1', '--seq', '16', '--backend', 'webgpu']);
      expect(full.code).toBe(1);
      expect(full.stderr).toMatch(/would train as one tensor, more than the .* this GPU can use whole/);
    },
    240_000,
  );

  // last: it poisons this process's device on purpose
  it.skipIf(!adapter || adapter.maxStorageBufferBindingSize > 512 * 2 ** 20)(
    'a tensor over maxStorageBufferBindingSize fails the next read with the reason, instead of giving wrong numbers',
    async () => {
      expect(webgpuError()).toBeNull();
      const n = adapter!.maxStorageBufferBindingSize / 4 + 1024;
      const big = tf.fill([n], 1);
      const y = tf.add(big, 1);
      await expect(y.data()).rejects.toThrow(/the GPU refused the computation .*larger than this adapter.s maxStorageBufferBindingSize/);
      expect(webgpuError()).toMatch(/binding size/i);
      big.dispose();
      y.dispose();
    },
  );
});
