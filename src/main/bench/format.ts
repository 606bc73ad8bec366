/** The bench's human-readable table (stdout without --json). */
import type { BenchReport, ShapeReport } from './report.js';
import { formatBytes as bytes, formatCount } from '../cli/format.js';

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (s: number) => `${(s * 1000).toFixed(s < 0.1 ? 1 : 0)} ms`;
const count = formatCount;
const ratio = (x: number) => `${x.toFixed(2)}×`;

/** Rows of cells: the first column left-aligned, the others right-aligned (all left with `left`). */
function grid(rows: string[][], left = false): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => '  ' + r.map((c, i) => (i === 0 || left ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('   ').trimEnd()).join('\n');
}

function shapeSection(s: ShapeReport): string {
  const { blocks, full } = s.training;
  const lines: string[] = [];
  lines.push(`${s.name} — ${s.shape}`);
  lines.push(`  ${s.about}; new blocks at ${s.model.new_layers.join(', ')}; ${count(s.model.params)} parameters, ${bytes(s.model.bytes)}`);
  const f = <T>(pick: (x: NonNullable<typeof full>) => T, show: (v: T) => string) => (full ? show(pick(full)) : '—');
  const rows: string[][] = [
    ['training', 'blocks', 'full'],
    ['tokens/s', int(blocks.tokens_per_second), f((x) => x.tokens_per_second, int)],
    ['step time (median)', ms(blocks.step_seconds.median), f((x) => x.step_seconds.median, ms)],
    ['trainable parameters', count(blocks.trainable_params), f((x) => x.trainable_params, count)],
    ['AdamW state', bytes(blocks.optimizer_state_bytes), f((x) => x.optimizer_state_bytes, bytes)],
    ['frozen weights', blocks.residency, f((x) => x.residency, String)],
    ['peak RSS (own process)', bytes(blocks.peak_rss_bytes), f((x) => x.peak_rss_bytes, bytes)],
    ['peak tensor memory', bytes(blocks.peak_tensor_bytes), f((x) => x.peak_tensor_bytes, bytes)],
    ...(blocks.wasm_heap_bytes ? [['wasm heap (high-water)', bytes(blocks.wasm_heap_bytes), f((x) => x.wasm_heap_bytes, bytes)]] : []),
  ];
  const t = s.torch;
  if (t?.available && t.best && t.tfjs_over_torch) {
    rows.push(['PyTorch tokens/s', `${int(t.best.blocks.tokens_per_second)} (${t.best.blocks.threads}t)`, `${int(t.best.full.tokens_per_second)} (${t.best.full.threads}t)`]);
    for (const [th, r] of Object.entries(t.by_threads ?? {})) {
      rows.push([`  PyTorch, ${th} thread${th === '1' ? '' : 's'}`, r.blocks ? int(r.blocks.tokens_per_second) : '—', r.full ? int(r.full.tokens_per_second) : '—']);
    }
    rows.push(['tfjs ÷ PyTorch', ratio(t.tfjs_over_torch.blocks), ratio(t.tfjs_over_torch.full)]);
  }
  lines.push(grid(rows));
  const tr = s.training;
  if (tr.blocks_to_full_step_time_ratio === null) lines.push(`  full fine-tuning not run: ${tr.full_skipped ?? 'skipped'}`);
  else {
    lines.push(
      `  step time blocks ÷ full: ${tr.blocks_to_full_step_time_ratio.toFixed(2)} (target ≤ ${tr.target_ratio}: ${tr.meets_target ? 'met' : 'not met'})` +
        (t?.available && t.best ? `; PyTorch: ${t.best.blocks_to_full_step_time_ratio.toFixed(2)}` : ''),
    );
  }
  lines.push(`  freezing saves ${bytes(blocks.optimizer_bytes_saved_by_freezing)} of AdamW state (2 moments × 4 bytes × ${count(blocks.frozen_params)} frozen parameters)`);
  const inf = s.inference;
  lines.push(
    grid([
      ['inference', ''],
      ['prefill tokens/s', `${int(inf.prefill.tokens_per_second)}  (${inf.prefill.tokens} tokens, one forward)`],
      ['decode tokens/s', `${int(inf.decode.tokens_per_second)}  (${inf.decode.tokens} tokens greedy, KV cache, after ${inf.decode.prompt_tokens})`],
      ['checkpoint load', `${int(inf.load.mb_per_second)} MB/s  (${bytes(inf.load.bytes)} in ${ms(inf.load.seconds.median)})`],
      ['weights', inf.residency === 'resident' ? 'resident float32' : inf.residency === 'packed' ? 'packed: stored precision on the GPU, widened by a shader as each block or head chunk computes' : 'streamed: stored precision in RAM, widened a block at a time'],
      ['peak RSS (own process)', `${bytes(inf.peak_rss_bytes)}  (${(inf.peak_rss_bytes / s.model.bytes).toFixed(2)}× the checkpoint)`],
      ...(inf.wasm_heap_bytes ? [['wasm heap (high-water)', bytes(inf.wasm_heap_bytes)]] : []),
    ], true),
  );
  if (s.profile) {
    const p = s.profile;
    const ph = p.phases_ms;
    lines.push(`  where a ${p.method} step goes: forward ${ph.forward.toFixed(0)} ms, backward ${ph.backward.toFixed(0)} ms, clip ${ph.clip.toFixed(1)} ms, optimizer ${ph.optimizer.toFixed(1)} ms`);
    if (p.kernel_times_note) {
      lines.push(`  ${p.kernel_times_note}`);
      return lines.join('\n');
    }
    lines.push(
      grid([
        ['kernel time by category (one profiled step)', 'ms', 'share', 'GFLOP/s'],
        ...p.categories.map((c) => [c.name, c.ms.toFixed(1), `${(c.share * 100).toFixed(1)}%`, c.gflops !== undefined ? c.gflops.toFixed(1) : '']),
      ]),
    );
    lines.push(
      grid([
        ['top kernels', 'calls', 'ms', 'GFLOP/s'],
        ...p.top_kernels.slice(0, 10).map((k) => [`${k.kernel} ${k.shapes}${k.route ? ` ${k.route}` : ''}`, String(k.calls), k.ms.toFixed(1), k.gflops !== undefined ? k.gflops.toFixed(1) : '']),
      ]),
    );
  }
  return lines.join('\n');
}

