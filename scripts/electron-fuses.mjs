#!/usr/bin/env node
/**
 * Sets the Electron fuses of a packaged Blocklab binary, per Electron's security checklist
 * ("Consider using fuses"): features the app never uses are switched off in the binary itself,
 * so no environment variable or command-line flag can turn them back on.
 *
 *   node scripts/electron-fuses.mjs PATH/TO/Blocklab[.app|.exe]
 *
 * Run it on the packaged app (after packaging, before signing). It is not run on the development
 * binary in node_modules/electron: `electron .` loads the app from a folder, not an asar, which
 * OnlyLoadAppFromAsar forbids.
 */
import { FuseV1Options, FuseVersion, flipFuses, getCurrentFuseWire } from '@electron/fuses';

/** Every fuse of the V1 wire, set explicitly (strictlyRequireAllFuses refuses a binary with fuses this list does not name). */
export const BLOCKLAB_FUSES = {
  version: FuseVersion.V1,
  strictlyRequireAllFuses: true,
  // ELECTRON_RUN_AS_NODE would turn the app into a plain Node with the app's privileges
  [FuseV1Options.RunAsNode]: false,
  // cookies (none are used, but any a page sets) encrypted with the OS keychain
  [FuseV1Options.EnableCookieEncryption]: true,
  // NODE_OPTIONS could inject code (--require) into the main process
  [FuseV1Options.EnableNodeOptionsEnvironmentVariable]: false,
  // --inspect and friends would open a debugger on the main process
  [FuseV1Options.EnableNodeCliInspectArguments]: false,
  // the app's code is read only from its asar, whose integrity is checked
  [FuseV1Options.EnableEmbeddedAsarIntegrityValidation]: true,
  [FuseV1Options.OnlyLoadAppFromAsar]: true,
  [FuseV1Options.LoadBrowserProcessSpecificV8Snapshot]: false,
  // the page is served from blocklab://app/, so file: needs no extra privileges
  [FuseV1Options.GrantFileProtocolExtraPrivileges]: false,
};

/** Flips the fuses of the binary at `path` and returns the wire as it now reads. */
export async function applyFuses(path) {
  await flipFuses(path, BLOCKLAB_FUSES);
  return getCurrentFuseWire(path);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const path = process.argv[2];
  if (!path) {
    process.stderr.write('usage: node scripts/electron-fuses.mjs PATH/TO/the packaged Electron binary\n');
    process.exit(1);
  }
  const wire = await applyFuses(path);
  process.stdout.write(`${JSON.stringify(wire)}\n`);
}
