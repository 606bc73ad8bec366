/**
 * Waiting on processes the test did not spawn itself (an engine process forked by a `blocklab`
 * command): found through /proc, waited for by their disappearance — never by a fixed sleep.
 * Linux only, as CI is.
 */
import { readFileSync, readdirSync } from 'node:fs';

/** [state, ppid] of a process from /proc/PID/stat, or null when it is gone. */
function stat(pid: number): { state: string; ppid: number } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ')'
  const [state, ppid] = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state, ppid: Number(ppid) };
}

/** The pids of `pid`'s child processes. */
export function childPids(pid: number): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((p) => stat(p)?.ppid === pid);
}

/** Whether the process has exited (gone, or a zombie its new parent has not reaped yet). */
export function hasExited(pid: number): boolean {
  const s = stat(pid);
  return s === null || s.state === 'Z' || s.state === 'X';
}

/**
 * Resolves when the process has exited. The limit only turns a process that never exits into a
 * failure with a message instead of a test timeout; it is not a measurement.
 */
export async function waitForExit(pid: number, what: string, limitMs = 60_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!hasExited(pid)) {
    if (Date.now() > deadline) throw new Error(`${what} (pid ${pid}) is still running after ${limitMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
