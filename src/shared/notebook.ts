/**
 * The notebook: an ordered list of cells. The same shape is stored in the experiment store,
 * sent over the API and written as a `.blocklab.json` file; an imported file is validated
 * against these schemas before anything is stored.
 */
import { z } from 'zod';

export const CELL_KINDS = ['markdown', 'model', 'expansion', 'train', 'eval', 'chat', 'compare', 'sql'] as const;
export const CellKindSchema = z.enum(CELL_KINDS);
export type CellKind = z.infer<typeof CellKindSchema>;

export const NOTEBOOK_LIMITS = {
  cells: 500,
  sourceChars: 200_000,
  stateChars: 2_000_000,
  nameChars: 200,
  fileBytes: 20 * 1024 * 1024,
} as const;

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
    .refine((s) => JSON.stringify(s).length <= NOTEBOOK_LIMITS.stateChars, `a cell's state is larger than ${NOTEBOOK_LIMITS.stateChars} characters`),
});
export type Cell = z.infer<typeof CellSchema>;

export const CellsSchema = z
  .array(CellSchema)
  .max(NOTEBOOK_LIMITS.cells)
  .refine((cells) => new Set(cells.map((c) => c.id)).size === cells.length, 'two cells have the same id');

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

/** Parses the text of a notebook file; throws an Error whose message says what is wrong and where. */
export function parseNotebookFile(text: string, fileName = 'the notebook file'): NotebookFile {
  if (text.length > NOTEBOOK_LIMITS.fileBytes) throw new Error(`${fileName} is larger than ${NOTEBOOK_LIMITS.fileBytes / 1024 / 1024} MiB; it is not a notebook this app wrote`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`${fileName} is not valid JSON (${(e as Error).message})`);
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
