/**
 * The SQL cell's pure logic: numbers rounded for the table (full precision in the CSV and the
 * cell's tooltip), a result as CSV (RFC 4180), and what to complete at the cursor from the
 * store's schema (tables after FROM/JOIN, a table's columns after `table.` or `alias.`, the
 * columns of the tables the query names, and SQL keywords).
 */
import type { SqlTable } from '../../../shared/api';

/** A value as the table shows it: floats to 6 significant digits, integers and text as they are. */
export function displayValue(v: unknown): { text: string; full: string; kind: 'null' | 'num' | 'text' } {
  if (v === null || v === undefined) return { text: 'NULL', full: 'NULL', kind: 'null' };
  if (typeof v === 'bigint') return { text: String(v), full: String(v), kind: 'num' };
  if (typeof v === 'number') {
    const full = String(v);
    if (Number.isInteger(v) || !Number.isFinite(v)) return { text: full, full, kind: 'num' };
    const a = Math.abs(v);
    const text = a !== 0 && (a < 1e-4 || a >= 1e15) ? v.toExponential(4).replace(/\.?0+e/, 'e') : String(Number(v.toPrecision(6)));
    return { text, full, kind: 'num' };
  }
  const full = typeof v === 'string' ? v : JSON.stringify(v);
  return { text: full, full, kind: 'text' };
}

function csvField(v: unknown): string {
  if (v === null || v === undefined) return '';
  const s = typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean' ? String(v) : JSON.stringify(v);
  return /[",\r\n]/.test(s) || /^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The result as CSV: a header row, then every row; numbers at full precision, NULL as empty. */
export function toCsv(columns: readonly string[], rows: readonly (readonly unknown[])[]): string {
  return [columns, ...rows].map((r) => r.map(csvField).join(',')).join('\r\n') + '\r\n';
}

export const SQL_KEYWORDS = [
  'SELECT', 'FROM', 'WHERE', 'GROUP BY', 'ORDER BY', 'HAVING', 'LIMIT', 'OFFSET', 'JOIN', 'LEFT JOIN', 'INNER JOIN', 'ON', 'AS', 'AND', 'OR', 'NOT',
  'IN', 'IS NULL', 'IS NOT NULL', 'LIKE', 'BETWEEN', 'DISTINCT', 'COUNT', 'AVG', 'MIN', 'MAX', 'SUM', 'CASE', 'WHEN', 'THEN', 'ELSE', 'END', 'WITH',
  'DESC', 'ASC', 'json_extract', 'UNION', 'EXISTS',
] as const;

export interface SqlSuggestion {
  label: string;
  kind: 'table' | 'column' | 'keyword';
  detail: string;
}

/** The tables a query names (FROM/JOIN), with their aliases: alias (or name) → table. */
export function tablesInQuery(sql: string, schema: readonly SqlTable[]): Map<string, string> {
  const names = new Set(schema.map((t) => t.name.toLowerCase()));
  const out = new Map<string, string>();
  const re = /\b(?:from|join)\s+([A-Za-z_][\w]*)(?:\s+(?:as\s+)?([A-Za-z_][\w]*))?/gi;
  const reserved = new Set(['where', 'join', 'left', 'inner', 'on', 'group', 'order', 'limit', 'using', 'cross', 'natural', 'outer', 'union', 'having']);
  for (let m = re.exec(sql); m; m = re.exec(sql)) {
    const table = m[1]!.toLowerCase();
    if (!names.has(table)) continue;
    out.set(table, table);
    const alias = m[2]?.toLowerCase();
    if (alias && !reserved.has(alias)) out.set(alias, table);
  }
  return out;
}

/** What to offer at the cursor: `before` is the query's text up to the cursor, `all` the whole query. */
export function sqlSuggestions(before: string, all: string, schema: readonly SqlTable[]): SqlSuggestion[] {
  const table = (name: string) => schema.find((t) => t.name.toLowerCase() === name.toLowerCase());
  const columnsOf = (t: SqlTable): SqlSuggestion[] => t.columns.map((c) => ({ label: c.name, kind: 'column', detail: `${t.name}.${c.name}${c.type ? ` ${c.type}` : ''}` }));
  const tables = (): SqlSuggestion[] => schema.map((t) => ({ label: t.name, kind: 'table', detail: `table · ${t.columns.length} columns` }));

  // `alias.` or `table.` right before the cursor: that table's columns only
  const dotted = /([A-Za-z_][\w]*)\.(\w*)$/.exec(before);
  if (dotted) {
    const t = table(tablesInQuery(all, schema).get(dotted[1]!.toLowerCase()) ?? dotted[1]!);
    return t ? columnsOf(t) : [];
  }
  // after FROM / JOIN / INTO: a table
  if (/\b(?:from|join|into|update)\s+\w*$/i.test(before)) return tables();
  const named = [...new Set(tablesInQuery(all, schema).values())].map((n) => table(n)).filter((t): t is SqlTable => !!t);
  const columns = named.flatMap(columnsOf);
  const keywords: SqlSuggestion[] = SQL_KEYWORDS.map((k) => ({ label: k, kind: 'keyword', detail: 'keyword' }));
  return [...columns, ...tables(), ...keywords];
}
