/**
 * The cells' pure logic: the Train form's spec, errors, command and divergence warning; when a
 * cell's output goes stale; the SQL cell's rounding, CSV and completion; the run page's command;
 * the x axes of the run charts; the one word for each run state.
 */
import { describe, expect, it } from 'vitest';
import { inputsFingerprint } from '../../src/renderer/src/lib/cell';
import { commandForRun } from '../../src/renderer/src/lib/run-command';
import { onAxis, tokensPerStep } from '../../src/renderer/src/lib/run-charts';
import { displayValue, sqlSuggestions, tablesInQuery, toCsv } from '../../src/renderer/src/lib/sql';
import { divergence, trainCommandFor, trainFormErrors, trainSpecFromState } from '../../src/renderer/src/lib/train-form';
import { buildTrainJob, type TrainSpec } from '../../src/shared/train-spec';
import { RESUMABLE_STATUSES, runStatusWord } from '../../src/shared/run-status';
import type { Cell } from '../../src/shared/notebook';

describe('the Train form', () => {
  const st = { model: '/m/x', data: ['/d.jsonl'], method: 'blocks' as const, steps: 40, lr: 1e-3, evalEvery: 10 };

  it('sends the defaults for what is left empty, and only what is set', () => {
    expect(trainSpecFromState(st)).toEqual({ model: '/m/x', data: ['/d.jsonl'], method: { kind: 'blocks' }, steps: 40, lr: 1e-3, batch: 4, seq: 128, evalEvery: 10 });
    expect(trainSpecFromState({ ...st, method: 'lora', rank: 4 }).method).toEqual({ kind: 'lora', rank: 4, alpha: 8, targets: ['q', 'v'] });
    expect(trainSpecFromState({ ...st, layers: '2, 5' }).method).toEqual({ kind: 'blocks', layers: [2, 5] });
  });

  it('shows each problem at its field as it is typed', () => {
    expect(trainFormErrors(st)).toEqual({});
    expect(trainFormErrors({ ...st, steps: 0, lr: 1e9, batch: 100_000 })).toEqual({ steps: 'must be at least 1', lr: 'must be at most 1 (typical: 1e-5 to 1e-3)', batch: 'must be at most 4,096' });
    expect(trainFormErrors({ ...st, model: '' }).model).toBe('choose the model folder to train');
    expect(trainFormErrors({ ...st, layers: '2, x' }).layers).toBe('must be a number');
    expect(trainFormErrors(st, ['warmup'])).toEqual({ warmup: 'must be a number' });
  });

  it('previews the command, with a placeholder for an output folder chosen at run time', () => {
    expect(trainCommandFor(st)).toBe('blocklab train /m/x --data /d.jsonl --out <out-folder> --method blocks --steps 40 --lr 0.001 --batch 4 --seq 128 --seed 0 --eval-every 10');
    expect(trainCommandFor({ ...st, out: '/runs/a', warmup: 0 })).toContain('--out /runs/a --method blocks --steps 40 --lr 0.001 --batch 4 --seq 128 --warmup 0 --seed 0');
    expect(trainCommandFor({ ...st, lr: 2 })).toBeNull();
  });

  it('warns of divergence: a non-finite loss, or the loss far above where it started', () => {
    const steady = [7, 6.5, 6, 5.6, 5.2, 5, 4.9, 4.7].map((v, i) => [i + 1, v] as [number, number]);
    expect(divergence(steady)).toBeNull();
    // full fine-tuning at lr 1 without clipping (measured: 6.6, 52.5, 157.4, 92.9 …): from the 4th step
    const exploding = [6.605, 52.494, 157.38, 92.915].map((v, i) => [i + 1, v] as [number, number]);
    expect(divergence(exploding.slice(0, 3))).toBeNull();
    expect(divergence(exploding)).toEqual({ kind: 'rising', message: 'the loss is 100.93 (mean of the last 3 steps, at step 4), far above the 6.61 it started at' });
    // one spike in a falling curve (the demo run's step 26) is not divergence; 20% above the start is not "far above"
    expect(divergence([8, 7, 5.3, 5.3, 6.8, 3.9, 4].map((v, i) => [i + 1, v] as [number, number]))).toBeNull();
    expect(divergence([7, 7, 8, 8.4, 8.4].map((v, i) => [i + 1, v] as [number, number]))).toBeNull();
    expect(divergence([[1, 7], [2, Number.NaN]])).toEqual({ kind: 'nan', message: 'the loss became NaN at step 2' });
  });
});

describe("a cell's output goes stale when its inputs change", () => {
  const cell = (kind: Cell['kind'], source: string, state: Record<string, unknown>) => ({ kind, source, state });

  it('follows the settings, not what a run left behind', () => {
    const a = inputsFingerprint(cell('train', '', { model: '/m', steps: 40, runId: 3, lastRun: { phase: 'done' } }));
    expect(inputsFingerprint(cell('train', '', { steps: 40, model: '/m', runId: 4, jobId: 'x', resultModel: '/r' }))).toBe(a);
    expect(inputsFingerprint(cell('train', '', { model: '/m', steps: 41, runId: 3 }))).not.toBe(a);
    const ex = inputsFingerprint(cell('expansion', '{"blocks": 2}', { model: '/m', result: { out: '/x' } }));
    expect(inputsFingerprint(cell('expansion', '{"blocks": 2}', { model: '/m' }))).toBe(ex);
    expect(inputsFingerprint(cell('expansion', '{"blocks": 3}', { model: '/m' }))).not.toBe(ex);
    expect(inputsFingerprint(cell('sql', 'SELECT 1', {}))).not.toBe(inputsFingerprint(cell('sql', 'SELECT 2', {})));
  });

  it('a chat is stale only when its models change; Markdown and Compare never', () => {
    const c = inputsFingerprint(cell('chat', '', { models: ['/a'], settings: { temperature: 0 }, transcripts: [] }));
    expect(inputsFingerprint(cell('chat', '', { models: ['/a'], settings: { temperature: 1 }, transcripts: [[]] }))).toBe(c);
    expect(inputsFingerprint(cell('chat', '', { models: ['/b'] }))).not.toBe(c);
    expect(inputsFingerprint(cell('markdown', '# x', {}))).toBeNull();
    expect(inputsFingerprint(cell('compare', '', { runIds: [1] }))).toBeNull();
  });
});

