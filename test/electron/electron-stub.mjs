/**
 * A stand-in for the `electron` module, for testing the app's main process under plain Node
 * where the Electron binary cannot run. It records what main asks of Electron (window options,
 * IPC handlers, session hooks) and runs utility processes as forked Node processes with a
 * `process.parentPort` like Electron's (parent-port.cjs). It is not Electron: it checks our
 * wiring, not Chromium's enforcement of it.
 */
import { fork } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const stub = { windows: [], handlers: new Map(), webRequest: {}, permissionHandler: null, permissionCheckHandler: null, protocols: { privileged: [], handlers: new Map() }, errors: [], opened: [], utilityForks: 0, appEvents: new EventEmitter() };
globalThis.__electronStub = stub;

class WebContents extends EventEmitter {
  constructor() {
    super();
    this.mainFrame = { url: 'about:blank' };
    this.windowOpenHandler = null;
  }
  send(channel, payload) {
    this.emit('__sent', channel, payload);
  }
  isDestroyed() {
    return false;
  }
  setWindowOpenHandler(h) {
    this.windowOpenHandler = h;
  }
}

export class BrowserWindow extends EventEmitter {
  static all = [];
  constructor(options) {
    super();
    this.options = options;
    this.webContents = new WebContents();
    BrowserWindow.all.push(this);
    stub.windows.push(this);
  }
  static getAllWindows() {
    return BrowserWindow.all;
  }
  loadFile(path) {
    this.loadedFile = path;
    this.webContents.mainFrame.url = pathToFileURL(path).href;
    setImmediate(() => this.emit('ready-to-show'));
    return Promise.resolve();
  }
  loadURL(url) {
    this.loadedURL = url;
    this.webContents.mainFrame.url = url;
    setImmediate(() => this.emit('ready-to-show'));
    return Promise.resolve();
  }
  show() {
    this.shown = true;
  }
}

export const app = {
  isPackaged: false,
  whenReady: () => Promise.resolve(),
  getPath: (name) => (name === 'userData' ? process.env.STUB_USER_DATA : process.env.STUB_USER_DATA + '/' + name),
  getAppPath: () => process.env.STUB_APP_PATH,
  on: (event, listener) => stub.appEvents.on(event, listener),
  quit: () => stub.appEvents.emit('quit'),
  exit: (code) => {
    stub.exitCode = code;
  },
};

export const ipcMain = {
  handle: (channel, fn) => stub.handlers.set(channel, fn),
};

export const session = {
  defaultSession: {
    webRequest: {
      onHeadersReceived: (fn) => (stub.webRequest.headers = fn),
      onBeforeRequest: (fn) => (stub.webRequest.before = fn),
    },
    setPermissionRequestHandler: (fn) => (stub.permissionHandler = fn),
    setPermissionCheckHandler: (fn) => (stub.permissionCheckHandler = fn),
  },
};

export const protocol = {
  registerSchemesAsPrivileged: (schemes) => void stub.protocols.privileged.push(...schemes),
  handle: (scheme, fn) => void stub.protocols.handlers.set(scheme, fn),
};

export const shell = { openExternal: async (url) => void stub.opened.push(url) };
export const dialog = { showErrorBox: (title, message) => void stub.errors.push(`${title}: ${message}`) };

const parentPortShim = fileURLToPath(new URL('./parent-port.cjs', import.meta.url));

export const utilityProcess = {
  fork(modulePath, args = [], options = {}) {
    stub.utilityForks++;
    const child = fork(modulePath, args, {
      execArgv: ['--require', parentPortShim, ...(options.execArgv ?? [])],
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
      env: options.env,
      serialization: 'advanced',
    });
    const up = new EventEmitter();
    up.pid = child.pid;
    up.stderr = child.stderr;
    up.postMessage = (m) => child.connected && child.send(m);
    up.kill = () => child.kill();
    child.on('message', (m) => up.emit('message', m));
    child.on('exit', (code) => up.emit('exit', code ?? 1));
    return up;
  },
};

export default { app, BrowserWindow, ipcMain, protocol, session, shell, dialog, utilityProcess };
