/**
 * Atomic writes: a checkpoint or file appears complete or not at all. Everything is written
 * under a temporary name next to the target, fsynced, then renamed into place; a crash or an
 * error at any point leaves the previous good version where it was.
 */
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { BlocklabError } from './errors.js';

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Refuses, before any work is done, to replace an existing non-empty folder unless
 * `overwrite` is set.
 */
export async function checkWritableTarget(out: string, overwrite: boolean): Promise<void> {
  if (!(await exists(out))) return;
  const s = await stat(out);
  if (!s.isDirectory()) {
    if (!overwrite) throw new BlocklabError('already exists; choose another --out or pass --overwrite', { file: out });
    return;
  }
  const entries = await readdir(out);
  if (entries.length > 0 && !overwrite) {
    throw new BlocklabError('already exists and is not empty; choose another --out or pass --overwrite to replace it', { file: out });
  }
}

/**
 * Builds a folder at `out` atomically: `fill` writes into a fresh temporary sibling folder;
 * on success every file is fsynced and the folder renamed over `out` (the old one, if any, is
 * moved aside first and removed after). On failure the temporary folder is removed and `out`
 * is untouched.
 */
export async function writeFolderAtomically<T>(out: string, overwrite: boolean, fill: (tmpDir: string) => Promise<T>): Promise<T> {
  await checkWritableTarget(out, overwrite);
  const parent = dirname(out);
  await mkdir(parent, { recursive: true });
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = join(parent, `.${basename(out)}.tmp-${tag}`);
  const old = join(parent, `.${basename(out)}.old-${tag}`);
  await mkdir(tmp);
  let result: T;
  try {
    result = await fill(tmp);
    for (const f of await readdir(tmp)) await fsyncPath(join(tmp, f));
    await fsyncPath(tmp);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  const hadOld = await exists(out);
  if (hadOld) await rename(out, old);
  try {
    await rename(tmp, out);
  } catch (e) {
    if (hadOld) await rename(old, out);
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  await fsyncPath(parent).catch(() => undefined);
  if (hadOld) await rm(old, { recursive: true, force: true });
  return result;
}

/** Writes one file atomically (temp + fsync + rename). */
export async function writeFileAtomically(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (e) {
    await fh.close();
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  await rename(tmp, path);
}
