/**
 * What differs between run configurations: each config is flattened to dotted keys
 * (`method.rank`, `adamw.beta2`), arrays and non-plain values are leaves compared by their
 * JSON, and only the keys whose values are not all equal are kept (a key missing from one
 * config differs from any value it has in another).
 */
export type FlatConfig = Record<string, unknown>;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
}

/** `{a: {b: 1, c: [2]}}` → `{'a.b': 1, 'a.c': [2]}`; an empty object stays a leaf `{}`. */
export function flattenConfig(config: unknown, prefix = ''): FlatConfig {
  const out: FlatConfig = {};
  if (!isPlainObject(config)) {
    if (prefix) out[prefix] = config;
    return out;
  }
  const keys = Object.keys(config);
  if (keys.length === 0 && prefix) out[prefix] = {};
  for (const k of keys) {
    const key = prefix ? `${prefix}.${k}` : k;
    const v = config[k];
    if (isPlainObject(v) && Object.keys(v).length > 0) Object.assign(out, flattenConfig(v, key));
    else out[key] = v;
  }
  return out;
}

/** A comparable text for a leaf: JSON with object keys sorted; `undefined` for a missing key. */
function canonical(v: unknown): string | undefined {
  if (v === undefined) return undefined;
  return JSON.stringify(v, (_k, x) =>
    isPlainObject(x)
      ? Object.fromEntries(
          Object.keys(x)
            .sort()
            .map((k) => [k, x[k]]),
        )
      : x,
  );
}

export interface ConfigDiffRow {
  key: string;
  /** one per config, in order; undefined where that config has no such key */
  values: unknown[];
}

/** The keys whose values differ between the configs (null/undefined configs count as empty), sorted by key. */
export function configDiff(configs: readonly unknown[]): ConfigDiffRow[] {
  const flat = configs.map((c) => flattenConfig(c ?? {}));
  const keys = new Set<string>();
  for (const f of flat) for (const k of Object.keys(f)) keys.add(k);
  const rows: ConfigDiffRow[] = [];
  for (const key of [...keys].sort()) {
    const values = flat.map((f) => (Object.prototype.hasOwnProperty.call(f, key) ? f[key] : undefined));
    const first = canonical(values[0]);
    if (values.some((v) => canonical(v) !== first)) rows.push({ key, values });
  }
  return rows;
}

/** A leaf as a short text for a table cell: strings as they are, the rest as JSON, missing as —. */
export function formatConfigValue(v: unknown): string {
  if (v === undefined) return '—';
  if (typeof v === 'string') return v;
  return canonical(v) ?? '—';
}
