/**
 * The built renderer's files, served by `blocklab serve` over HTTP and by the desktop app over
 * its own `blocklab://app/` protocol: one piece of code decides which file a path names (never
 * one outside the renderer's folder), its type and its security headers.
 */
import { readFile } from 'node:fs/promises';
import { extname, resolve, sep } from 'node:path';
import { RENDERER_CSP } from '../../shared/security.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.ttf': 'font/ttf',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm',
  '.map': 'application/json; charset=utf-8',
};

export type StaticFile = { status: 200; body: Buffer; headers: Record<string, string>; html: boolean } | { status: 400 | 404; text: string };

/** The file a URL path names inside `rendererDir` (`/` is index.html), with its headers; 404 for anything else. */
export async function rendererFile(rendererDir: string, urlPath: string): Promise<StaticFile> {
  let path: string;
  try {
    path = decodeURIComponent(urlPath);
  } catch {
    return { status: 400, text: 'bad request: the address has an invalid %-escape' };
  }
  if (path === '/' || path === '') path = '/index.html';
  const root = resolve(rendererDir);
  const file = resolve(root, '.' + path);
  if (path.includes('\0') || (file !== root && !file.startsWith(root + sep))) return { status: 404, text: 'not found' };
  let body: Buffer;
  try {
    body = await readFile(file);
  } catch {
    return { status: 404, text: 'not found' };
  }
  const html = extname(file) === '.html';
  const headers: Record<string, string> = {
    'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': path === '/index.html' ? 'no-store' : 'private, max-age=3600',
  };
  if (html) {
    headers['content-security-policy'] = `${RENDERER_CSP}; frame-ancestors 'none'`;
    headers['x-frame-options'] = 'DENY';
  }
  return { status: 200, body, headers, html };
}
