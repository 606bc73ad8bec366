import { describe, expect, it } from 'vitest';
import { evalCommand, exportCommand, expandCommand, generateCommand, shellQuote, trainCommand } from '../../src/shared/commands';
import { buildTrainJob, type TrainSpec } from '../../src/shared/train-spec';

const job = (over: Record<string, unknown> = {}, out = '/runs/a') =>
  buildTrainJob({ model: '/m/x', data: ['/d/code.jsonl'], method: { kind: 'blocks' }, steps: 40, lr: 1e-3, batch: 4, seq: 128, ...over } as TrainSpec, { out, cacheDir: '/c' });

describe('the command each cell shows', () => {
  it('quotes for a POSIX shell only what needs it', () => {
    expect(shellQuote('/a/b-c_d.e:f,g')).toBe('/a/b-c_d.e:f,g');
    expect(shellQuote('/my models/x')).toBe("'/my models/x'");
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
    expect(shellQuote('')).toBe("''");
  });

  it('train: the data, method and size always; the rest only where it differs from the defaults', () => {
    expect(trainCommand(job())).toBe('blocklab train /m/x --data /d/code.jsonl --out /runs/a --method blocks --steps 40 --lr 0.001 --batch 4 --seq 128 --seed 0');
    expect(trainCommand(job({ warmup: 10, evalEvery: 10, weightDecay: 0.1, clip: 0, name: 'x' }), { name: 'blocks (demo)' })).toBe(
      "blocklab train /m/x --data /d/code.jsonl --out /runs/a --method blocks --steps 40 --lr 0.001 --batch 4 --seq 128 --warmup 10 --seed 0 --weight-decay 0.1 --clip 0 --eval-every 10 --name 'blocks (demo)'",
    );
    expect(trainCommand(job({ method: { kind: 'lora', rank: 4, alpha: 8, targets: ['q', 'v', 'o'] } }))).toContain('--method lora --lora-rank 4 --lora-alpha 8 --lora-targets q,v,o');
    expect(trainCommand(job({ method: { kind: 'last', k: 2 } }))).toContain('--method last:2');
    expect(trainCommand(job({ method: { kind: 'blocks', layers: [2, 5] } }))).toContain('--method blocks --trainable-layers 2,5');
    // an output folder the app picks at run time is a placeholder before Run
    expect(trainCommand({ ...job(), out: null })).toContain('--out <out-folder> --method');
  });

  it('expand, export', () => {
    expect(expandCommand('/m/base', '/m/x', { blocks: 2, placement: 'interleave' })).toBe('blocklab expand /m/base --out /m/x --blocks 2 --placement interleave');
    expect(expandCommand('/m/base', '/m/x', { blocks: 2, placement: 'top' }, { overwrite: true })).toBe('blocklab expand /m/base --out /m/x --blocks 2 --placement top --overwrite');
    expect(exportCommand({ model: '/m/x', format: 'gguf', out: null })).toBe('blocklab export /m/x --format gguf --out <out-file.gguf>');
    expect(exportCommand({ model: '/m/x', format: 'hf', out: '/e/x', dtype: 'bfloat16' })).toBe('blocklab export /m/x --format hf --out /e/x --dtype bf16');
  });

  it('eval: compare against a base (the base not repeated), or plain scores; benchmarks last', () => {
    expect(evalCommand({ base: '/m/base', checkpoints: ['/m/base', '/m/x', '/r/model'], benchmarks: ['builtin:code-ppl', '/b/t.jsonl'], limit: 20 })).toBe(
      'blocklab compare --base /m/base /m/x /r/model --limit 20 --bench builtin:code-ppl /b/t.jsonl',
    );
    expect(evalCommand({ checkpoints: ['/m/x'], benchmarks: ['builtin:code-mc'] })).toBe('blocklab eval /m/x --bench builtin:code-mc');
  });

  it('generate: completion continues --prompt; chat sends the conversation as --messages', () => {
    const sampling = { temperature: 0.7, topP: 0.95, topK: 0, repetitionPenalty: 1, maxTokens: 64, seed: 0 };
    expect(generateCommand({ model: '/m/x', prompt: 'The meaning of', ...sampling })).toBe(
      "blocklab generate /m/x --prompt 'The meaning of' --max-tokens 64 --temperature 0.7 --top-p 0.95 --top-k 0 --repetition-penalty 1 --seed 0",
    );
    const chat = generateCommand({
      model: '/m/x',
      messages: [
        { role: 'user', content: "it's" },
        { role: 'assistant', content: 'a' },
        { role: 'user', content: 'b' },
      ],
      useTemplate: false,
      system: 'Be brief.',
      ...sampling,
    });
    expect(chat).toBe(
      `blocklab generate /m/x --messages '[{"role":"user","content":"it'\\''s"},{"role":"assistant","content":"a"},{"role":"user","content":"b"}]' --system 'Be brief.' --max-tokens 64 --temperature 0.7 --top-p 0.95 --top-k 0 --repetition-penalty 1 --seed 0`,
    );
    expect(generateCommand({ model: '/m/x', messages: [{ role: 'user', content: 'hi' }], useTemplate: true, ...sampling })).toContain(`--messages '[{"role":"user","content":"hi"}]' --chat`);
  });
});
