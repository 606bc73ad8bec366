/**
 * Notebooks: the file format's validation (what an import refuses, and the message), the
 * store's round trip (order, ids, states), and a save that fails leaving the old version whole.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { newCellId, notebookToFile, parseNotebookFile, type Cell } from '../../src/shared/notebook.js';
import { RENDERER_CSP } from '../../src/shared/security.js';
import { ExperimentStore } from '../../src/main/store/index.js';
import { createNotebook, deleteNotebook, getNotebook, listNotebooks, saveNotebook } from '../../src/main/store/notebooks.js';

const cells: Cell[] = [
  { id: 'a', kind: 'markdown', source: '# hi', state: {} },
  { id: 'b', kind: 'train', source: '', state: { steps: 40, data: ['x.txt'], nested: { k: [1, 2] } } },
  { id: 'c', kind: 'sql', source: 'SELECT 1', state: {} },
];

describe('notebook files', () => {
  it('round-trips through the file format', () => {
    const text = JSON.stringify(notebookToFile({ name: 'N', cells }));
    const back = parseNotebookFile(text);
    expect(back.name).toBe('N');
    expect(back.cells).toEqual(cells);
  });

  it('refuses what is not a notebook, saying where', () => {
    const file = (over: Record<string, unknown>) => JSON.stringify({ format: 'blocklab-notebook', version: 1, name: 'x', cells: [], ...over });
    expect(() => parseNotebookFile('[1,', 'f.json')).toThrow(/^f\.json is not valid JSON/);
    expect(() => parseNotebookFile(file({ format: 'ipynb' }), 'f.json')).toThrow(/f\.json at format: is not a Blocklab notebook/);
    expect(() => parseNotebookFile(file({ version: 2 }), 'f.json')).toThrow(/at version: .*reads version 1/);
    expect(() => parseNotebookFile(file({ cells: [{ id: 'a', kind: 'python', source: '', state: {} }] }))).toThrow(/cells\.0\.kind/);
    expect(() => parseNotebookFile(file({ cells: [{ id: '../x', kind: 'sql', source: '', state: {} }] }))).toThrow(/cells\.0\.id/);
    expect(() => parseNotebookFile(file({ cells: [cells[0], cells[0]] }))).toThrow(/same id/);
    expect(() => parseNotebookFile(file({ extra: true }))).toThrow(/extra/);
    expect(() => parseNotebookFile(file({ cells: Array.from({ length: 501 }, (_, i) => ({ id: `c${i}`, kind: 'sql', source: '', state: {} })) }))).toThrow(/cells/);
  });

  it('makes cell ids that pass the schema and do not repeat', () => {
    const ids = new Set(Array.from({ length: 200 }, newCellId));
    expect(ids.size).toBe(200);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it('ships a demo notebook that parses (placeholders filled) and a page CSP equal to the served one', () => {
    const text = readFileSync(new URL('../../resources/demo/notebook.blocklab.json', import.meta.url), 'utf8').replaceAll('{{demo}}', '/d').replaceAll('{{work}}', '/w');
    expect(parseNotebookFile(text).cells.length).toBeGreaterThanOrEqual(8);
    const html = readFileSync(new URL('../../src/renderer/index.html', import.meta.url), 'utf8');
    const meta = /http-equiv="Content-Security-Policy"\s+content="([^"]+)"/.exec(html)?.[1];
    expect(meta).toBe(RENDERER_CSP);
  });
});

describe('notebooks in the store', () => {
  it('keeps order, ids and states; a save replaces the cells; delete cascades', () => {
    const store = ExperimentStore.open(':memory:');
    const nb = createNotebook(store, 'One', cells);
    expect(getNotebook(store, nb.id).cells).toEqual(cells);
    const reordered = [cells[2], cells[0]];
    saveNotebook(store, nb.id, 'One (edited)', reordered);
    const got = getNotebook(store, nb.id);
    expect(got.name).toBe('One (edited)');
    expect(got.cells).toEqual(reordered);
    expect(listNotebooks(store)).toEqual([expect.objectContaining({ id: nb.id, cells: 2 })]);
    expect(deleteNotebook(store, nb.id)).toBe(true);
    expect(store.db.prepare('SELECT COUNT(*) AS n FROM cells').get()).toEqual({ n: 0 });
    store.close();
  });

  it('does not overwrite a version saved from another window', () => {
    const store = ExperimentStore.open(':memory:');
    const nb = createNotebook(store, 'Shared', cells);
    // two windows open the same version; the first saves
    const first = saveNotebook(store, nb.id, 'Shared', [cells[0]], nb.updatedAt);
    expect(first).not.toBe(nb.updatedAt);
    // the second, still on the old version, is refused and nothing is lost
    expect(() => saveNotebook(store, nb.id, 'Shared', [cells[1]], nb.updatedAt)).toThrow(/saved from another window.*nothing was overwritten/);
    expect(getNotebook(store, nb.id).cells).toEqual([cells[0]]);
    // the first window goes on saving from its own version
    saveNotebook(store, nb.id, 'Shared', [cells[0], cells[2]], first);
    expect(getNotebook(store, nb.id).cells).toEqual([cells[0], cells[2]]);
    store.close();
  });

  it('leaves the previous version whole when a save is refused', () => {
    const store = ExperimentStore.open(':memory:');
    const nb = createNotebook(store, 'Two', cells);
    expect(() => saveNotebook(store, nb.id, 'Two', [cells[0], { ...cells[1], id: 'a' }])).toThrow(/same id/);
    expect(() => saveNotebook(store, 999, 'Gone', cells)).toThrow(/no notebook 999/);
    expect(getNotebook(store, nb.id).cells).toEqual(cells);
    store.close();
  });
});
