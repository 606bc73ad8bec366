/**
 * Reports from a real store: two tiny training runs on an expanded model, recorded the way the
 * job supervisor records them, turned into ReportData and written as HTML, Markdown and a PDF
 * printed by Chromium with every network request blocked.
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expandModel, makeTinyCheckpoint } from '../../src/main/engine/index.js';
import { DEFAULT_ADAMW } from '../../src/main/engine/optimizer.js';
import { TRAIN_DEFAULTS } from '../../src/main/engine/trainer.js';
import { registerCheckpointDir, startJob } from '../../src/main/jobs/supervisor.js';
import { buildRunReport, chromiumMissing, htmlToPdf, PdfError, writeReport } from '../../src/main/report/index.js';
import { ExperimentStore } from '../../src/main/store/index.js';
import type { TrainJob } from '../../src/shared/jobs.js';
import type { ReportData, ReportForgetting } from '../../src/shared/report.js';
import { testDir } from '../helpers/tmp.js';
import { englishText } from '../helpers/corpus.js';

let root: string;
let store: ExperimentStore;
let runIds: number[];
const chromiumProblem = await chromiumMissing();
if (chromiumProblem) console.warn(`report PDF tests ${process.env.CI ? 'will fail (CI must install chromium)' : 'skipped'}: ${chromiumProblem}`);

beforeAll(async () => {
  root = await testDir('report');
  const base = join(root, 'tiny-base');
  const expanded = join(root, 'expanded');
  await makeTinyCheckpoint(base, { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64 });
  const exp = await expandModel(base, { blocks: 1 }, { out: expanded });
  const corpus = join(root, 'corpus.txt');
  writeFileSync(corpus, englishText(12000));

  store = ExperimentStore.open(join(root, 'store.sqlite'));
  // What `blocklab expand` records: the base, the expanded checkpoint and how it was made.
  const baseId = await registerCheckpointDir(store, base, 'import');
  const expandedId = await registerCheckpointDir(store, expanded, 'expand', { parentId: baseId });
  store.recordExpansion({ checkpointId: expandedId, baseCheckpointId: baseId, record: exp.record });

  const job = (out: string, method: TrainJob['method']): TrainJob => ({
    ...TRAIN_DEFAULTS,
    model: expanded,
    data: { paths: [corpus] },
    out,
    method,
    steps: 6,
    batch: 2,
    seq: 32,
    warmup: 1,
    lr: 1e-3,
    evalEvery: 2,
    adamw: DEFAULT_ADAMW,
    cacheDir: join(root, 'cache'),
    resume: false,
  });
  // both runs at once: each is its own engine process
  const handles = (
    [
      ['blocks', { kind: 'blocks' }],
      ['full', { kind: 'full' }],
    ] as const
  ).map(([name, method]) => startJob({ kind: 'train', train: job(join(root, `run-${name}`), method) }, { store }));
  const outcomes = await Promise.all(handles.map((h) => h.done));
  expect(outcomes.map((o) => o.status)).toEqual(['completed', 'completed']);
  runIds = handles.map((h) => h.runId!);
}, 60_000);

afterAll(() => store?.close());

/** A comparison of the two trained checkpoints with the base, as the eval engine would give it. */
function forgettingFor(data: ReportData): ReportForgetting {
  const base = data.checkpoints.find((c) => c.madeBy === 'import')!.label;
  const cks = data.runs.map((r) => r.result!);
  const row = (benchmark: string, baseValue: number, values: number[], flag: 'gain' | 'forgetting', higher: boolean) => ({
    benchmark,
    base: baseValue,
    values: cks.map((checkpoint, i) => ({
      checkpoint,
      value: values[i],
      stderr: higher ? 0.02 : null,
      delta: flag === 'gain' ? (higher ? values[i] - baseValue : baseValue - values[i]) : higher ? baseValue - values[i] : values[i] - baseValue,
      flag,
    })),
  });
  return {
    base,
    checkpoints: cks,
    benchmarks: [
      { name: 'general-ppl', kind: 'perplexity', domain: 'general', role: 'old', metric: 'word_perplexity', higherIsBetter: false },
      { name: 'code-mc', kind: 'multiple_choice', domain: 'code', role: 'new', metric: 'acc_norm', higherIsBetter: true },
    ],
    rows: [row('general-ppl', 310.5, [318.2, 402.9], 'forgetting', false), row('code-mc', 0.25, [0.31, 0.33], 'gain', true)],
    summary: [
      { checkpoint: cks[0], meanGain: 0.06, meanForgetting: 7.7 },
      { checkpoint: cks[1], meanGain: 0.08, meanForgetting: 92.4 },
    ],
    deltaNote: 'gain = improvement over the base on new-domain benchmarks; forgetting = how much worse than the base on old-domain ones (positive = forgot).',
  };
}

