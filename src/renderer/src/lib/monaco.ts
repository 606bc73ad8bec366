/**
 * Monaco, loaded on first use (it is most of the renderer's weight; the notebook paints without
 * it). The workers come from Vite's `?worker` imports — the paths monaco-editor 0.57 exports
 * (STACK.md) — and `MonacoEnvironment.getWorker` answers every label, or the core editor worker
 * fails at run time. JSON schemas from all editors are merged into one diagnostics setting.
 */
import type * as MonacoApi from 'monaco-editor';
import type { SqlTable } from '../../../shared/api';
import { sqlSuggestions } from './sql';
import { currentTheme, onThemeChange, type Theme } from './theme';

export type Monaco = typeof MonacoApi;

declare global {
  // eslint-disable-next-line no-var
  var MonacoEnvironment: MonacoApi.Environment | undefined;
}

let loading: Promise<Monaco> | null = null;
const schemas = new Map<string, { uri: string; fileMatch: string[]; schema: unknown }>();

function themeName(t: Theme): string {
  return t === 'dark' ? 'blocklab-dark' : 'blocklab-light';
}

export function loadMonaco(): Promise<Monaco> {
  loading ??= (async () => {
    const [monaco, EditorWorker, JsonWorker, CssWorker, HtmlWorker, TsWorker] = await Promise.all([
      import('monaco-editor'),
      import('monaco-editor/editor/editor.worker?worker'),
      import('monaco-editor/languages/features/json/json.worker?worker'),
      import('monaco-editor/languages/features/css/css.worker?worker'),
      import('monaco-editor/languages/features/html/html.worker?worker'),
      import('monaco-editor/languages/features/typescript/ts.worker?worker'),
    ]);
    self.MonacoEnvironment = {
      getWorker(_workerId: string, label: string): Worker {
        switch (label) {
          case 'json':
            return new JsonWorker.default();
          case 'css':
          case 'scss':
          case 'less':
            return new CssWorker.default();
          case 'html':
          case 'handlebars':
          case 'razor':
            return new HtmlWorker.default();
          case 'typescript':
          case 'javascript':
            return new TsWorker.default();
          default:
            return new EditorWorker.default();
        }
      },
    };
    // Our card colours, so an editor sits in a cell like the rest of it.
    monaco.editor.defineTheme('blocklab-light', { base: 'vs', inherit: true, rules: [], colors: { 'editor.background': '#fbfcfd' } });
    monaco.editor.defineTheme('blocklab-dark', { base: 'vs-dark', inherit: true, rules: [], colors: { 'editor.background': '#161a20' } });
    monaco.editor.setTheme(themeName(currentTheme()));
    onThemeChange((t) => monaco.editor.setTheme(themeName(t)));
    return monaco;
  })();
  loading.catch(() => (loading = null));
  return loading;
}

/** Validates JSON models whose file name matches `fileMatch` against `schema`, as you type. */
export function registerJsonSchema(monaco: Monaco, uri: string, fileMatch: string[], schema: unknown): void {
  schemas.set(uri, { uri, fileMatch, schema });
  monaco.json.jsonDefaults.setDiagnosticsOptions({
    validate: true,
    allowComments: false,
    enableSchemaRequest: false,
    schemaValidation: 'error',
    schemas: [...schemas.values()],
  });
}

let sqlSchema: () => readonly SqlTable[] = () => [];
let sqlRegistered = false;

/**
 * Completes table and column names from the store's schema in every SQL editor (Monaco has SQL
 * highlighting but no completion of its own); `schema` is read at each request, so it follows
 * the store.
 */
export function registerSqlCompletion(monaco: Monaco, schema: () => readonly SqlTable[]): void {
  sqlSchema = schema;
  if (sqlRegistered) return;
  sqlRegistered = true;
  const kinds = { table: monaco.languages.CompletionItemKind.Struct, column: monaco.languages.CompletionItemKind.Field, keyword: monaco.languages.CompletionItemKind.Keyword };
  monaco.languages.registerCompletionItemProvider('sql', {
    triggerCharacters: ['.', ' '],
    provideCompletionItems(model, position) {
      const before = model.getValueInRange({ startLineNumber: 1, startColumn: 1, endLineNumber: position.lineNumber, endColumn: position.column });
      const word = model.getWordUntilPosition(position);
      const range = { startLineNumber: position.lineNumber, endLineNumber: position.lineNumber, startColumn: word.startColumn, endColumn: word.endColumn };
      const suggestions = sqlSuggestions(before, model.getValue(), sqlSchema()).map((s, i) => ({
        label: s.label,
        kind: kinds[s.kind],
        detail: s.detail,
        insertText: s.label,
        // the query's columns first, then tables, then keywords
        sortText: String(i).padStart(4, '0'),
        range,
      }));
      return { suggestions };
    },
  });
}

export { themeName };