export function formatBenchReport(r: BenchReport): string {
  const b = r.backend;
  const head = [
    `blocklab bench ${r.quick ? '(quick: a smoke run, not a measurement) ' : ''}— backend ${b.active}` +
      (b.wasm_simd !== null ? ` (SIMD ${b.wasm_simd ? 'on' : 'off'}, threads ${b.wasm_threads ? 'on' : 'off'})` : '') +
      (b.webgpu_adapter ? ` on ${b.webgpu_adapter.device || b.webgpu_adapter.description}${b.webgpu_adapter.software ? ` (${b.webgpu_adapter.software}: a correctness path, not a GPU measurement)` : ` (${b.webgpu_adapter.description})`}` : '') +
      `, node ${r.node}, ${r.cpu.model} × ${r.cpu.cores}, load ${r.cpu.load_average_1m_at_start.toFixed(2)} at start`,
  ];
  if (r.torch.requested && r.torch.available) {
    const blas = r.torch.blas;
    head.push(`PyTorch ${r.torch.torch_version} (${r.torch.python}), BLAS ${blas?.library ?? 'unknown'}, 512×512 matmul ${blas ? blas.gflops_512.toFixed(0) : '?'} GFLOP/s on 1 thread`);
    if (blas?.warning) head.push(`warning: ${blas.warning}`);
  } else if (r.torch.requested) head.push(`PyTorch comparison skipped: ${r.torch.reason}`);
  return [head.join('\n'), ...r.shapes.map(shapeSection), `(${r.seconds.toFixed(0)} s; ${r.note})`].join('\n\n');
}
