/**
 * Atomic writes: a checkpoint or file appears complete or not at all. Everything is written
 * under a temporary name next to the target, fsynced, then renamed into place; an error at any
 * point leaves the previous good version where it was, and so does a crash, once the next write
 * there has finished what it left (removeLeftovers).
 */
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
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

// ------------------------------------------------------------------ what Blocklab made

/**
 * Every folder Blocklab creates carries this small file, so "is this ours?" has an answer:
 * Blocklab replaces or deletes only folders that carry it (and, inside them, only the kinds of
 * files it writes there), never a folder of the user's.
 */
export const OUTPUT_MARKER = '.blocklab-output.json';

export type OutputKind = 'checkpoint' | 'run' | 'report' | 'demo' | 'cluster';

/** What Blocklab writes at the top level of each kind of output folder. */
const KNOWN_ENTRIES: Record<OutputKind, RegExp> = {
  checkpoint:
    /^(config\.json|generation_config\.json|model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json|tokenizer(_config)?\.json|tokenizer\.model|special_tokens_map\.json|chat_template\.(jinja|json)|optimizer\.safetensors|trainer_state\.json|adapter_config\.json|adapter_model\.safetensors)$/,
  run: /^(checkpoint-\d+|model|adapter)$/,
  report: /^report\.(html|md|pdf)$/,
  demo: /^(expanded-(interleave|top)|run-[a-z]+|cache|report)$/,
  // blocklab export-run: LLaMA-Factory's own output/ (trained weights) is not ours, so it is never replaced
  cluster: /^(model|data|ds_z2_config\.json|train\.yaml|README\.md|blocklab-export\.json)$/,
};
/** What an interrupted atomic write leaves beside its target (ours too). */
const LEFTOVER = /^\..+\.(tmp|old)-\d+-[0-9a-f]{8}$/;
/** The same, taken apart: the target's name, which of the two, the writing process's id. */
const LEFTOVER_PARTS = /^\.(.+)\.(tmp|old)-(\d+)-[0-9a-f]{8}$/;

/** Whether process `pid` is running (a process we may not signal is running too). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Finishes what interrupted atomic writes left in `dir` (a killed process cannot clean up after
 * itself), for processes no longer running only, so that a write in progress elsewhere is never
 * disturbed: a `.NAME.tmp-PID-…` sibling, an output never put in place, is removed; a
 * `.NAME.old-PID-…` one — the previous version, moved aside for the swap — is removed once NAME
 * is there, and put back as NAME when it is not (the write was killed between its two renames:
 * the previous version is restored, as the write's atomicity promises). `only` limits it to one
 * target's name. Returns what it did, in words.
 */
export async function removeLeftovers(dir: string, only?: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const done: string[] = [];
  for (const n of names.sort()) {
    const m = LEFTOVER_PARTS.exec(n);
    if (!m || (only !== undefined && m[1] !== only)) continue;
    const [, target, which, pid] = m;
    if (Number(pid) === process.pid || processAlive(Number(pid))) continue;
    if (which === 'old' && !(await exists(join(dir, target)))) {
      await rename(join(dir, n), join(dir, target));
      done.push(`restored ${target} from ${n}`);
      continue;
    }
    await rm(join(dir, n), { recursive: true, force: true });
    done.push(`removed ${n}`);
  }
  return done;
}

const KIND_WORDS: Record<OutputKind, string> = { checkpoint: 'a checkpoint', run: 'a training run', report: 'a report', demo: 'a demo', cluster: 'a LLaMA-Factory export' };

/** The kind of Blocklab output `dir` is, from its marker; null when it has none (or is not a folder). */
export async function outputKindOf(dir: string): Promise<OutputKind | null> {
  try {
    const raw = JSON.parse(await readFile(join(dir, OUTPUT_MARKER), 'utf8')) as { made_by?: unknown; kind?: unknown };
    return raw.made_by === 'blocklab' && typeof raw.kind === 'string' && raw.kind in KNOWN_ENTRIES ? (raw.kind as OutputKind) : null;
  } catch {
    return null;
  }
}

/** Marks `dir` as a Blocklab output of `kind` (inside a temporary folder, before it is moved into place). */
export async function writeOutputMarker(dir: string, kind: OutputKind): Promise<void> {
  await writeFile(join(dir, OUTPUT_MARKER), JSON.stringify({ made_by: 'blocklab', kind, created: new Date().toISOString() }) + '\n');
}

/** Entries of a marked folder that Blocklab would not have written there. */
function foreignEntries(names: string[], kind: OutputKind): string[] {
  return names.filter((n) => n !== OUTPUT_MARKER && !LEFTOVER.test(n) && !KNOWN_ENTRIES[kind].test(n));
}

/** What is at a path an output is to be written to. */
export type TargetState = 'absent' | 'empty' | 'ours';

/**
 * Decides, before any work is done, whether an output of `kind` may be written at `out`:
 * - nothing there, or an empty folder: yes;
 * - a folder Blocklab wrote as this kind, holding only what Blocklab writes: only with
 *   `overwrite` (the user asked, knowing; the app asks first, naming the folder);
 * - anything else — a file, a folder of the user's, a Blocklab output of another kind, or one
 *   the user has put files of their own into: never, whatever `overwrite` says.
 * Refusals are BlocklabErrors naming the folder; the one that only needs a confirmation has
 * code "confirm-overwrite".
 */
