/**
 * A real `blocklab serve` in its own process (node bin/blocklab.mjs serve --port 0 --json), for
 * tests that must see whether the process survives what a client sends: an in-process server
 * would take the test runner down with it instead.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import type { ApiPush, ApiResponse } from '../../src/shared/api.js';
import { REPO_ROOT } from './cli-runner.js';

export interface ServeProcess {
  proc: ChildProcess;
  url: string;
  port: number;
  token: string;
  store: string;
  /** everything the process wrote to stderr so far */
  stderr(): string;
  alive(): boolean;
  stop(): Promise<number | null>;
}

/** A two-file UI folder: the guard and the API do not need the real renderer build. */
export async function tinyUi(dir: string): Promise<string> {
  const ui = join(dir, 'ui');
  await mkdir(join(ui, 'assets'), { recursive: true });
  await writeFile(join(ui, 'index.html'), '<!doctype html><title>Blocklab</title><p>ui</p>');
  await writeFile(join(ui, 'assets', 'app.js'), 'console.log(1)');
  return ui;
}

export async function startServe(dir: string, opts: { env?: Record<string, string>; ui?: string; store?: string; cwd?: string } = {}): Promise<ServeProcess> {
  const ui = opts.ui ?? (await tinyUi(dir));
  const store = opts.store ?? join(dir, 'serve.sqlite');
  const proc = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'blocklab.mjs'), '--store', store, 'serve', '--port', '0', '--ui', ui, '--json'], {
    cwd: opts.cwd ?? REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  let exited = false;
  proc.once('exit', () => (exited = true));
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      if (out.includes('\n')) resolve(out.split('\n')[0]);
    });
    proc.once('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });
  const doc = JSON.parse(line) as { url: string; port: number };
  const token = new URL(doc.url).searchParams.get('token') ?? '';
  return {
    proc,
    url: doc.url,
    port: doc.port,
    token,
    store,
    stderr: () => err,
    alive: () => !exited && proc.exitCode === null && proc.signalCode === null,
    stop: () =>
      new Promise((resolve) => {
        if (exited) return resolve(proc.exitCode);
        proc.once('exit', (c) => resolve(c));
        proc.kill('SIGTERM');
      }),
  };
}

export interface ApiSession {
  ws: WebSocket;
  call(method: string, params?: unknown): Promise<ApiResponse>;
  pushes: ApiPush[];
  /** resolves with the close code when the server closes this socket */
  closed: Promise<number>;
}

/** One WebSocket API session against a running server (a null token: none offered; `url`: another address to try). */
export async function connectApi(port: number, token: string | null, headers: Record<string, string> = {}, url = `ws://127.0.0.1:${port}/api`): Promise<ApiSession> {
  const ws = new WebSocket(url, token === null ? [] : ['blocklab', `blocklab-token.${token}`], { headers, maxPayload: 256 * 1024 * 1024 });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
  ws.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  let next = 1;
  const waiting = new Map<number, (r: ApiResponse) => void>();
  const pushes: ApiPush[] = [];
  ws.on('message', (data) => {
    const m = JSON.parse(String(data));
    if (m.push) pushes.push(m.push);
    else waiting.get(m.id)?.(m);
  });
  const call = (method: string, params: unknown = {}) =>
    new Promise<ApiResponse>((resolve, reject) => {
      const id = next++;
      waiting.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
      void closed.then((code) => reject(new Error(`the server closed the socket (${code}) before answering ${method}`)));
    });
  return { ws, call, pushes, closed };
}