describe('reports from the store', () => {
  it('buildRunReport gathers curves, the trainer summary, the lineage and the environment', () => {
    const data = buildRunReport(store, runIds, { createdAt: '2026-11-28T12:00:00.000Z', notes: ['Tiny runs: **6 steps** each.'] });
    expect(data.forgetting).toBeNull();
    expect(data.createdAt).toBe('2026-11-28T12:00:00.000Z');
    expect(data.notes).toEqual(['Tiny runs: **6 steps** each.']);

    const [blocks, full] = data.runs;
    expect(blocks.id).toBe(runIds[0]);
    expect(blocks.method).toBe('blocks');
    expect(blocks.label).toBe('blocks (interleave +1)');
    expect(full.method).toBe('full');
    for (const r of data.runs) {
      const run = store.getRun(r.id!)!;
      const summary = run.summary as Record<string, number>;
      expect(r.status).toBe('completed');
      expect(r.steps).toBe(6);
      expect(r.firstLoss).toBe(summary.firstLoss);
      expect(r.lastLoss).toBe(summary.lastLoss);
      expect(r.valLoss).toBe(summary.valLoss);
      expect(r.tokensPerSecond).toBeGreaterThan(0);
      expect(r.seconds).toBe(summary.seconds);
      expect(r.totalParams).toBe(summary.totalParams);
      expect(r.curves.find((c) => c.name === 'loss')!.points.map((p) => p[0])).toEqual([1, 2, 3, 4, 5, 6]);
      expect(r.curves.find((c) => c.name === 'val_loss')!.points.length).toBeGreaterThanOrEqual(3);
      expect((r.config as { method: { kind: string } }).method.kind).toBe(r.method);
      expect(r.base).toBe('expanded');
    }
    // blocks trains the new block only; full trains everything
    expect(blocks.trainableParams!).toBeLessThan(blocks.totalParams!);
    expect(full.trainableParams).toBe(full.totalParams);

    // lineage: base → expanded → one trained model per run
    const byLabel = new Map(data.checkpoints.map((c) => [c.label, c]));
    expect(byLabel.get('tiny-base')).toMatchObject({ madeBy: 'import', parent: null, path: join(root, 'tiny-base') });
    expect(byLabel.get('expanded')).toMatchObject({ madeBy: 'expand', parent: 'tiny-base' });
    expect(byLabel.get('expanded')!.detail).toMatch(/^interleave: 2 → 3 layers, new \d←\d; identity max \|Δlogit\|/);
    expect(blocks.result).toBe('run-blocks/model');
    expect(full.result).toBe('run-full/model');
    expect(byLabel.get('run-blocks/model')).toMatchObject({ madeBy: 'train', parent: 'expanded', path: join(root, 'run-blocks', 'model') });
    expect(byLabel.get('run-full/model')).toMatchObject({ madeBy: 'train', parent: 'expanded' });
    expect(data.checkpoints.map((c) => c.label).indexOf('tiny-base')).toBeLessThan(data.checkpoints.map((c) => c.label).indexOf('expanded'));

    expect(data.environment['Training backend']).toBe('wasm');
    expect(data.environment['Node.js']).toBe(process.version);
    expect(data.environment.Store).toBe(store.path);
  });

  it('an unknown run id is a one-line error', () => {
    expect(() => buildRunReport(store, [runIds[0], 9999])).toThrow(/has no run 9999/);
  });

  it.skipIf(chromiumProblem !== null && !process.env.CI)('writeReport writes HTML, Markdown and an offline PDF (zero network requests)', async () => {
    const data = buildRunReport(store, runIds, { title: 'Tiny blocks vs full', forgetting: null });
    data.forgetting = forgettingFor(data);
    const out = join(root, 'report-out');
    const t0 = performance.now();
    const res = await writeReport(data, out, { pdf: true });
    const ms = performance.now() - t0;
    expect(res.pdfError).toBeUndefined();
    expect(res.pdf).toBe(join(out, 'report.pdf'));
    expect(res.pdfStats!.requests).toEqual([]);
    const pdf = readFileSync(res.pdf!);
    expect(pdf.subarray(0, 4).toString('latin1')).toBe('%PDF');
    expect(pdf.length).toBeGreaterThan(10_000);
    console.log(`report.pdf: ${pdf.length} bytes in ${ms.toFixed(0)} ms (Chromium ${res.pdfStats!.ms.toFixed(0)} ms)`);

    const html = readFileSync(res.html, 'utf8');
    expect(html.match(/<svg/g)!.length).toBe(1 + 2 + 1); // loss, one panel per benchmark, trade-off
    expect(html).toContain('Tiny blocks vs full');
    expect(html).not.toMatch(/<script/i);
    const md = readFileSync(res.markdown, 'utf8');
    expect(md).toContain('| 1. blocks (interleave +1) | blocks | completed | 6 |');
    // atomic writes leave no temporary files behind; the marker says the folder is Blocklab's
    expect(readdirSync(out).sort()).toEqual(['.blocklab-output.json', 'report.html', 'report.md', 'report.pdf']);
  });

  it.skipIf(chromiumProblem !== null && !process.env.CI)('the PDF step fails when the page tries to load anything', async () => {
    const hostile =
      '<!DOCTYPE html><html><head><link rel="stylesheet" href="https://example.invalid/a.css"></head>' +
      '<body><p>hello</p><img src="http://example.invalid/x.png"></body></html>';
    const err = await htmlToPdf(hostile).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PdfError);
    expect((err as PdfError).message).toMatch(/tried to load 2 resource\(s\).*example\.invalid.*must open offline/);
    expect((err as PdfError).requests.sort()).toEqual(['http://example.invalid/x.png', 'https://example.invalid/a.css']);
  });

  it('without Chromium there is no PDF and a one-line reason; HTML and Markdown are still written', async () => {
    const data = buildRunReport(store, [runIds[0]]);
    const out = join(root, 'report-nochrome');
    await writeReport(data, out, { pdf: false });
    writeFileSync(join(out, 'report.pdf'), 'stale'); // from an earlier report: must not survive
    // the folder is Blocklab's report: replaced only when asked
    await expect(writeReport(data, out, { pdf: true, chromium: join(root, 'no-such-chromium') })).rejects.toThrow(/already exists and holds a report that Blocklab wrote; pass --overwrite/);
    const res = await writeReport(data, out, { pdf: true, chromium: join(root, 'no-such-chromium'), overwrite: true });
    expect(res.pdf).toBeNull();
    expect(res.pdfError).toMatch(/no Chromium at .*no-such-chromium.*apt-get install chromium/);
    expect(res.pdfError).not.toContain('\n');
    expect(existsSync(join(out, 'report.pdf'))).toBe(false);
    expect(statSync(res.html).size).toBeGreaterThan(1000);
    expect(readFileSync(res.markdown, 'utf8')).toContain(`run ${runIds[0]}`);
  });
});
