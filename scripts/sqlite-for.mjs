#!/usr/bin/env node
// Rebuilds better-sqlite3 for the runtime that will load it: `electron` for the desktop app
// (`npm start`), `node` for the CLI, `blocklab serve` and the tests. One node_modules holds one
// build at a time (Node 20's ABI is 115, Electron 41's is 145). prebuild-install fetches a
// prebuilt binary when it can; otherwise node-gyp compiles it against the runtime's headers.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const target = process.argv[2];
if (target !== 'electron' && target !== 'node') {
  console.error('usage: node scripts/sqlite-for.mjs electron|node');
  process.exit(2);
}
const env = { ...process.env };
if (target === 'electron') {
  const electronVersion = createRequire(import.meta.url)('electron/package.json').version;
  Object.assign(env, { npm_config_runtime: 'electron', npm_config_target: electronVersion, npm_config_disturl: 'https://electronjs.org/headers' });
  console.error(`rebuilding better-sqlite3 for Electron ${electronVersion}…`);
} else console.error(`rebuilding better-sqlite3 for Node ${process.version}…`);
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const r = spawnSync(npm, ['rebuild', 'better-sqlite3'], { stdio: 'inherit', env, shell: process.platform === 'win32' });
process.exit(r.status ?? 1);
