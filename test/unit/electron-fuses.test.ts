/**
 * The fuses scripts/electron-fuses.mjs sets on a packaged app, applied with @electron/fuses to a
 * stand-in binary that carries Electron's fuse wire (its sentinel, version 1 and eight fuses, all
 * enabled as Electron ships them). The real Electron binary cannot be downloaded on this machine,
 * so this checks the configuration and its application to the documented wire format — not a
 * packaged app starting with them.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { testDir } from '../helpers/tmp.js';

const SENTINEL = 'dL7pKGdnNz796PbbjQWNKmHXBZaB9tsX';
const ENABLE = 0x31;
const DISABLE = 0x30;

async function fakeBinary(fuses: number): Promise<string> {
  const file = join(await testDir('fuses'), 'electron');
  const wire = Buffer.from([1, fuses, ...Array(fuses).fill(ENABLE)]);
  await writeFile(file, Buffer.concat([Buffer.alloc(4096, 7), Buffer.from(SENTINEL), wire, Buffer.alloc(4096, 9)]));
  return file;
}

describe('Electron fuses (security checklist)', () => {
  it('turns off run-as-node, NODE_OPTIONS, --inspect, the V8 snapshot and file: privileges; turns on cookie encryption and asar-only loading with integrity checks', async () => {
    const script = '../../scripts/electron-fuses.mjs';
    const { applyFuses } = (await import(script)) as { applyFuses(p: string): Promise<Record<string, unknown>> };
    const file = await fakeBinary(8);
    const before = await readFile(file);
    const wire = await applyFuses(file);
    // RunAsNode, EnableCookieEncryption, EnableNodeOptionsEnvironmentVariable, EnableNodeCliInspectArguments,
    // EnableEmbeddedAsarIntegrityValidation, OnlyLoadAppFromAsar, LoadBrowserProcessSpecificV8Snapshot, GrantFileProtocolExtraPrivileges
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((i) => wire[i])).toEqual([DISABLE, ENABLE, DISABLE, DISABLE, ENABLE, ENABLE, DISABLE, DISABLE]);
    // only the wire changed
    const after = await readFile(file);
    expect(after.length).toBe(before.length);
    const at = before.indexOf(SENTINEL) + SENTINEL.length + 2;
    for (let i = 0; i < after.length; i++) if (i < at || i >= at + 8) expect(after[i]).toBe(before[i]);
  });

  it('refuses a binary with a fuse it does not name, rather than leaving that fuse at its default', async () => {
    const script = '../../scripts/electron-fuses.mjs';
    const { applyFuses } = (await import(script)) as { applyFuses(p: string): Promise<unknown> };
    await expect(applyFuses(await fakeBinary(9))).rejects.toThrow(/strictlyRequireAllFuses/);
  });
});