export async function checkWritableTarget(out: string, overwrite: boolean, kind: OutputKind = 'checkpoint'): Promise<TargetState> {
  const s = await stat(out).catch(() => null);
  if (!s) return 'absent';
  if (!s.isDirectory()) throw new BlocklabError('is a file, not a folder; choose a new or empty folder', { file: out });
  const names = await readdir(out);
  if (names.length === 0) return 'empty';
  const found = await outputKindOf(out);
  if (found === null) {
    throw new BlocklabError(
      'is not empty and is not a folder Blocklab wrote; Blocklab writes only into a new or empty folder, or replaces one of its own outputs — choose another folder',
      { file: out },
    );
  }
  if (found !== kind) throw new BlocklabError(`holds ${KIND_WORDS[found]} that Blocklab wrote, not ${KIND_WORDS[kind]}; choose another folder`, { file: out });
  const foreign = foreignEntries(names, kind);
  if (foreign.length > 0) {
    const shown = foreign.slice(0, 5).join(', ') + (foreign.length > 5 ? `, … (${foreign.length} in all)` : '');
    throw new BlocklabError(`holds ${KIND_WORDS[kind]} that Blocklab wrote, but also files it did not write (${shown}); move them out, or choose another folder`, { file: out });
  }
  if (!overwrite) {
    throw new BlocklabError(`already exists and holds ${KIND_WORDS[kind]} that Blocklab wrote; pass --overwrite to replace it, or choose another folder`, { file: out, code: 'confirm-overwrite' });
  }
  return 'ours';
}

/**
 * Makes (or adopts) a folder that Blocklab fills over time — a training run's folder, the demo's:
 * a new or empty folder gets the marker; a folder of the same kind that Blocklab wrote is used
 * as it is; anything else is refused (checkWritableTarget's rules, with `overwrite` given).
 */
export async function prepareOutputFolder(out: string, kind: OutputKind): Promise<TargetState> {
  const state = await checkWritableTarget(out, true, kind);
  if (state !== 'ours') {
    await mkdir(out, { recursive: true });
    await writeOutputMarker(out, kind);
  } else {
    // a run killed mid-checkpoint left a partial one inside its own folder
    await removeLeftovers(out);
  }
  return state;
}

/** Whether `file` may be replaced by a single-file output (GGUF): only with `overwrite`, and only a file of that format. */
export async function checkWritableFile(file: string, overwrite: boolean, magic: { bytes: Uint8Array; format: string }): Promise<void> {
  const s = await stat(file).catch(() => null);
  if (!s) return;
  if (s.isDirectory()) throw new BlocklabError(`is a folder; give a file name ending in .${magic.format.toLowerCase()}`, { file });
  const head = new Uint8Array(magic.bytes.length);
  const fh = await open(file, 'r');
  try {
    await fh.read(head, 0, head.length, 0);
  } finally {
    await fh.close();
  }
  if (!head.every((b, i) => b === magic.bytes[i])) {
    throw new BlocklabError(`already exists and is not a ${magic.format} file; Blocklab will not replace it — choose another file name`, { file });
  }
  if (!overwrite) throw new BlocklabError(`already exists; pass --overwrite to replace it, or choose another file name`, { file, code: 'confirm-overwrite' });
}

/**
 * Builds a folder at `out` atomically: `fill` writes into a fresh temporary sibling folder;
 * on success the marker is added, every file is fsynced and the folder renamed over `out` (the
 * old one, if any — empty, or a Blocklab output of this kind that `overwrite` allows replacing —
 * is moved aside first and removed after). On failure the temporary folder is removed and
 * `out` is untouched.
 */
export async function writeFolderAtomically<T>(out: string, overwrite: boolean, fill: (tmpDir: string) => Promise<T>, kind: OutputKind = 'checkpoint'): Promise<T> {
  const parent = dirname(out);
  // first what a killed write to `out` left (its previous version put back), then the checks
  await removeLeftovers(parent, basename(out));
  await checkWritableTarget(out, overwrite, kind);
  await mkdir(parent, { recursive: true });
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = join(parent, `.${basename(out)}.tmp-${tag}`);
  const old = join(parent, `.${basename(out)}.old-${tag}`);
  await mkdir(tmp);
  let result: T;
  try {
    result = await fill(tmp);
    await writeOutputMarker(tmp, kind);
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

/**
 * Writes one file atomically (temp + fsync + rename). `exclusive`: a file that is already there
 * (one the user has, or made since the name was chosen) is refused, never replaced.
 */
export async function writeFileAtomically(path: string, data: string | Uint8Array, opts: { exclusive?: boolean } = {}): Promise<void> {
  await removeLeftovers(dirname(path), basename(path));
  if (opts.exclusive && (await exists(path))) throw new BlocklabError('already exists; Blocklab does not replace a file it did not write — choose another folder', { file: path });
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
