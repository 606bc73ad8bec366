/**
 * Headless mode (`blocklab serve`): the built renderer and the app's API over a WebSocket, for a
 * GPU box reached through an SSH tunnel. Bound to 127.0.0.1 only, and the Host header must name
 * the loopback address, so another web page in the same browser (CSRF, DNS rebinding) cannot
 * reach it. The API's WebSocket must carry the random token printed in the URL, as a
 * subprotocol (`blocklab-token.TOKEN`: never in a URL, a log or the history); the page opens
 * with `?token=`, keeps it in its tab's sessionStorage and removes it from the address bar. The
 * page and its assets then load with a cookie — and since a browser sends 127.0.0.1's cookies
 * to every port on it, that cookie is not the token: it is named for this port and holds a
 * value derived from the token that opens the page and nothing else, never the API.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { ApiRequestSchema, MAX_API_MESSAGE_BYTES, type ApiPush, type ApiResponse } from '../../shared/api.js';
import { BlocklabError } from '../engine/errors.js';
import { createApi, errorMessage, errorResponse, type Api } from '../api/index.js';
import { rendererFile } from './static.js';
import type { ExperimentStore } from '../store/index.js';


/** The subprotocol the app speaks, and the prefix of the one that carries the token. */
export const API_PROTOCOL = 'blocklab';
export const TOKEN_PROTOCOL_PREFIX = 'blocklab-token.';

/** The built renderer: $BLOCKLAB_UI, else out/renderer of this checkout (`npm run build`). */
export function defaultRendererDir(): string {
  return process.env.BLOCKLAB_UI ? resolve(process.env.BLOCKLAB_UI) : fileURLToPath(new URL('../../../out/renderer', import.meta.url));
}

export interface ServeOptions {
  store: ExperimentStore;
  storePath: string;
  userDataDir: string;
  /** 0 picks a free port */
  port: number;
  rendererDir?: string;
  /** fixed token (tests); default: 24 random bytes */
  token?: string;
  /** how long a SQL cell's query may run (tests shorten it) */
  sqlTimeoutMs?: number;
}

export interface RunningServer {
  url: string;
  port: number;
  token: string;
  api: Api;
  close(): Promise<void>;
}

