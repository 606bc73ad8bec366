/**
 * The Electron main process: one window on the built renderer, locked down per Electron's
 * security checklist — context isolation, sandbox, no Node in the page, a strict CSP, the page
 * served from the app's own `blocklab://app/` protocol rather than `file:` (no `file:` request
 * is allowed at all), no navigation, no new windows, no remote content, every permission
 * request and check denied — the API of src/shared/api.ts over IPC with every payload and
 * sender checked, and engine jobs in Electron `utilityProcess`es. The engine, store and API
 * code are the same the CLI and `blocklab serve` run under plain Node. The packaged binary's
 * fuses are set by scripts/electron-fuses.mjs.
 */
import { app, BrowserWindow, dialog, ipcMain, protocol, session, shell, utilityProcess, type IpcMainInvokeEvent, type WebContents } from 'electron';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiRequestSchema, type ApiPush, type ApiResponse } from '../shared/api.js';
import { RENDERER_CSP } from '../shared/security.js';
import { createApi, errorMessage, errorResponse, type Api } from './api/index.js';
import { rendererFile } from './server/static.js';
import { setEngineSpawner, type EngineChild } from './jobs/supervisor.js';
import { defaultStorePath, ExperimentStore } from './store/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const rendererDir = join(here, '../renderer');
/** The app's own origin: the built renderer, and nothing else, is served there. */
export const APP_SCHEME = 'blocklab';
const APP_ORIGIN = `${APP_SCHEME}://app`;
const APP_URL = `${APP_ORIGIN}/index.html`;
// a standard, secure scheme: its own origin for the CSP's 'self', fetch and workers
protocol.registerSchemesAsPrivileged([{ scheme: APP_SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: true } }]);
const preloadFile = join(here, '../preload/index.cjs');
// The bundled files sit in resources/ next to out/ (development) or in the app's resources (packaged).
process.env.BLOCKLAB_RESOURCES ??= app.isPackaged ? join(process.resourcesPath, 'resources') : join(app.getAppPath(), 'resources');

/** Engine jobs in utility processes: same messages as the forked engine, over parentPort. */
setEngineSpawner((opts): EngineChild => {
  const child = utilityProcess.fork(join(here, 'engine-process.js'), [], {
    stdio: ['ignore', 'inherit', 'pipe'],
    serviceName: 'Blocklab engine',
    execArgv: opts.maxHeapMb ? [`--max-old-space-size=${opts.maxHeapMb}`] : [],
    env: { ...process.env },
  });
  let exited = false;
  return {
    get pid() {
      return child.pid;
    },
    send: (m) => {
      if (!exited) child.postMessage(m);
    },
    onMessage: (l) => void child.on('message', l),
    onExit: (l) =>
      void child.on('exit', (code) => {
        exited = true;
        l(code, null);
      }),
    onError: (l) => void child.on('error', (type: string, location: string) => l(new Error(`${type} at ${location}`))),
    stderr: child.stderr,
    kill: () => void child.kill(),
  };
});

let api: Api | null = null;
let store: ExperimentStore | null = null;
const windows = new Set<WebContents>();

function push(p: ApiPush): void {
  for (const wc of windows) if (!wc.isDestroyed()) wc.send('blocklab:push', p);
}

/** Only our own page, in its top frame, may call the API. */
function trustedSender(e: IpcMainInvokeEvent): boolean {
  const frame = e.senderFrame;
  return windows.has(e.sender) && frame !== null && frame === e.sender.mainFrame && frame.url.startsWith(`${APP_ORIGIN}/`);
}

