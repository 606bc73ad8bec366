/**
 * Errors meant for people. A BlocklabError's message is one line that says what was wrong,
 * where (the file, when there is one) and what to do. The CLI prints it without a stack trace
 * unless --debug is given; anything that is not a BlocklabError is a bug and prints its stack.
 */
export class BlocklabError extends Error {
  /** the file or folder the problem is in, when there is one */
  readonly file?: string;
  /** for a program to act on: "confirm-overwrite" — the output is Blocklab's own and may be replaced if the user agrees */
  readonly code?: 'confirm-overwrite';

  constructor(message: string, options: { file?: string; cause?: unknown; code?: 'confirm-overwrite' } = {}) {
    super(options.file ? `${options.file}: ${message}` : message, { cause: options.cause });
    this.name = 'BlocklabError';
    this.file = options.file;
    this.code = options.code;
  }
}

/** Throws a BlocklabError unless `condition` holds. */
export function check(condition: unknown, message: string, file?: string): asserts condition {
  if (!condition) throw new BlocklabError(message, { file });
}