function sameToken(given: string | null | undefined, token: string): boolean {
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookieValue(req: IncomingMessage, name: string): string | null {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return null;
}

/** The token, when a WebSocket upgrade carries it as a subprotocol. */
function protocolToken(req: IncomingMessage): string | null {
  for (const p of String(req.headers['sec-websocket-protocol'] ?? '').split(',')) {
    const name = p.trim();
    if (name.startsWith(TOKEN_PROTOCOL_PREFIX)) return name.slice(TOKEN_PROTOCOL_PREFIX.length);
  }
  return null;
}

/** The request's URL, or null when it cannot be one (`//`, `http://[`): such a request is refused, never thrown on. */
function requestUrl(req: IncomingMessage, port: number): URL | null {
  try {
    return new URL(req.url ?? '/', `http://127.0.0.1:${port}`);
  } catch {
    return null;
  }
}

function rawText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

function refuse(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
  res.end(text + '\n');
}

export async function serve(opts: ServeOptions): Promise<RunningServer> {
  const rendererDir = resolve(opts.rendererDir ?? defaultRendererDir());
  try {
    await stat(join(rendererDir, 'index.html'));
  } catch {
    throw new BlocklabError('has no index.html: the notebook UI is not built; run `npm run build` first', { file: rendererDir });
  }
  const token = opts.token ?? randomBytes(24).toString('hex');
  const sockets = new Set<WebSocket>();
  const push = (p: ApiPush) => {
    const text = JSON.stringify({ push: p });
    for (const ws of sockets) if (ws.readyState === ws.OPEN) ws.send(text);
  };
  const api = createApi({ store: opts.store, storePath: opts.storePath, mode: 'server', userDataDir: opts.userDataDir, push, sqlTimeoutMs: opts.sqlTimeoutMs });
  let port = 0;
  // the page cookie: per port, and a value that opens only the page (see the header comment)
  const pageCookie = () => `blocklab_page_${port}`;
  const pageKey = () => createHmac('sha256', token).update(`page:${port}`).digest('hex');

  const hostAllowed = (req: IncomingMessage) => {
    const host = req.headers.host ?? '';
    return host === `127.0.0.1:${port}` || host === `localhost:${port}`;
  };

  const server = createServer(async (req, res) => {
    try {
      if (!hostAllowed(req)) return refuse(res, 403, 'refused: this server answers only to 127.0.0.1');
      if (req.method !== 'GET' && req.method !== 'HEAD') return refuse(res, 405, 'only GET');
      const url = requestUrl(req, port);
      if (!url) return refuse(res, 400, 'bad request: the address is not a URL');
      const queryToken = url.searchParams.get('token');
      const authorised = sameToken(queryToken, token) || sameToken(cookieValue(req, pageCookie()), pageKey());
      if (!authorised) return refuse(res, 403, 'refused: open the URL that `blocklab serve` printed (it carries the token)');
      const found = await rendererFile(rendererDir, url.pathname);
      if (found.status !== 200) return refuse(res, found.status, found.text);
      const headers = { ...found.headers };
      if (found.html && sameToken(queryToken, token)) headers['set-cookie'] = `${pageCookie()}=${pageKey()}; HttpOnly; SameSite=Strict; Path=/`;
      res.writeHead(200, headers);
      res.end(req.method === 'HEAD' ? undefined : found.body);
    } catch (e) {
      refuse(res, 500, `error: ${errorMessage(e)}`);
    }
  });

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_API_MESSAGE_BYTES,
    // answer with the app's protocol, never echo the one that carries the token
    handleProtocols: (protocols) => (protocols.has(API_PROTOCOL) ? API_PROTOCOL : false),
  });

  /** One API message in, one response out; nothing a client sends can throw out of here. */
  const answer = async (ws: WebSocket, data: RawData, isBinary: boolean): Promise<void> => {
    let id = -1;
    let response: ApiResponse;
    try {
      if (isBinary) throw new BlocklabError('invalid API message: send JSON text, not binary');
      const raw = JSON.parse(rawText(data)) as unknown;
      id = typeof (raw as { id?: unknown })?.id === 'number' ? (raw as { id: number }).id : -1;
      const parsed = ApiRequestSchema.safeParse(raw);
      if (!parsed.success) throw new BlocklabError(`invalid API message: ${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}`);
      response = { id, ok: true, result: await api.handle(parsed.data.method, parsed.data.params) };
    } catch (e) {
      response = errorResponse(id, e);
    }
    let text: string;
    try {
      text = JSON.stringify(response);
    } catch (e) {
      text = JSON.stringify({ id, ok: false, error: `the answer could not be encoded: ${errorMessage(e)}` });
    }
    if (ws.readyState === ws.OPEN) ws.send(text);
  };

  server.on('upgrade', (req, socket, head) => {
    // A socket error (a reset, a write after the peer left) ends this connection only.
    socket.on('error', () => socket.destroy());
    const deny = (status: string, text: string) => {
      if (!socket.destroyed) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n${text}\n`);
      socket.destroy();
    };
    try {
      const url = requestUrl(req, port);
      if (!url) return deny('400 Bad Request', 'bad request: the address is not a URL');
      const origin = req.headers.origin;
      const originOk = origin === undefined || origin === `http://127.0.0.1:${port}` || origin === `http://localhost:${port}`;
      if (!hostAllowed(req) || url.pathname !== '/api' || !originOk || !sameToken(protocolToken(req), token)) {
        return deny('403 Forbidden', 'refused: a valid token is required');
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        sockets.add(ws);
        ws.on('close', () => sockets.delete(ws));
        // A frame over the limit, invalid UTF-8, a protocol error: ws closes this socket with the
        // matching close code (1009, 1007, 1002) and reports it here; the server carries on.
        ws.on('error', () => sockets.delete(ws));
        ws.on('message', (data, isBinary) => void answer(ws, data, isBinary).catch(() => undefined));
      });
    } catch (e) {
      deny('500 Internal Server Error', `error: ${errorMessage(e)}`);
    }
  });

  await new Promise<void>((done, fail) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      fail(new BlocklabError(e.code === 'EADDRINUSE' ? `port ${opts.port} is in use; pick another with --port, or --port 0 for any free one` : `the server could not start: ${e.message}`)),
    );
    server.listen(opts.port, '127.0.0.1', () => done());
  });
  port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}/?token=${token}`,
    port,
    token,
    api,
    async close() {
      api.close();
      for (const ws of sockets) ws.close();
      wss.close();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
}