function createWindow(): void {
  const win = new BrowserWindow({
    width: 1280,
    height: 860,
    title: 'Blocklab',
    show: false,
    webPreferences: {
      preload: preloadFile,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      spellcheck: false,
    },
  });
  const wc = win.webContents;
  windows.add(wc);
  win.on('closed', () => windows.delete(wc));
  win.once('ready-to-show', () => win.show());
  // no navigation away from the app, no new windows; http(s) links open in the user's browser
  wc.on('will-navigate', (e) => e.preventDefault());
  wc.on('will-redirect', (e) => e.preventDefault());
  wc.setWindowOpenHandler(({ url }) => {
    if (/^https?:\/\//.test(url)) void shell.openExternal(url);
    return { action: 'deny' };
  });
  void win.loadURL(APP_URL);
}

app.on('web-contents-created', (_e, contents) => {
  contents.on('will-attach-webview', (e) => e.preventDefault());
});

void app.whenReady().then(() => {
  // the CSP as a header too, and no remote requests at all from the page
  session.defaultSession.webRequest.onHeadersReceived((details, done) => {
    done({ responseHeaders: { ...details.responseHeaders, 'Content-Security-Policy': [RENDERER_CSP] } });
  });
  // the app's files only: no file: URL (not even the renderer's own folder), no network
  session.defaultSession.webRequest.onBeforeRequest((details, done) => {
    done({ cancel: !(details.url.startsWith(`${APP_ORIGIN}/`) || /^(devtools|blob|data):/.test(details.url)) });
  });
  // every permission denied, whether requested (a prompt) or checked (a query)
  session.defaultSession.setPermissionRequestHandler((_wc, _permission, done) => done(false));
  session.defaultSession.setPermissionCheckHandler(() => false);
  protocol.handle(APP_SCHEME, async (request) => {
    const url = new URL(request.url);
    if (url.host !== 'app' || request.method !== 'GET') return new Response('not found', { status: 404 });
    const found = await rendererFile(rendererDir, url.pathname);
    if (found.status !== 200) return new Response(found.text, { status: found.status });
    return new Response(new Uint8Array(found.body), { status: 200, headers: found.headers });
  });

  const storePath = process.env.BLOCKLAB_STORE ? defaultStorePath() : join(app.getPath('userData'), 'blocklab.sqlite');
  try {
    store = ExperimentStore.open(storePath);
  } catch (e) {
    const msg = errorMessage(e);
    const abi = /NODE_MODULE_VERSION|was compiled against a different Node\.js version/.test(msg);
    dialog.showErrorBox(
      'Blocklab cannot open its experiment store',
      abi ? `better-sqlite3 is built for Node, not for Electron. Run \`npm run sqlite:electron\`, then \`npm start\` again.\n\n${msg}` : msg,
    );
    app.exit(1);
    return;
  }
  api = createApi({ store, storePath, mode: 'electron', userDataDir: dirname(storePath), push });

  ipcMain.handle('blocklab:api', async (e, raw: unknown): Promise<ApiResponse> => {
    const id = typeof (raw as { id?: unknown })?.id === 'number' ? (raw as { id: number }).id : 0;
    if (!trustedSender(e)) return { id, ok: false, error: 'refused: the request did not come from the Blocklab window' };
    const parsed = ApiRequestSchema.safeParse({ id, ...(raw as object) });
    if (!parsed.success) return { id, ok: false, error: `invalid API message: ${parsed.error.issues[0]?.message}` };
    try {
      return { id, ok: true, result: await api!.handle(parsed.data.method, parsed.data.params) };
    } catch (err) {
      return errorResponse(id, err);
    }
  });

  createWindow();
  app.on('activate', () => {
    if (BrowserWindow.getAllWindows().length === 0) createWindow();
  });
});

app.on('window-all-closed', () => {
  if (process.platform !== 'darwin') app.quit();
});

// Quitting with jobs running: ask them to stop (training writes a checkpoint), wait up to 30 s
// for them to record how they ended, then close the store and quit.
let quitting = false;
app.on('before-quit', (e) => {
  if (!api || !store) return;
  if (quitting) return;
  quitting = true;
  e.preventDefault();
  const a = api;
  const s = store;
  a.close();
  const deadline = Date.now() + 30_000;
  const wait = () => {
    if (a.jobs.list().length > 0 && Date.now() < deadline) return void setTimeout(wait, 200);
    s.close();
    api = null;
    store = null;
    app.quit();
  };
  wait();
});
