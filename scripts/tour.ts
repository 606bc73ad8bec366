/**
 * `npm run tour`: the CLI on a tiny checkpoint, one command at a time, each printed before it
 * runs so it can be copied into a terminal. Writes under ./blocklab-out/ (replaced each run).
 */
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const out = 'blocklab-out';
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'sample.txt'), 'Block expansion adds new decoder blocks that start as the identity.\n');

const steps: [string, string[]][] = [
  ['Make a tiny random LLaMA checkpoint in the Hugging Face layout', ['make-tiny', '--out', `${out}/tiny-llama`]],
  ['Inspect it', ['inspect', `${out}/tiny-llama`]],
  ['Which compute backend runs it', ['doctor']],
  ['Expand 4 → 6 blocks, interleaved (LLaMA Pro); the identity is checked', ['expand', `${out}/tiny-llama`, '--blocks', '2', '--out', `${out}/tiny-llama-expanded`]],
  ['The expansion is recorded in the checkpoint', ['inspect', `${out}/tiny-llama-expanded`]],
  ['Per-token NLL of a text (the expanded model scores it exactly like the base)', ['score', `${out}/tiny-llama-expanded`, '--text-file', `${out}/sample.txt`]],
  ['Generate (a random model babbles; the point is the pipeline)', ['generate', `${out}/tiny-llama-expanded`, '--prompt', 'Once upon a time', '--max-tokens', '24', '--temperature', '1', '--top-p', '1', '--seed', '1']],
  ['Export in bfloat16, loadable by transformers', ['export', `${out}/tiny-llama-expanded`, '--format', 'hf', '--dtype', 'bf16', '--out', `${out}/tiny-llama-expanded-bf16`]],
];

for (const [title, args] of steps) {
  process.stdout.write(`\n# ${title}\n$ npx blocklab ${args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ')}\n`);
  const r = spawnSync(process.execPath, ['bin/blocklab.mjs', ...args], { stdio: 'inherit' });
  if (r.status !== 0) {
    process.stderr.write(`\nstep failed: ${title}\n`);
    process.exit(r.status ?? 1);
  }
}
process.stdout.write(`\nDone. Everything above is in ./${out}/\n`);
