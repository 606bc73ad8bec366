/**
 * Where the app may write and what its folder browser shows. The API is reachable from a page
 * (the desktop window, or a browser tab holding `blocklab serve`'s token), so a request's paths
 * are not trusted as a shell user's would be: outputs go nowhere near the system's own folders,
 * the user's hidden folders (~/.ssh, ~/.config, …) or the bundled files, and the folder browser
 * lists the folders a user picks models and data from, not those. The CLI, run by the user
 * themselves, is not limited here.
 */
import { realpathSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, parse, relative, resolve, sep } from 'node:path';
import { BlocklabError } from '../engine/errors.js';
import { resourcesDir } from '../engine/resources.js';

/** The operating system's own folders: never written, never browsed. */
const SYSTEM_DIRS =
  process.platform === 'win32'
    ? [process.env.SystemRoot ?? 'C:\\Windows', process.env.ProgramFiles ?? 'C:\\Program Files', process.env['ProgramFiles(x86)'] ?? 'C:\\Program Files (x86)', process.env.ProgramData ?? 'C:\\ProgramData']
    : ['/bin', '/boot', '/dev', '/etc', '/lib', '/lib32', '/lib64', '/libx32', '/proc', '/run', '/sbin', '/sys', '/usr', '/var/lib', '/var/log', '/var/run', '/System', '/Library', '/private/etc', '/private/var/db'];

/** Whether `path` is `dir` or inside it. */
export function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (!rel.startsWith('..') && !rel.startsWith(sep) && !/^[a-zA-Z]:/.test(rel));
}

/** The real path of `path`, or of its nearest existing ancestor with the rest appended (a link cannot lead an output elsewhere). */
export function realPathOf(path: string): string {
  let p = resolve(path);
  const rest: string[] = [];
  for (;;) {
    try {
      return resolve(realpathSync(p), ...rest.reverse());
    } catch {
      const up = dirname(p);
      if (up === p) return resolve(path);
      rest.push(p.slice(up.length).replace(/^[\\/]+/, ''));
      p = up;
    }
  }
}

/** A folder name that starts with a dot in `path` (relative, or absolute below its root). */
function hiddenPart(path: string): string | null {
  const { root } = parse(path);
  return path.slice(root.length).split(/[\\/]+/).find((part) => part.startsWith('.') && part !== '.' && part !== '..') ?? null;
}

export interface PathPolicy {
  /** the app's data folder (under ~/.config on Linux, yet allowed) */
  userDataDir: string;
}

/** Why `path` is off limits, or null: inside the system's folders, or a hidden folder. */
function refusal(path: string, policy: PathPolicy, what: { system: string; hidden: string }): string | null {
  const real = realPathOf(path);
  // the app's data folder and the temporary folder may themselves sit in hidden folders
  // (~/.config/blocklab, macOS's /private/var/folders): judge only what lies below them
  const root = [policy.userDataDir, tmpdir()].map(realPathOf).find((d) => isInside(real, d));
  if (root) {
    const hidden = hiddenPart(relative(root, real));
    return hidden ? `is inside the hidden folder ${hidden}, ${what.hidden}` : null;
  }
  const system = SYSTEM_DIRS.find((d) => isInside(real, d));
  if (system) return `is inside ${system}, a folder of the operating system; ${what.system}`;
  const hidden = hiddenPart(real);
  return hidden ? `is inside the hidden folder ${hidden}, ${what.hidden}` : null;
}

/** Refuses an output path the app must not write to; says why and what to do. */
export function checkOutputLocation(path: string, policy: PathPolicy): void {
  const why = refusal(path, policy, {
    system: `the app writes its outputs only to your own folders — choose one under ${homedir()}`,
    hidden: 'and the app does not write into hidden folders — choose a visible folder',
  });
  if (why) throw new BlocklabError(why, { file: path });
  if (isInside(realPathOf(path), realPathOf(resourcesDir()))) throw new BlocklabError('is inside the bundled demo files, which the app does not change; choose another folder', { file: path });
}

/** Refuses a folder the folder browser must not list (system folders, hidden folders). */
export function checkBrowsable(dir: string, policy: PathPolicy): void {
  if (isInside(realPathOf(dir), realPathOf(resourcesDir()))) return;
  const why = refusal(dir, policy, { system: 'models and data are not kept there', hidden: 'which the folder browser does not open' });
  if (why) throw new BlocklabError(why, { file: dir });
}
