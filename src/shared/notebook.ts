/**
 * The notebook: an ordered list of cells. The same shape is stored in the experiment store,
 * sent over the API and written as a `.blocklab.json` file; an imported file is validated
 * against these schemas before anything is stored.
 */
import { z } from 'zod';
import { jsonBytes, mib, utf8Length } from './size.js';
import { jsonSyntaxProblem } from './json-error.js';

export const CELL_KINDS = ['markdown', 'model', 'expansion', 'train', 'eval', 'chat', 'compare', 'sql'] as const;
export const CellKindSchema = z.enum(CELL_KINDS);
export type CellKind = z.infer<typeof CellKindSchema>;

/**
 * Limits, in the units the transports count (UTF-8 bytes of JSON; see size.ts). They are chosen
 * so that any notebook the schema accepts can be saved over the WebSocket (whose frame limit is
 * MAX_API_MESSAGE_BYTES in api.ts), exported, and imported again: a save carries the cells once
 * (≤ cellsBytes), an import carries the exported text JSON-escaped once more (at most twice its
 * bytes for a valid file, ≤ 2 × fileBytes). A test checks the worst cases.
 */
export const NOTEBOOK_LIMITS = {
  cells: 500,
  sourceChars: 200_000,
  stateChars: 2_000_000,
  /** nesting of a cell's state (a deeper value is not settings) */
  stateDepth: 32,
  nameChars: 200,
  /** all cells together, as JSON */
  cellsBytes: 8 * 1024 * 1024,
  /** a .blocklab.json file: the cells and a small header */
  fileBytes: 8 * 1024 * 1024 + 64 * 1024,
} as const;

/** Keys of a cell's state that the store uses itself; a state may not carry them. */
export const RESERVED_STATE_KEYS = ['__id'] as const;

/** Whether a JSON value nests deeper than `max` (iterative: a hostile value cannot overflow the stack). */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}

/**
 * One cell. `source` is what the user types (Markdown, the expansion config as JSON, SQL);
 * `state` holds the cell's settings (model folder, hyperparameters, chosen checkpoints...) and
 * what its last run left (run id, result paths), as plain JSON the cell's view understands.
 */
export const CellSchema = z.object({
  id: z.string().min(1).max(64).regex(/^[A-Za-z0-9_-]+$/, 'a cell id is letters, digits, - and _'),
  kind: CellKindSchema,
  source: z.string().max(NOTEBOOK_LIMITS.sourceChars),
  state: z
    .record(z.string(), z.unknown())
    .refine((s) => !RESERVED_STATE_KEYS.some((k) => Object.hasOwn(s, k)), `a cell's state may not have the key ${RESERVED_STATE_KEYS.join(', ')} (the store keeps the cell id there)`)
    .refine((s) => !nestsDeeperThan(s, NOTEBOOK_LIMITS.stateDepth), `a cell's state nests deeper than ${NOTEBOOK_LIMITS.stateDepth} levels`)
    .refine((s) => JSON.stringify(s).length <= NOTEBOOK_LIMITS.stateChars, `a cell's state is larger than ${NOTEBOOK_LIMITS.stateChars} characters`),
});
export type Cell = z.infer<typeof CellSchema>;

export const CellsSchema = z
  .array(CellSchema)
  .max(NOTEBOOK_LIMITS.cells)
  .refine((cells) => new Set(cells.map((c) => c.id)).size === cells.length, 'two cells have the same id')
  .refine((cells) => jsonBytes(cells) <= NOTEBOOK_LIMITS.cellsBytes, `the notebook is larger than ${mib(NOTEBOOK_LIMITS.cellsBytes)}; move long text or outputs out of its cells`);

export const NotebookSchema = z.object({
  id: z.number().int(),
  name: z.string().min(1).max(NOTEBOOK_LIMITS.nameChars),
  cells: CellsSchema,
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type Notebook = z.infer<typeof NotebookSchema>;

export const NOTEBOOK_FILE_FORMAT = 'blocklab-notebook';
export const NOTEBOOK_FILE_VERSION = 1;
export const NOTEBOOK_FILE_SUFFIX = '.blocklab.json';

/** What a `.blocklab.json` file holds. */
export const NotebookFileSchema = z.strictObject({
  format: z.literal(NOTEBOOK_FILE_FORMAT, { message: `is not a Blocklab notebook (expected "format": "${NOTEBOOK_FILE_FORMAT}")` }),
  version: z.literal(NOTEBOOK_FILE_VERSION, { message: `is a notebook version this Blocklab does not read (it reads version ${NOTEBOOK_FILE_VERSION})` }),
  name: z.string().min(1).max(NOTEBOOK_LIMITS.nameChars),
  cells: CellsSchema,
  exportedAt: z.string().optional(),
});
export type NotebookFile = z.infer<typeof NotebookFileSchema>;

export function notebookToFile(nb: Pick<Notebook, 'name' | 'cells'>, exportedAt = new Date().toISOString()): NotebookFile {
  return { format: NOTEBOOK_FILE_FORMAT, version: NOTEBOOK_FILE_VERSION, name: nb.name, cells: nb.cells, exportedAt };
}

/** The text of a notebook file: indented for people, or compact when indenting would not fit the import limit. */
export function notebookFileText(nb: Pick<Notebook, 'name' | 'cells'>, exportedAt?: string): string {
  const file = notebookToFile(nb, exportedAt);
  const pretty = JSON.stringify(file, null, 2) + '\n';
  return utf8Length(pretty) <= NOTEBOOK_LIMITS.fileBytes ? pretty : JSON.stringify(file) + '\n';
}

/** Parses the text of a notebook file; throws an Error whose message says what is wrong and where. */
export function parseNotebookFile(text: string, fileName = 'the notebook file'): NotebookFile {
  if (text.length > NOTEBOOK_LIMITS.fileBytes || utf8Length(text) > NOTEBOOK_LIMITS.fileBytes) {
    throw new Error(`${fileName} is larger than ${mib(NOTEBOOK_LIMITS.fileBytes)}; it is not a notebook this app wrote`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`${fileName} is not valid JSON (${jsonSyntaxProblem(e)})`);
  }
  const parsed = NotebookFileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length ? ` at ${issue.path.join('.')}` : '';
    throw new Error(`${fileName}${where}: ${issue.message}`);
  }
  return parsed.data;
}

/** A fresh cell id (time + randomness; unique within a notebook in practice, checked on save). */
export function newCellId(): string {
  return `c${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
}
