/**
 * Untrusted input through the real `blocklab` command (DESIGN.md §4, §8): every bad file gives
 * ONE line on stderr that names the file and says what is wrong, a non-zero exit code, no stack
 * trace (unless --debug), and nothing written — an expand or export --out folder must not
 * exist afterwards.
 *
 * Each bad checkpoint is a copy of one good tiny checkpoint, damaged byte by byte.
 */
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeTinyCheckpoint } from '../../src/main/engine/tiny.js';
import { runCli, stackLines, stderrLines, type CliResult } from '../helpers/cli-runner.js';
import { copyCheckpoint, rewriteHeader, setHeaderLength, tensorEntries, truncateFile, type SafetensorsHeaderEntry } from '../helpers/damage-checkpoint.js';
import { testDir } from '../helpers/tmp.js';

let root: string;
let base: string;
let goodIds: string;
let goodText: string;


beforeAll(async () => {
  root = await testDir('bad-input');
  base = join(root, 'base');
  await makeTinyCheckpoint(base, { layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, seed: 5 });
  goodIds = join(root, 'good-ids.json');
  await writeFile(goodIds, JSON.stringify([256, 72, 101, 108, 108, 111]));
  goodText = join(root, 'good.txt');
  await writeFile(goodText, 'Hello, world.\n');
});

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

const st = (dir: string) => join(dir, 'model.safetensors');
const entry = (h: Record<string, unknown>, name: string) => h[name] as SafetensorsHeaderEntry;

interface BadCase {
  name: string;
  /** damages the copy of the good checkpoint at `dir` (absent: no copy is made) */
  damage?: (dir: string) => Promise<void>;
  /** the command line; `out` is an --out folder that must not exist afterwards */
  args: (dir: string, out: string) => string[];
  /** the file (or folder) the message must name */
  file: (dir: string) => string;
  /** what the message must say */
  says: RegExp[];
  /** whether `out` is used (expand / export) */
  writes?: boolean;
  /** also run with --debug: the same first line, then a stack trace */
  debug?: boolean;
  /** run with --json: stdout is then exactly {"error": "<the same line>"} */
  json?: boolean;
}

const expand = (dir: string, out: string) => ['expand', dir, '--out', out, '--blocks', '1'];
const exportHf = (dir: string, out: string) => ['export', dir, '--format', 'hf', '--out', out];
const inspect = (dir: string) => ['inspect', dir];

