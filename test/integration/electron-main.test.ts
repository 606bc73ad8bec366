/**
 * The Electron main process and preload, as built (out/main, out/preload), loaded under plain
 * Node against a stand-in `electron` module (test/electron/electron-stub.mjs) because the
 * Electron binary cannot run here. Checks our wiring: the window's locked-down preferences,
 * IPC refused unless it comes from the app's own top frame, every payload validated, the page
 * on the app's own blocklab:// protocol (no file: URLs), no navigation / new windows /
 * webviews / permission requests or checks / remote requests, the CSP header, the
 * store in the user-data folder, an engine job through a utility process (the bundled
 * engine-process.js with Electron's parentPort), and a preload that exposes two functions.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { RENDERER_CSP } from '../../src/shared/security.js';
import { REPO_ROOT } from '../helpers/cli-runner.js';
import { testDir } from '../helpers/tmp.js';

let out: any; // the driver's JSON document
let userData: string;

beforeAll(async () => {
  const main = join(REPO_ROOT, 'out', 'main', 'index.js');
  const preload = join(REPO_ROOT, 'out', 'preload', 'index.cjs');
  if (!existsSync(main) || !existsSync(preload)) throw new Error('out/main or out/preload is missing: build first (npm test does; or npm run build)');
  userData = await testDir('electron-main');
  const env: NodeJS.ProcessEnv = { ...process.env, STUB_MAIN: main, STUB_PRELOAD: preload, STUB_USER_DATA: userData, STUB_APP_PATH: REPO_ROOT };
  delete env.BLOCKLAB_STORE; // the app's own store location: the user-data folder
  delete env.BLOCKLAB_RESOURCES;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', './test/electron/register.mjs', 'test/electron/driver.mjs'], {
    cwd: REPO_ROOT,
    env,
    timeout: 150_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  out = JSON.parse(stdout.trim().split('\n').at(-1)!);
}, 180_000);

describe('the Electron main process (built, against a stand-in electron module)', () => {
  it('opens one locked-down window on the built renderer', () => {
    expect(out.webPreferences).toMatchObject({ contextIsolation: true, sandbox: true, nodeIntegration: false, webSecurity: true, allowRunningInsecureContent: false });
    expect(out.webPreferences.preload).toBe(join(REPO_ROOT, 'out', 'preload', 'index.cjs'));
    // from the app's own protocol, not loadFile: file: URLs are not the app's origin
    expect(out.loadedFile).toBeNull();
    expect(out.loadedURL).toBe('blocklab://app/index.html');
    expect(out.privilegedSchemes).toEqual([{ scheme: 'blocklab', privileges: { standard: true, secure: true, supportFetchAPI: true } }]);
  });

  it('serves the built renderer on blocklab://app/ with the CSP, and nothing outside it', () => {
    expect(out.appIndex).toMatchObject({ status: 200, start: '<!doctype html>' });
    expect(out.appIndex.csp).toContain(RENDERER_CSP);
    expect(out.appEscapes).toEqual([404, 404, 404, 404, 404]);
  });

  it('answers IPC from its own page only, and validates every payload', () => {
    expect(out.info).toMatchObject({ id: 1, ok: true, result: { mode: 'electron', storePath: join(userData, 'blocklab.sqlite'), demoDir: join(REPO_ROOT, 'resources', 'demo') } });
    for (const refused of [out.fromOtherPage, out.fromSubframe, out.fromOtherContents]) {
      expect(refused).toMatchObject({ ok: false, error: expect.stringMatching(/did not come from the Blocklab window/) });
    }
    expect(out.unknownMethod).toMatchObject({ ok: false, error: expect.stringMatching(/invalid API message/) });
    expect(out.badParams).toMatchObject({ ok: false, error: expect.stringMatching(/notebooks\.get \(at id\)/) });
    expect(out.notAnObject.ok).toBe(false);
    expect(out.storeFile).toBe('SQLite format 3');
  });

  it('denies navigation, new windows, webviews and permissions; cancels remote requests; sends the CSP', () => {
    expect(out.navigationPrevented).toBe(true);
    expect(out.openHttps).toEqual({ action: 'deny' });
    expect(out.openFile).toEqual({ action: 'deny' });
    expect(out.opened).toEqual(['https://example.com/']); // handed to the system browser, not opened in the app
    expect(out.webviewBlocked).toBe(true);
    expect(out.permissionGranted).toBe(false);
    expect(out.permissionChecks).toEqual([false, false, false, false]);
    expect(out.remoteCancelled).toBe(true);
    // no file: request at all, not even for the renderer's own files; the app's protocol only
    expect(out.fileCancelled).toBe(true);
    expect(out.otherFileCancelled).toBe(true);
    expect(out.appCancelled).toBe(false);
    expect(out.cspHeader).toEqual([RENDERER_CSP]);
  });

  it('runs an engine job in a utility process and pushes its events to the window', () => {
    expect(out.utilityForks).toBe(2); // the expansion's pre-check reads the checkpoint in one, the job runs in the other
    const end = out.jobEvents.at(-1);
    expect(end).toMatchObject({ kind: 'done', status: 'completed', result: { kind: 'expand', totalLayers: 5, identity: { maxAbsLogitDiff: 0, passed: true } } });
    expect(existsSync(join(userData, 'expanded', 'config.json'))).toBe(true);
  });

  it('quits only after its jobs have ended and the store is closed', () => {
    expect(out.quit).toEqual({ deferred: true, quit: true });
  });

  it('has a preload that exposes exactly window.blocklab = { call, onPush }', () => {
    expect(out.preloadExposed).toEqual({ blocklab: ['call', 'onPush'] });
    expect(out.preloadChannels).toEqual(['blocklab:api', 'on', 'off']);
  });
});