describe('the SQL cell', () => {
  it('rounds numbers for display, keeping the full value', () => {
    expect(displayValue(0.123456789)).toEqual({ text: '0.123457', full: '0.123456789', kind: 'num' });
    expect(displayValue(1234.56789)).toMatchObject({ text: '1234.57' });
    expect(displayValue(3.0000001e-7)).toMatchObject({ text: '3e-7', full: '3.0000001e-7' });
    expect(displayValue(42)).toEqual({ text: '42', full: '42', kind: 'num' });
    expect(displayValue(null)).toMatchObject({ text: 'NULL', kind: 'null' });
  });

  it('writes CSV at full precision, quoting what needs it', () => {
    expect(toCsv(['id', 'name', 'value'], [[1, 'a,b', 0.123456789], [2, 'say "hi"\nthere', null]])).toBe('id,name,value\r\n1,"a,b",0.123456789\r\n2,"say ""hi""\nthere",\r\n');
  });

  const schema = [
    { name: 'runs', columns: [{ name: 'id', type: 'INTEGER' }, { name: 'status', type: 'TEXT' }] },
    { name: 'metrics', columns: [{ name: 'run_id', type: 'INTEGER' }, { name: 'value', type: 'REAL' }] },
  ];

  it('completes tables after FROM, a table or alias\'s columns after the dot, the named tables\' columns elsewhere', () => {
    expect(sqlSuggestions('SELECT * FROM ', 'SELECT * FROM ', schema).map((s) => s.label)).toEqual(['runs', 'metrics']);
    expect(sqlSuggestions('SELECT r.', 'SELECT r. FROM runs r', schema).map((s) => s.label)).toEqual(['id', 'status']);
    expect(sqlSuggestions('SELECT metrics.', 'SELECT metrics.', schema).map((s) => s.label)).toEqual(['run_id', 'value']);
    const anywhere = sqlSuggestions('SELECT ', 'SELECT  FROM metrics m JOIN runs ON runs.id = m.run_id', schema);
    expect(anywhere.filter((s) => s.kind === 'column').map((s) => s.detail)).toEqual(['metrics.run_id INTEGER', 'metrics.value REAL', 'runs.id INTEGER', 'runs.status TEXT']);
    expect(anywhere.some((s) => s.label === 'SELECT' && s.kind === 'keyword')).toBe(true);
    expect([...tablesInQuery('select 1 from runs as r left join metrics on 1', schema)]).toEqual([['runs', 'runs'], ['r', 'runs'], ['metrics', 'metrics']]);
  });
});

describe('the run page and the run charts', () => {
  it("writes a stored run's command from its config", () => {
    const job = buildTrainJob({ model: '/m', data: ['/d'], method: { kind: 'full' }, steps: 5, lr: 0.01, batch: 2, seq: 16 } as TrainSpec, { out: '/o', cacheDir: '/c' });
    expect(commandForRun({ kind: 'train', config: job, name: 'full' })).toBe('blocklab train /m --data /d --out /o --method full --steps 5 --lr 0.01 --batch 2 --seq 16 --seed 0 --name full');
    expect(commandForRun({ kind: 'expand', config: { kind: 'expand', model: '/m', out: '/x', config: { blocks: 2, placement: 'top' }, overwrite: false }, name: null })).toBe('blocklab expand /m --out /x --blocks 2 --placement top');
    expect(commandForRun({ kind: 'eval', config: { models: [{ path: '/m' }, { path: '/x' }], benchmarks: [{ spec: 'builtin:code-ppl' }], limit: 20, shots: 0 }, name: null })).toBe('blocklab eval /m /x --limit 20 --bench builtin:code-ppl');
    expect(commandForRun({ kind: 'train', config: { not: 'a job' }, name: null })).toBeNull();
  });

  it('puts a curve on the chosen x axis', () => {
    const loss: [number, number][] = [[1, 7], [2, 6], [3, 5]];
    const elapsed: [number, number][] = [[1, 0.5], [3, 1.7]];
    expect(onAxis(loss, 'step', { tokensPerStep: 512, elapsed })).toEqual(loss);
    expect(onAxis(loss, 'tokens', { tokensPerStep: 512, elapsed })).toEqual([[512, 7], [1024, 6], [1536, 5]]);
    // a step with no recorded time is left out
    expect(onAxis(loss, 'time', { tokensPerStep: 512, elapsed })).toEqual([[0.5, 7], [1.7, 5]]);
    expect(tokensPerStep({ batch: 4, seq: 128, gradAccum: 2 })).toBe(1024);
    expect(tokensPerStep({ batch: 4 })).toBeNull();
  });

  it('says the same word for the same state everywhere', () => {
    expect(runStatusWord('cancelled')).toBe('stopped');
    expect(runStatusWord('paused')).toBe('paused');
    expect(runStatusWord('running', 'pause')).toBe('pausing');
    expect(runStatusWord('running', 'stop')).toBe('stopping');
    expect(runStatusWord('completed', 'stop')).toBe('completed');
    expect(RESUMABLE_STATUSES).toEqual(['cancelled', 'paused', 'interrupted']);
  });
});
