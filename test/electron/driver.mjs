/**
 * Loads the built main process (out/main/index.js) against the Electron stand-in and exercises
 * it as the window would: IPC from the app's own page and from anywhere else, navigation, new
 * windows, the session's CSP and request hooks, and one engine job through a utility process.
 * Prints one JSON document for test/integration/electron-main.test.ts to check.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const main = process.env.STUB_MAIN;
const work = process.env.STUB_USER_DATA;
await import(pathToFileURL(main).href);
const stub = globalThis.__electronStub;

async function waitFor(cond, ms = 30_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

await waitFor(() => stub.handlers.has('blocklab:api') && stub.windows.length === 1 && stub.windows[0].shown);
const win = stub.windows[0];
const wc = win.webContents;
const api = stub.handlers.get('blocklab:api');
const trusted = { sender: wc, senderFrame: wc.mainFrame };
const out = {};

out.webPreferences = win.options.webPreferences;
out.loadedFile = win.loadedFile ?? null;
out.loadedURL = win.loadedURL ?? null;
out.privilegedSchemes = stub.protocols.privileged;
// the app's protocol: the renderer's files, nothing outside them, no other host
const serveApp = stub.protocols.handlers.get('blocklab');
const get = async (url) => {
  const r = await serveApp({ url, method: 'GET' });
  return { status: r.status, csp: r.headers.get('content-security-policy'), start: (await r.text()).slice(0, 15) };
};
out.appIndex = await get('blocklab://app/index.html');
out.appEscapes = await Promise.all(['blocklab://app/../../package.json', 'blocklab://app/%2e%2e/%2e%2e/package.json', 'blocklab://app/..%2f..%2fpackage.json', 'blocklab://other/index.html', 'blocklab://app/%00'].map(async (u) => (await get(u)).status));
out.info = await api(trusted, { id: 1, method: 'app.info', params: {} });
out.fromOtherPage = await api({ sender: wc, senderFrame: { url: 'https://evil.example/' } }, { id: 2, method: 'app.info' });
out.fromSubframe = await api({ sender: wc, senderFrame: { url: wc.mainFrame.url } }, { id: 3, method: 'app.info' });
out.fromOtherContents = await api({ sender: new (Object.getPrototypeOf(wc).constructor)(), senderFrame: wc.mainFrame }, { id: 4, method: 'app.info' });
out.unknownMethod = await api(trusted, { id: 5, method: 'fs.rm', params: {} });
out.badParams = await api(trusted, { id: 6, method: 'notebooks.get', params: { id: 'x' } });
out.notAnObject = await api(trusted, 'app.info');

let prevented = false;
wc.emit('will-navigate', { preventDefault: () => (prevented = true) }, 'https://evil.example/');
out.navigationPrevented = prevented;
out.openHttps = wc.windowOpenHandler({ url: 'https://example.com/' });
out.openFile = wc.windowOpenHandler({ url: 'file:///etc/passwd' });
await new Promise((r) => setTimeout(r, 10));
out.opened = stub.opened;

stub.webRequest.headers({ responseHeaders: {} }, (r) => (out.cspHeader = r.responseHeaders['Content-Security-Policy']));
stub.webRequest.before({ url: 'https://example.com/x.js' }, (r) => (out.remoteCancelled = r.cancel));
stub.webRequest.before({ url: pathToFileURL(join(process.env.STUB_APP_PATH, 'out', 'renderer', 'index.html')).href }, (r) => (out.fileCancelled = r.cancel));
stub.webRequest.before({ url: 'file:///etc/passwd' }, (r) => (out.otherFileCancelled = r.cancel));
stub.webRequest.before({ url: 'blocklab://app/assets/x.js' }, (r) => (out.appCancelled = r.cancel));
stub.permissionHandler(wc, 'media', (granted) => (out.permissionGranted = granted));
out.permissionChecks = ['media', 'clipboard-read', 'notifications', 'geolocation'].map((p) => stub.permissionCheckHandler(wc, p, 'blocklab://app', {}));
let attached = true;
stub.appEvents.emit('web-contents-created', {}, Object.assign(new (Object.getPrototypeOf(wc).constructor)(), {}));
const created = new (Object.getPrototypeOf(wc).constructor)();
stub.appEvents.emit('web-contents-created', {}, created);
created.emit('will-attach-webview', { preventDefault: () => (attached = false) });
out.webviewBlocked = !attached;

// one job through a utility process: expand the bundled model by one block on top
const pushes = [];
wc.on('__sent', (channel, p) => channel === 'blocklab:push' && pushes.push(p));
const demoBase = join(out.info.result.demoDir, 'base-model');
out.jobStart = await api(trusted, { id: 7, method: 'jobs.start', params: { job: { kind: 'expand', model: demoBase, out: join(work, 'expanded'), config: { blocks: 1, placement: 'top' } } } });
await waitFor(() => pushes.some((p) => p.type === 'job' && (p.event.kind === 'done' || p.event.kind === 'error')), 120_000);
out.jobEvents = pushes.filter((p) => p.type === 'job').map((p) => p.event);
out.utilityForks = stub.utilityForks;
out.storeFile = readFileSync(join(work, 'blocklab.sqlite')).subarray(0, 15).toString();

// the preload: exposes exactly window.blocklab = { call, onPush }, over the two channels
const exposed = {};
const invoked = [];
const fakeElectron = {
  contextBridge: { exposeInMainWorld: (name, value) => (exposed[name] = value) },
  ipcRenderer: { invoke: async (...a) => (invoked.push(a), { id: 0, ok: true, result: null }), on: (...a) => invoked.push(['on', a[0]]), off: (...a) => invoked.push(['off', a[0]]) },
};
const preload = readFileSync(process.env.STUB_PRELOAD, 'utf8');
const module = { exports: {} };
new Function('require', 'module', 'exports', preload)((name) => {
  if (name !== 'electron') throw new Error(`the preload required ${name}`);
  return fakeElectron;
}, module, module.exports);
out.preloadExposed = Object.fromEntries(Object.entries(exposed).map(([k, v]) => [k, Object.keys(v).sort()]));
await exposed.blocklab.call({ method: 'app.info', params: {} });
const off = exposed.blocklab.onPush(() => {});
off();
out.preloadChannels = invoked.map((a) => a[0]);

// quitting waits for running jobs, then closes the store and quits
let quitCalled = false;
stub.appEvents.on('quit', () => (quitCalled = true));
let prevented2 = false;
stub.appEvents.emit('before-quit', { preventDefault: () => (prevented2 = true) });
await waitFor(() => quitCalled, 40_000);
out.quit = { deferred: prevented2, quit: quitCalled };
console.log(JSON.stringify(out));
process.exit(0);
