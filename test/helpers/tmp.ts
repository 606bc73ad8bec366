import { mkdirSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomIds } from '../../src/main/engine/random.js';

/**
 * A fresh temporary folder for this test file, under the run's root (test/helpers/global-setup.ts
 * removes the root when the run ends).
 */
export async function testDir(prefix: string): Promise<string> {
  const root = process.env.BLOCKLAB_TEST_ROOT ?? tmpdir();
  mkdirSync(root, { recursive: true });
  return mkdtemp(join(root, `${prefix}-`));
}

/** Deterministic pseudo-random token ids in [0, vocab): the bench's generator, seed 1 by default. */
export function someIds(n: number, vocab: number, seed = 1): number[] {
  return randomIds(n, vocab, seed);
}
