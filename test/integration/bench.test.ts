/**
 * `blocklab bench` as a user runs it: one quick run on the demo shape, checked for the shape
 * of its JSON document and for figures that are positive and finite. Benchmarks are never
 * timed tests (DESIGN.md §6): no threshold on any figure here.
 */
import { readdir } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { oneJson, runCli, stderrLines } from '../helpers/cli-runner.js';
import { testDir } from '../helpers/tmp.js';
import type { BenchReport, Timing, TrainFigures } from '../../src/main/bench/report.js';

function positive(x: unknown, what: string): void {
  expect(typeof x, what).toBe('number');
  expect(Number.isFinite(x as number), `${what} = ${x}`).toBe(true);
  expect(x as number, what).toBeGreaterThan(0);
}

function timing(t: Timing, what: string): void {
  for (const k of ['median', 'mean', 'min', 'max'] as const) positive(t[k], `${what}.${k}`);
  expect(t.min).toBeLessThanOrEqual(t.median);
  expect(t.median).toBeLessThanOrEqual(t.max);
  expect(t.samples).toBeGreaterThanOrEqual(1);
}

function trainFigures(f: TrainFigures, method: 'blocks' | 'full'): void {
  expect(f.method).toBe(method);
  for (const k of ['tokens_per_second', 'trainable_params', 'total_params', 'optimizer_state_bytes', 'peak_rss_bytes', 'peak_tensor_bytes', 'first_loss', 'last_loss'] as const) {
    positive(f[k], `${method}.${k}`);
  }
  timing(f.step_seconds, `${method}.step_seconds`);
  expect(f.frozen_params).toBe(f.total_params - f.trainable_params);
  expect(f.optimizer_state_bytes).toBe(2 * 4 * f.trainable_params);
  expect(f.optimizer_bytes_saved_by_freezing).toBe(2 * 4 * f.frozen_params);
}

describe('blocklab bench', () => {
  it('--quick --json --shapes demo prints one document with every figure', async () => {
    // the bench makes its models under os.tmpdir(): point it at a folder of ours to see it cleans up
    const tmp = await testDir('bench');
    const before = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    let r;
    try {
      r = await runCli(['bench', '--quick', '--json', '--shapes', 'demo'], { timeoutMs: 170_000 });
    } finally {
      if (before === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = before;
    }
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trimEnd().split('\n')).toHaveLength(1);
    const doc = oneJson<BenchReport>(r);

    expect(doc.benchmark).toBe('blocklab bench');
    expect(doc.quick).toBe(true);
    expect(doc.node).toBe(process.version);
    expect(doc.backend.active).toMatch(/^(wasm|cpu|tensorflow-cpu|tensorflow-gpu|webgpu)$/);
    expect(doc.cpu.model.length).toBeGreaterThan(0);
    expect(doc.cpu.cores).toBeGreaterThanOrEqual(1);
    expect(doc.torch).toEqual({ requested: false, available: null });
    expect(doc.shapes).toHaveLength(1);

    const s = doc.shapes[0];
    expect(s.name).toBe('demo');
    expect(s.shape).toContain('hidden 64');
    expect(s.model).toMatchObject({ architecture: 'LlamaForCausalLM', base_layers: 4, layers: 6, hidden: 64, heads: 4, kv_heads: 2, head_dim: 16, intermediate: 176, vocab: 261, tied: true });
    expect(s.model.new_layers).toHaveLength(2);
    positive(s.model.params, 'params');
    positive(s.model.bytes, 'bytes');
    positive(s.batch, 'batch');
    positive(s.seq, 'seq');

    trainFigures(s.training.blocks, 'blocks');
    const full = s.training.full!;
    trainFigures(full, 'full');
    expect(s.training.blocks.trainable_params).toBeLessThan(full.trainable_params);
    expect(full.trainable_params).toBe(full.total_params);
    expect(s.training.blocks.residency).toBe('resident');
    expect(s.inference.residency).toBe('resident');
    positive(s.training.blocks_to_full_step_time_ratio, 'ratio');
    expect(s.training.target_ratio).toBe(0.7);
    // the verdict follows from the figures printed beside it
    expect(s.training.blocks_to_full_step_time_ratio).toBeCloseTo(s.training.blocks.step_seconds.median / s.training.full!.step_seconds.median, 12);
    expect(s.training.meets_target).toBe(s.training.blocks_to_full_step_time_ratio! <= 0.7);

    const inf = s.inference;
    positive(inf.load.bytes, 'load.bytes');
    positive(inf.load.mb_per_second, 'load.mb_per_second');
    timing(inf.load.seconds, 'load.seconds');
    positive(inf.prefill.tokens, 'prefill.tokens');
    positive(inf.prefill.tokens_per_second, 'prefill.tokens_per_second');
    timing(inf.prefill.seconds, 'prefill.seconds');
    positive(inf.decode.tokens, 'decode.tokens');
    positive(inf.decode.tokens_per_second, 'decode.tokens_per_second');
    positive(inf.peak_rss_bytes, 'inference.peak_rss_bytes');
    expect(s.torch).toBeUndefined();
    expect(s.profile).toBeUndefined();

    // the temporary models are gone (tsx keeps its compile cache there too: not ours)
    expect((await readdir(tmp)).filter((n) => n.startsWith('blocklab-bench-'))).toEqual([]);
  }, 180_000);

  it('refuses an unknown shape with one line', async () => {
    const r = await runCli(['bench', '--shapes', 'demo,gpt5']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const lines = stderrLines(r);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^blocklab: --shapes: unknown shape "gpt5"; use demo, tinyllama/);
  });
});
