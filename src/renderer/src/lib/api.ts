/**
 * The renderer's only way out: the API of src/shared/api.ts over whichever transport exists —
 * `window.blocklab` from the Electron preload, or the WebSocket of `blocklab serve` (token from
 * the page's first URL, then from this tab's sessionStorage). Typed by method; errors come back as thrown Errors with the backend's message.
 */
import { oversizeRequest, type ApiMethod, type ApiParams, type ApiPush, type ApiResponse, type ApiResults, type BlocklabBridge } from '../../../shared/api';
import { utf8Length } from '../../../shared/size';

declare global {
  interface Window {
    blocklab?: BlocklabBridge;
  }
}

type Listener = (push: ApiPush) => void;

class WebSocketBridge implements BlocklabBridge {
  private ws: WebSocket | null = null;
  private opening: Promise<WebSocket> | null = null;
  private nextId = 1;
  private pending = new Map<number, (r: ApiResponse) => void>();
  private listeners = new Set<Listener>();

  constructor(
    private readonly url: string,
    private readonly protocols: string[],
  ) {}

  private open(): Promise<WebSocket> {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) return Promise.resolve(this.ws);
    if (this.opening) return this.opening;
    this.opening = new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(this.url, this.protocols);
      ws.onopen = () => {
        this.ws = ws;
        this.opening = null;
        resolve(ws);
      };
      ws.onerror = () => {
        this.opening = null;
        reject(new Error('could not reach the Blocklab server (is `blocklab serve` still running, and is the token in the address right?)'));
      };
      ws.onclose = (e) => {
        this.ws = null;
        const why = e.reason ? ` (${e.reason})` : e.code === 1009 ? ' (a message was too large)' : '';
        for (const [id, done] of this.pending) done({ id, ok: false, error: `the connection to the Blocklab server closed${why}` });
        this.pending.clear();
      };
      ws.onmessage = (e) => {
        let msg: unknown;
        try {
          msg = JSON.parse(String(e.data));
        } catch {
          return;
        }
        const m = msg as { id?: number; push?: ApiPush };
        if (m.push) for (const l of this.listeners) l(m.push);
        else if (typeof m.id === 'number') {
          const done = this.pending.get(m.id);
          this.pending.delete(m.id);
          done?.(msg as ApiResponse);
        }
      };
    });
    return this.opening;
  }

  async call(request: { method: ApiMethod; params?: unknown }): Promise<ApiResponse> {
    const id = this.nextId++;
    const text = JSON.stringify({ id, method: request.method, params: request.params ?? {} });
    // the server closes a socket that sends more than its frame limit: say why instead
    const tooBig = oversizeRequest(request, utf8Length(text));
    if (tooBig) return { id, ok: false, error: tooBig };
    const ws = await this.open();
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      ws.send(text);
    });
  }

  onPush(listener: Listener): () => void {
    this.listeners.add(listener);
    void this.open().catch(() => undefined);
    return () => this.listeners.delete(listener);
  }
}

const TOKEN_KEY = 'blocklab-token';

/**
 * The server's token: from the address the server printed (?token=), which is then removed from
 * the address bar and the history; kept for this tab (and its reloads) in sessionStorage, which
 * is per origin, so per port.
 */
function serverToken(): string {
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get('token');
  if (fromUrl !== null) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    params.delete('token');
    const query = params.toString();
    history.replaceState(history.state, '', `${location.pathname}${query ? `?${query}` : ''}${location.hash}`);
    return fromUrl;
  }
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

function makeBridge(): BlocklabBridge {
  if (window.blocklab) return window.blocklab;
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  // the token travels as a subprotocol, never in the URL (src/main/server/index.ts)
  return new WebSocketBridge(`${scheme}//${location.host}/api`, ['blocklab', `blocklab-token.${serverToken()}`]);
}

const bridge = makeBridge();

/** A failed API call: the backend's message, and what the app may do about it (ask to confirm an overwrite). */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly code?: 'confirm-overwrite',
    readonly path?: string,
  ) {
    super(message);
  }
}

/** Calls one API method; resolves with its result or throws its error message (an ApiError). */
export async function api<M extends ApiMethod>(method: M, params?: ApiParams<M>): Promise<ApiResults[M]> {
  const r = await bridge.call({ method, params });
  if (!r.ok) throw new ApiError(r.error, r.code, r.path);
  return r.result as ApiResults[M];
}

/** Subscribes to pushed events (job progress, store changes); returns the unsubscribe. */
export function onPush(listener: Listener): () => void {
  return bridge.onPush(listener);
}

export const transport: 'electron' | 'websocket' = window.blocklab ? 'electron' : 'websocket';
