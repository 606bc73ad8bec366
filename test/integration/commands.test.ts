/**
 * The command a cell shows reproduces what the cell does: the training command, parsed by the
 * real CLI (`blocklab train --dry-run`), gives the very job the app builds from the same
 * settings; and a chat answer written by the app comes out again, token for token, from the
 * `blocklab generate` command its Chat cell shows.
 */
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiPush, ChatResultInfo, JobEvent } from '../../src/shared/api.js';
import { generateCommand, trainCommand } from '../../src/shared/commands.js';
import { buildTrainJob, type TrainSpec } from '../../src/shared/train-spec.js';
import { createApi, type Api } from '../../src/main/api/index.js';
import { demoDir } from '../../src/main/engine/resources.js';
import { ExperimentStore } from '../../src/main/store/index.js';
import { oneJson, runCli } from '../helpers/cli-runner.js';
import { testDir } from '../helpers/tmp.js';

/** A POSIX shell's words for the commands these builders write (bare words and '…' quoting). */
function shellWords(command: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < command.length) {
    while (command[i] === ' ') i++;
    if (i >= command.length) break;
    let word = '';
    while (i < command.length && command[i] !== ' ') {
      if (command[i] === "'") {
        const end = command.indexOf("'", i + 1);
        if (end < 0) throw new Error(`unclosed quote in ${command}`);
        word += command.slice(i + 1, end);
        i = end + 1;
      } else if (command[i] === '\\') {
        word += command[i + 1];
        i += 2;
      } else word += command[i++];
    }
    words.push(word);
  }
  return words;
}

let dir: string;
let storePath: string;

beforeAll(async () => {
  dir = await testDir('commands');
  storePath = join(dir, 'store', 'blocklab.sqlite');
});

describe('the train command a Train cell shows', () => {
  const specs: { spec: TrainSpec; name?: string }[] = [
    { spec: { model: '/m/x', data: ['/d/code.jsonl'], method: { kind: 'blocks' }, steps: 40, lr: 1e-3, batch: 4, seq: 128, evalEvery: 10 }, name: 'blocks (demo)' },
    {
      spec: {
        model: '/m/with space',
        data: ['/d/a.txt', '/d/repo'],
        include: ['**/*.py'],
        exclude: ['**/test_*'],
        method: { kind: 'lora', rank: 4, alpha: 12, targets: ['q', 'k', 'v', 'o'] },
        steps: 250,
        lr: 3e-4,
        batch: 2,
        seq: 64,
        gradAccum: 3,
        warmup: 0,
        minLrRatio: 0,
        seed: 7,
        weightDecay: 0.05,
        beta1: 0.85,
        beta2: 0.999,
        clip: 0.5,
        saveEvery: 50,
        evalEvery: 25,
        evalBatches: 3,
        valFraction: 0.1,
        keepCheckpoints: 0,
      },
    },
    { spec: { model: '/m/x', data: ['/d/x.jsonl'], method: { kind: 'last', k: 2 }, steps: 7, lr: 0.01, batch: 1, seq: 16 } },
    { spec: { model: '/m/x', data: ['/d/x.jsonl'], method: { kind: 'blocks', layers: [2, 5] }, steps: 100, lr: 2e-4, batch: 8, seq: 256, warmup: 20 } },
  ];

  it('is parsed by the real CLI back into the job the app builds', async () => {
    for (const { spec, name } of specs) {
      const job = buildTrainJob(spec, { out: join(dir, 'runs', 'r1'), cacheDir: join(dirname(storePath), 'cache') });
      const command = trainCommand(job, { name });
      const words = shellWords(command);
      expect(words.slice(0, 2)).toEqual(['blocklab', 'train']);
      const r = await runCli(['--store', storePath, ...words.slice(1), '--dry-run', '--json']);
      expect(r.code, r.stderr).toBe(0);
      const doc = oneJson<{ job: unknown; name: string | null }>(r);
      expect(doc.job, command).toEqual(job);
      expect(doc.name).toBe(name ?? null);
    }
  }, 120_000);

  it('refuses what the form refuses, naming the flag', async () => {
    const r = await runCli(['--store', storePath, 'train', '/m/x', '--data', '/d', '--out', '/o', '--lr', '1e9', '--dry-run', '--json']);
    expect(r.code).toBe(1);
    expect(oneJson<{ error: string }>(r).error).toBe('--lr: must be at most 1 (typical: 1e-5 to 1e-3)');
  }, 60_000);
});

describe('the generate command a Chat cell shows', () => {
  let api: Api;
  let store: ExperimentStore;
  const listeners = new Set<(p: ApiPush) => void>();

  beforeAll(() => {
    store = ExperimentStore.open(join(dir, 'chat-store.sqlite'));
    api = createApi({ store, storePath: join(dir, 'chat-store.sqlite'), mode: 'server', userDataDir: dir, push: (p) => listeners.forEach((l) => l(p)) });
  });
  afterAll(() => {
    api?.close();
    store?.close();
  });

  async function appAnswer(job: Parameters<Api['handle']>[1]): Promise<ChatResultInfo> {
    const early: { jobId: string; event: JobEvent }[] = [];
    let resolveEnd!: (e: JobEvent) => void;
    const ended = new Promise<JobEvent>((r) => (resolveEnd = r));
    let jobId = '';
    const listener = (p: ApiPush) => {
      if (p.type !== 'job') return;
      if (!jobId) early.push({ jobId: p.jobId, event: p.event });
      else if (p.jobId === jobId && (p.event.kind === 'done' || p.event.kind === 'error')) resolveEnd(p.event);
    };
    listeners.add(listener);
    jobId = ((await api.handle('jobs.start', { job })) as { jobId: string }).jobId;
    for (const e of early) if (e.jobId === jobId && (e.event.kind === 'done' || e.event.kind === 'error')) resolveEnd(e.event);
    const end = await ended;
    listeners.delete(listener);
    if (end.kind !== 'done' || end.result.kind !== 'chat') throw new Error(`the chat job ended with ${JSON.stringify(end)}`);
    return end.result;
  }

  it('writes the same answer from the terminal, in chat and in completion mode', async () => {
    const model = join(demoDir(), 'base-model');
    const sampling = { temperature: 0.9, topP: 0.9, topK: 20, repetitionPenalty: 1.3, maxTokens: 16, seed: 11 };
    const messages = [
      { role: 'user' as const, content: 'The committee' },
      { role: 'assistant' as const, content: ' met on Tuesday.' },
      { role: 'user' as const, content: 'And then' },
    ];
    const chat = await appAnswer({ kind: 'chat', model, messages, settings: { ...sampling, mode: 'chat', useTemplate: false, system: 'A note.' } });
    const completion = await appAnswer({ kind: 'chat', model, messages: [{ role: 'user', content: 'The meaning of' }], settings: { ...sampling, mode: 'completion' } });
    expect(chat.generatedTokens).toBeGreaterThan(0);
    for (const [answer, command] of [
      [chat, generateCommand({ model, messages, useTemplate: false, system: 'A note.', ...sampling })],
      [completion, generateCommand({ model, prompt: 'The meaning of', ...sampling })],
    ] as const) {
      const r = await runCli([...shellWords(command).slice(1), '--json']);
      expect(r.code, r.stderr).toBe(0);
      const doc = oneJson<{ text: string; prompt_tokens: number }>(r);
      expect(doc.prompt_tokens, command).toBe(answer.promptTokens);
      expect(doc.text, command).toBe(answer.text);
    }
  }, 180_000);
});
