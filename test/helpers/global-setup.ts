/** One temporary root for the whole test run; every testDir() lives under it; removed at the end. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), 'blocklab-tests-'));
  process.env.BLOCKLAB_TEST_ROOT = root;
  // tests must never touch the user's real experiment store
  process.env.BLOCKLAB_STORE = join(root, 'store', 'blocklab.sqlite');
  return () => rmSync(root, { recursive: true, force: true });
}
