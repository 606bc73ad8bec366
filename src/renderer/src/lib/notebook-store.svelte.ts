/**
 * The open notebook: its cells as reactive state, every edit autosaved (debounced) through
 * `notebooks.save`, and a save state the top bar shows. Cells' run status lives in their frames,
 * not here: it is not part of the saved notebook.
 */
import type { Cell, CellKind, Notebook } from '../../../shared/notebook';
import { newCellId } from '../../../shared/notebook';
import { api } from './api';

export type SaveState = 'saved' | 'unsaved' | 'saving' | 'error';

const SAVE_DELAY_MS = 500;

/** What a new cell of each kind starts with. */
export function newCell(kind: CellKind): Cell {
  const source: Partial<Record<CellKind, string>> = {
    expansion: '{\n  "blocks": 2,\n  "placement": "interleave"\n}\n',
    sql: 'SELECT id, kind, name, method, status, last_step, total_steps\nFROM runs\nORDER BY id DESC\nLIMIT 20',
  };
  return { id: newCellId(), kind, source: source[kind] ?? '', state: {} };
}

export class NotebookStore {
  notebook = $state<Notebook | null>(null);
  saveState = $state<SaveState>('saved');
  saveError = $state<string | null>(null);

  private timer: ReturnType<typeof setTimeout> | null = null;
  private saving: Promise<void> | null = null;
  private dirty = false;

  /** Opens a notebook (saving the current one first). */
  async open(id: number): Promise<Notebook> {
    await this.flush();
    const nb = await api('notebooks.get', { id });
    this.load(nb);
    return nb;
  }

  /** Shows a notebook the backend just returned (created, imported, the demo). */
  load(nb: Notebook): void {
    this.cancelTimer();
    this.dirty = false;
    this.notebook = nb;
    this.saveState = 'saved';
    this.saveError = null;
  }

  rename(name: string): void {
    if (!this.notebook) return;
    this.notebook.name = name;
    this.changed();
  }

  patchCell(id: string, patch: { source?: string; state?: Record<string, unknown> }): void {
    const cell = this.notebook?.cells.find((c) => c.id === id);
    if (!cell) return;
    if (patch.source !== undefined) cell.source = patch.source;
    if (patch.state !== undefined) cell.state = { ...cell.state, ...patch.state };
    this.changed();
  }

  /** Adds a cell of `kind` at `index` (the end when omitted); returns it. */
  addCell(kind: CellKind, index?: number): Cell | null {
    if (!this.notebook) return null;
    const cell = newCell(kind);
    const cells = this.notebook.cells;
    cells.splice(index === undefined ? cells.length : Math.max(0, Math.min(index, cells.length)), 0, cell);
    this.changed();
    return cells.find((c) => c.id === cell.id) ?? null;
  }

  moveCell(id: string, delta: -1 | 1): void {
    const cells = this.notebook?.cells;
    if (!cells) return;
    const i = cells.findIndex((c) => c.id === id);
    const j = i + delta;
    if (i < 0 || j < 0 || j >= cells.length) return;
    const [cell] = cells.splice(i, 1);
    cells.splice(j, 0, cell!);
    this.changed();
  }

  /** Removes a cell; returns it and where it was, so it can be put back. */
  deleteCell(id: string): { cell: Cell; index: number } | null {
    const cells = this.notebook?.cells;
    if (!cells) return null;
    const i = cells.findIndex((c) => c.id === id);
    if (i < 0) return null;
    const cell = $state.snapshot(cells[i]!) as Cell;
    cells.splice(i, 1);
    this.changed();
    return { cell, index: i };
  }

  /** Puts a deleted cell back where it was (an undo). */
  restoreCell(cell: Cell, index: number): void {
    const cells = this.notebook?.cells;
    if (!cells || cells.some((c) => c.id === cell.id)) return;
    cells.splice(Math.max(0, Math.min(index, cells.length)), 0, cell);
    this.changed();
  }

  private changed(): void {
    this.dirty = true;
    if (this.saveState !== 'saving') this.saveState = 'unsaved';
    this.cancelTimer();
    this.timer = setTimeout(() => void this.flush(), SAVE_DELAY_MS);
  }

  private cancelTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Saves now if anything changed; resolves when the store has it. */
  async flush(): Promise<void> {
    this.cancelTimer();
    if (this.saving) await this.saving;
    if (!this.dirty || !this.notebook) return;
    const nb = $state.snapshot(this.notebook) as Notebook;
    const name = nb.name.trim() || 'Untitled notebook';
    this.dirty = false;
    this.saveState = 'saving';
    this.saving = api('notebooks.save', { id: nb.id, name, cells: nb.cells, baseUpdatedAt: nb.updatedAt })
      .then((r) => {
        if (this.notebook?.id === nb.id) this.notebook.updatedAt = r.updatedAt;
        this.saveError = null;
        this.saveState = this.dirty ? 'unsaved' : 'saved';
      })
      .catch((e: Error) => {
        this.dirty = true;
        this.saveError = e.message;
        this.saveState = 'error';
      })
      .finally(() => (this.saving = null));
    await this.saving;
    // edits made while saving
    if (this.dirty && (this.saveState as SaveState) !== 'error') this.changed();
  }
}