const CASES: BadCase[] = [
  {
    name: 'truncated model.safetensors',
    damage: (d) => truncateFile(st(d), 100),
    args: expand,
    writes: true,
    debug: true,
    file: st,
    says: [/truncated/],
  },
  {
    name: 'header length larger than the file',
    damage: async (d) => setHeaderLength(st(d), BigInt((await stat(st(d))).size + 1000)),
    args: inspect,
    file: st,
    says: [/header length/, /larger than the file/],
  },
  {
    name: 'two tensors with overlapping data_offsets',
    damage: (d) =>
      rewriteHeader(st(d), (h) => {
        // v_proj has k_proj's shape: point it at k_proj's bytes (the header stays the same length)
        entry(h, 'model.layers.0.self_attn.v_proj.weight').data_offsets = [...entry(h, 'model.layers.0.self_attn.k_proj.weight').data_offsets];
      }),
    args: expand,
    writes: true,
    json: true,
    file: st,
    says: [/overlap/, /k_proj/, /v_proj/],
  },
  {
    name: 'an offset beyond the data region',
    damage: (d) =>
      rewriteHeader(st(d), (h) => {
        const [, last] = tensorEntries(h).at(-1)!;
        last.data_offsets = [last.data_offsets[0] + 1_000_000, last.data_offsets[1] + 1_000_000];
      }),
    args: (d) => ['score', d, '--ids-file', goodIds],
    file: st,
    says: [/data region/, /holds only \d+ bytes/],
  },
  {
    name: 'an unknown dtype (F64; unit tests cover I8)',
    damage: (d) => rewriteHeader(st(d), (h) => void (entry(h, 'model.norm.weight').dtype = 'F64')),
    args: exportHf,
    writes: true,
    file: st,
    says: [/model\.norm\.weight/, /F64/, /not supported/, /F32, F16, BF16/],
  },
  {
    name: "a shape that doesn't match its byte range",
    damage: (d) => rewriteHeader(st(d), (h) => void (entry(h, 'model.norm.weight').shape = [33])),
    args: inspect,
    file: st,
    says: [/model\.norm\.weight/, /\[33\]/, /needs 132 bytes but data_offsets give 128/],
  },
  {
    name: 'missing config.json',
    damage: (d) => rm(join(d, 'config.json')),
    args: expand,
    writes: true,
    file: (d) => join(d, 'config.json'),
    says: [/not found/],
  },
  {
    name: 'a tokenizer.json that is not UTF-8',
    damage: (d) => writeFile(join(d, 'tokenizer.json'), Buffer.from([0xff, 0xfe, 0x7b, 0x00, 0x22, 0x00, 0x7d, 0x00])),
    args: (d) => ['score', d, '--text-file', goodText],
    file: (d) => join(d, 'tokenizer.json'),
    says: [/not valid UTF-8/],
  },
  {
    name: 'an unsupported architecture',
    damage: async (d) => {
      const config = JSON.parse(await readFile(join(d, 'config.json'), 'utf8'));
      await writeFile(join(d, 'config.json'), JSON.stringify({ ...config, architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' }, null, 2));
    },
    args: inspect,
    file: (d) => join(d, 'config.json'),
    says: [/GPT2LMHeadModel/, /LlamaForCausalLM/, /MistralForCausalLM/, /Qwen2ForCausalLM/],
  },
  {
    name: 'a folder with only pytorch_model.bin',
    damage: async (d) => {
      await rm(d, { recursive: true });
      await mkdir(d);
      // the start of a real torch.save pickle: PROTO 2, EMPTY_DICT, ...
      await writeFile(join(d, 'pytorch_model.bin'), Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x28, 0x58]));
    },
    args: expand,
    writes: true,
    file: (d) => d,
    says: [/pytorch_model\.bin/, /pickle/, /arbitrary code/, /safetensors/, /save_pretrained/],
  },
  {
    name: 'score --ids-file with an id outside the vocabulary',
    damage: (d) => writeFile(join(d, 'ids.json'), JSON.stringify([256, 72, 100000, 5])),
    args: (d) => ['score', base, '--ids-file', join(d, 'ids.json')],
    debug: true,
    file: (d) => join(d, 'ids.json'),
    says: [/100000/, /vocabulary/, /0\.\.260/],
  },
  {
    name: 'score --ids-file with JSON that is not an array',
    damage: (d) => writeFile(join(d, 'ids.json'), JSON.stringify({ ids: [1, 2, 3] })),
    args: (d) => ['score', base, '--ids-file', join(d, 'ids.json')],
    json: true,
    file: (d) => join(d, 'ids.json'),
    says: [/JSON array/],
  },
  {
    name: 'a config.json that is not JSON',
    damage: (d) => writeFile(join(d, 'config.json'), '{"architectures": ["LlamaForCausalLM"], "hidden_size": 32,'),
    args: exportHf,
    writes: true,
    file: (d) => join(d, 'config.json'),
    says: [/not valid JSON/],
  },
];

/** The one error line: exit code non-zero, one line (besides expand's progress line), no stack trace. */
function errorLine(r: CliResult, expectFn: typeof expect): string {
  expectFn(r.code, r.stderr).not.toBe(0);
  const lines = stderrLines(r).filter((l) => !l.startsWith('expanding '));
  expectFn(lines, r.stderr).toHaveLength(1);
  expectFn(lines[0]).toMatch(/^blocklab: /);
  expectFn(stackLines(r.stderr)).toEqual([]);
  expectFn(stackLines(r.stdout)).toEqual([]);
  expectFn(lines[0]).not.toMatch(/internal error|looks like a bug|RangeError|TypeError|ReferenceError|ERR_/);
  return lines[0];
}

describe('bad input gives one clear line, a non-zero exit and no output', () => {
  it.concurrent.for(CASES)('$name', async (c, { expect }) => {
    const slug = c.name.replace(/\W+/g, '-');
    const dir = join(root, 'bad', slug);
    await mkdir(join(root, 'bad'), { recursive: true });
    await copyCheckpoint(base, dir);
    if (c.damage) await c.damage(dir);
    const outParent = join(root, 'out', slug);
    await mkdir(outParent, { recursive: true });
    const out = join(outParent, 'result');
    const args = [...c.args(dir, out), ...(c.json ? ['--json'] : [])];

    const r = await runCli(args);
    const line = errorLine(r, expect);
    expect(line).toContain(c.file(dir));
    for (const s of c.says) expect(line).toMatch(s);
    if (c.json) {
      expect(JSON.parse(r.stdout)).toEqual({ error: line.slice('blocklab: '.length) });
      expect(r.stdout.trimEnd().split('\n')).toHaveLength(1);
    } else {
      expect(r.stdout).toBe('');
    }
    if (c.writes) expect(args).toContain(out);
    // nothing written: no --out folder, no temporary folder beside it
    expect(await exists(out)).toBe(false);
    expect(await readdir(outParent)).toEqual([]);

    if (c.debug) {
      const d = await runCli([...args, '--debug']);
      expect(d.code).toBe(r.code);
      expect(stderrLines(d).filter((l) => !l.startsWith('expanding '))[0]).toBe(line);
      expect(stackLines(d.stderr).length).toBeGreaterThan(0);
      expect(await exists(out)).toBe(false);
    }
  });
});
