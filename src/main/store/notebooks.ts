/**
 * Notebooks and their cells in the experiment store (tables `notebooks` and `cells` of schema
 * v1). A save replaces a notebook's cells in one transaction, so a crash mid-save leaves the
 * previous version whole. Cells are validated (src/shared/notebook.ts) on the way in and out.
 */
import { BlocklabError } from '../engine/errors.js';
import { CellSchema, CellsSchema, type Cell, type Notebook } from '../../shared/notebook.js';
import type { ExperimentStore } from './store.js';

export interface NotebookListRow {
  id: number;
  name: string;
  cells: number;
  updatedAt: string;
}


function checkCells(cells: Cell[]): Cell[] {
  const parsed = CellsSchema.safeParse(cells);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new BlocklabError(`the notebook's cells are invalid${issue.path.length ? ` at ${issue.path.join('.')}` : ''}: ${issue.message}`);
  }
  return parsed.data;
}

/** The notebook as stored, which must be the cells that were written (else the transaction rolls back). */
function readBack(store: ExperimentStore, id: number, written: Cell[]): Notebook {
  const nb = getNotebook(store, id);
  if (nb.cells.length !== written.length || nb.cells.some((c, i) => c.id !== written[i].id)) {
    throw new BlocklabError('the notebook could not be stored as it is (its cells came back different); nothing was saved');
  }
  return nb;
}

export function listNotebooks(store: ExperimentStore): NotebookListRow[] {
  return store.db
    .prepare(
      `SELECT n.id, n.name, n.updated_at AS updatedAt, (SELECT COUNT(*) FROM cells c WHERE c.notebook_id = n.id) AS cells
       FROM notebooks n ORDER BY n.updated_at DESC, n.id DESC`,
    )
    .all() as NotebookListRow[];
}

export function getNotebook(store: ExperimentStore, id: number): Notebook {
  const nb = store.db.prepare('SELECT id, name, created_at AS createdAt, updated_at AS updatedAt FROM notebooks WHERE id = ?').get(id) as
    | { id: number; name: string; createdAt: string; updatedAt: string }
    | undefined;
  if (!nb) throw new BlocklabError(`there is no notebook ${id} in the store (it may have been deleted)`, { file: store.path });
  const rows = store.db.prepare('SELECT kind, source, state FROM cells WHERE notebook_id = ? ORDER BY position, id').all(id) as { kind: string; source: string | null; state: string | null }[];
  const cells: Cell[] = [];
  const ids = new Set<string>();
  for (const r of rows) {
    // the cell id lives in the state JSON (schema v1 has no column for it)
    let state: Record<string, unknown> = {};
    try {
      const parsed = r.state ? (JSON.parse(r.state) as unknown) : {};
      state = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
    } catch {
      state = {};
    }
    const { __id, ...rest } = state as { __id?: unknown };
    // an id an earlier version let through (invalid, or a duplicate) is replaced, so the notebook still opens
    let id = typeof __id === 'string' && CellSchema.shape.id.safeParse(__id).success && !ids.has(__id) ? __id : `cell${cells.length + 1}`;
    while (ids.has(id)) id = `${id}x`;
    ids.add(id);
    cells.push({ id, kind: r.kind as Cell['kind'], source: r.source ?? '', state: rest });
  }
  return { ...nb, cells: checkCells(cells) };
}

function writeCells(store: ExperimentStore, id: number, cells: Cell[]): void {
  store.db.prepare('DELETE FROM cells WHERE notebook_id = ?').run(id);
  const insert = store.db.prepare('INSERT INTO cells (notebook_id, position, kind, source, state) VALUES (?, ?, ?, ?, ?)');
  // the id last, so no key of the state can stand in for it
  cells.forEach((c, i) => insert.run(id, i, c.kind, c.source, JSON.stringify({ ...c.state, __id: c.id })));
}

export function createNotebook(store: ExperimentStore, name: string, cells: Cell[] = []): Notebook {
  store.assertWritable('saving notebooks');
  const checked = checkCells(cells);
  // read back inside the transaction: a notebook that would not open again is never committed
  return store.db.transaction(() => {
    const info = store.db.prepare('INSERT INTO notebooks (name) VALUES (?)').run(name);
    const nid = Number(info.lastInsertRowid);
    writeCells(store, nid, checked);
    return readBack(store, nid, checked);
  })();
}

/**
 * Replaces the name and cells of a notebook; returns the new updated_at. With `baseUpdatedAt`
 * (the version the editor started from), a notebook saved meanwhile by another window is not
 * overwritten: the save is refused and says what to do.
 */
export function saveNotebook(store: ExperimentStore, id: number, name: string, cells: Cell[], baseUpdatedAt?: string): string {
  store.assertWritable('saving notebooks');
  const checked = checkCells(cells);
  return store.db.transaction(() => {
    if (baseUpdatedAt !== undefined) {
      const current = store.db.prepare('SELECT updated_at FROM notebooks WHERE id = ?').pluck().get(id) as string | undefined;
      if (current !== undefined && current !== baseUpdatedAt) {
        throw new BlocklabError(
          `“${name}” was saved from another window or tab since this one loaded it, so this version was not saved (nothing was overwritten); export this notebook to keep these edits, then reload to see the other version`,
        );
      }
    }
    let now = new Date().toISOString();
    // a save in the same millisecond as the version it replaces still gets a new stamp
    if (now === baseUpdatedAt) now = new Date(Date.parse(now) + 1).toISOString();
    const info = store.db.prepare('UPDATE notebooks SET name = ?, updated_at = ? WHERE id = ?').run(name, now, id);
    if (info.changes === 0) throw new BlocklabError(`there is no notebook ${id} in the store (it may have been deleted); export it to keep a copy`, { file: store.path });
    writeCells(store, id, checked);
    readBack(store, id, checked);
    return now;
  })();
}

export function deleteNotebook(store: ExperimentStore, id: number): boolean {
  store.assertWritable('saving notebooks');
  return store.db.prepare('DELETE FROM notebooks WHERE id = ?').run(id).changes > 0;
}
