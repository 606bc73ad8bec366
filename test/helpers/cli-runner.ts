/**
 * Runs the real `blocklab` command (node bin/blocklab.mjs, through tsx) as a user would, and
 * captures stdout, stderr and the exit code. Each spawn costs about 1.5 s (tsx + wasm start),
 * so tests share checkpoints and keep the number of calls small.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = fileURLToPath(new URL('../../bin/blocklab.mjs', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runCli(args: string[], opts: { timeoutMs?: number; env?: Record<string, string> } = {}): Promise<CliResult> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [BIN, ...args], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      timeout: opts.timeoutMs ?? 60_000,
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', ...opts.env },
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: unknown; stdout?: string; stderr?: string; killed?: boolean; signal?: string };
    if (typeof err.code !== 'number') {
      throw new Error(`blocklab ${args.join(' ')} did not exit normally (${String(err.code ?? err.signal)}): ${err.stderr ?? ''}`);
    }
    return { code: err.code, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

/** Parses stdout as exactly one JSON document (throws, showing the output, when it is not). */
export function oneJson<T = Record<string, unknown>>(r: CliResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch (e) {
    throw new Error(`stdout is not exactly one JSON document (${(e as Error).message}):\n${r.stdout}\n--- stderr:\n${r.stderr}`);
  }
}

/** Lines of stderr that are not empty. */
export function stderrLines(r: CliResult): string[] {
  return r.stderr.split('\n').filter((l) => l.trim().length > 0);
}

/** Lines that look like a JavaScript stack frame. */
export function stackLines(text: string): string[] {
  return text.split('\n').filter((l) => /^\s{4}at /.test(l));
}
