/**
 * Regression tests of the security review (issue 11), against a real `blocklab serve` process
 * where the question is whether the process survives: every request here once crashed it,
 * deleted a user's file, or froze it. Each test names the finding it guards.
 */
import { connect as netConnect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { MAX_API_MESSAGE_BYTES } from '../../src/shared/api.js';
import { NOTEBOOK_LIMITS } from '../../src/shared/notebook.js';
import { connectApi, startServe, type ServeProcess } from '../helpers/serve-process.js';
import { testDir } from '../helpers/tmp.js';

let dir: string;
let server: ServeProcess;

beforeAll(async () => {
  dir = await testDir('security');
  server = await startServe(dir);
});

afterAll(async () => {
  await server?.stop();
});

/** Sends raw bytes on a fresh TCP connection and returns whatever comes back before it closes. */
function rawRequest(port: number, text: string | Buffer, waitMs = 2000): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1');
    let got = '';
    const done = () => {
      s.destroy();
      resolve(got);
    };
    s.on('data', (c) => (got += c.toString('latin1')));
    s.on('error', done);
    s.on('close', done);
    s.on('connect', () => s.write(text));
    setTimeout(done, waitMs);
  });
}

async function stillServing(): Promise<void> {
  expect(server.alive(), `the server died:\n${server.stderr()}`).toBe(true);
  expect((await fetch(server.url)).status).toBe(200);
  const s = await connectApi(server.port, server.token);
  expect((await s.call('notebooks.list')).ok).toBe(true);
  s.ws.close();
}

const upgrade = (path: string, port: number, extra = '') =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

describe('1. the WebSocket upgrade handler', () => {
  it('answers an upgrade to an address that is not a URL (GET //) with 400, and keeps serving', async () => {
    for (const path of ['//', '//x:y@', '/\\\\', 'http://[']) {
      const answer = await rawRequest(server.port, upgrade(path, server.port));
      expect(answer, path).toMatch(/^HTTP\/1\.1 (400|403)/);
    }
    // the page's own way of doing it, from another origin
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}//`, { headers: { origin: 'http://evil.example' } });
    await new Promise((resolve) => {
      ws.once('error', resolve);
      ws.once('unexpected-response', resolve);
    });
    await stillServing();
  });

  it('survives a client that resets the connection in the middle of the handshake', async () => {
    for (let i = 0; i < 5; i++) {
      const s = netConnect(server.port, '127.0.0.1');
      s.on('error', () => undefined);
      await new Promise((r) => s.once('connect', r));
      s.write(upgrade('/api?token=x', server.port).slice(0, 60));
      s.resetAndDestroy();
    }
    await stillServing();
  });
});

describe('2. one bad frame', () => {
  it('closes only the socket that sent invalid UTF-8, a binary frame or a frame over the limit', async () => {
    const bystander = await connectApi(server.port, server.token);

    const utf8 = await connectApi(server.port, server.token);
    utf8.ws.send(Buffer.from([0xff, 0xfe, 0x7b]), { binary: false });
    expect(await utf8.closed).toBe(1007);

    const binary = await connectApi(server.port, server.token);
    const r = await new Promise<{ ok: boolean; error?: string }>((resolve) => {
      binary.ws.once('message', (d) => resolve(JSON.parse(String(d))));
      binary.ws.send(Buffer.from(JSON.stringify({ id: 1, method: 'notebooks.list', params: {} })), { binary: true });
    });
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/not binary/);
    binary.ws.close();

    const big = await connectApi(server.port, server.token);
    big.ws.send('x'.repeat(MAX_API_MESSAGE_BYTES + 1));
    expect(await big.closed).toBe(1009);

    expect((await bystander.call('notebooks.list')).ok).toBe(true);
    bystander.ws.close();
    await stillServing();
  }, 60_000);

  it('refuses a notebook larger than the limit with a message, and every notebook the schema allows fits one frame', async () => {
    const s = await connectApi(server.port, server.token);
    const nb = (await s.call('notebooks.create', { name: 'big' })) as { ok: true; result: { id: number } };
    // the review's case: 130 cells of 199,000 characters (25.9 MB) — now over the notebook limit,
    // so it is refused by the schema before it could ever reach the transport's limit
    const cells = Array.from({ length: 130 }, (_, i) => ({ id: `c${i}`, kind: 'markdown', source: 'x'.repeat(199_000), state: {} }));
    const tooBig = JSON.stringify({ id: 9, method: 'notebooks.save', params: { id: nb.result.id, name: 'big', cells } });
    expect(tooBig.length).toBeGreaterThan(MAX_API_MESSAGE_BYTES);
    const { oversizeRequest } = await import('../../src/shared/api.js');
    expect(oversizeRequest({ method: 'notebooks.save', params: { cells } })).toMatch(/notebooks\.save: the request is 24\.7 MiB, more than the 24\.0 MiB/);

    // the largest notebook the schema accepts, made of the characters JSON escapes most ("),
    // saves, exports and imports again over the socket
    const per = Math.floor((NOTEBOOK_LIMITS.cellsBytes - 1000) / 2 / 50);
    const heavy = Array.from({ length: 50 }, (_, i) => ({ id: `h${i}`, kind: 'markdown', source: '"'.repeat(Math.min(per - 40, NOTEBOOK_LIMITS.sourceChars)), state: {} }));
    const saved = await s.call('notebooks.save', { id: nb.result.id, name: 'big', cells: heavy });
    expect(saved.ok, JSON.stringify(saved).slice(0, 300)).toBe(true);
    const exported = (await s.call('notebooks.export', { id: nb.result.id })) as { ok: true; result: { text: string } };
    expect(exported.ok).toBe(true);
    const imported = await s.call('notebooks.import', { text: exported.result.text });
    expect(imported.ok, JSON.stringify(imported).slice(0, 300)).toBe(true);

    // one byte over the cells limit is refused with the limit named, and the socket stays open
    const over = [{ id: 'o', kind: 'sql', source: '', state: { blob: 'y'.repeat(NOTEBOOK_LIMITS.stateChars - 20) } }, ...Array.from({ length: 4 }, (_, i) => ({ id: `p${i}`, kind: 'sql', source: '', state: { blob: 'y'.repeat(NOTEBOOK_LIMITS.stateChars - 20) } }))];
    const refused = await s.call('notebooks.save', { id: nb.result.id, name: 'big', cells: over });
    expect(refused.ok).toBe(false);
    expect(!refused.ok && refused.error).toMatch(/larger than 8\.0 MiB/);
    expect((await s.call('notebooks.list')).ok).toBe(true);
    s.ws.close();
    await stillServing();
  }, 60_000);
});
