/**
 * ReportData from the experiment store, for training runs: their loss curves (metrics 'loss'
 * and 'val_loss'), the trainer's result (run.summary, as the job supervisor stores it), the
 * lineage of the checkpoints they read and wrote (parent links, expansion records), and the
 * environment. Forgetting is left to the caller (the eval engine provides it).
 */
import { readFileSync } from 'node:fs';
import { arch, cpus, hostname, platform, release, totalmem } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BlocklabError } from '../engine/errors.js';
import type { CheckpointRow, ExperimentStore, RunRow } from '../store/index.js';
import type { ExpansionRecord } from '../../shared/expansion.js';
import type { ReportCheckpoint, ReportCurve, ReportData, ReportForgetting, ReportRun } from '../../shared/report.js';
import { fmtValue } from '../../shared/format.js';

export interface BuildRunReportOptions {
  title?: string;
  /** Markdown paragraphs, shown before any the builder adds (runs that did not complete) */
  notes?: string[];
  /** from the eval engine; null (the default) when the checkpoints were not evaluated */
  forgetting?: ReportForgetting | null;
  /** ISO time; default now */
  createdAt?: string;
  /** added to (and overriding) the environment the builder finds */
  environment?: Record<string, string>;
}

/** Folder names that say nothing on their own: such a checkpoint is labelled parent/name. */
const GENERIC_NAMES = new Set(['model', 'adapter', 'final', 'out', 'output', 'checkpoint', 'hf', 'export']);

/** A checkpoint folder's label in reports: its name, or parent/name when the name says nothing on its own. */
export function checkpointLabel(path: string): string {
  const name = basename(path) || path;
  return GENERIC_NAMES.has(name.toLowerCase()) ? `${basename(dirname(path))}/${name}` : name;
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

function str(v: unknown): string | null {
  return typeof v === 'string' && v.length > 0 ? v : null;
}

function blocklabVersion(): string {
  try {
    return (JSON.parse(readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** The expansion record a checkpoint folder carries in config.json, if any (best effort). */
function expansionFromFolder(dir: string): ExpansionRecord | null {
  try {
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { blocklab_expansion?: ExpansionRecord };
    const r = config.blocklab_expansion;
    return r && Array.isArray(r.new_layers) && typeof r.original_layers === 'number' ? r : null;
  } catch {
    return null;
  }
}

/** 'interleave: 4 → 6 layers, new 2←1, 5←3; identity max |Δlogit| 1.2e-6' */
export function expansionDetail(r: ExpansionRecord): string {
  const total = r.original_layers + r.new_layers.length;
  const news = r.new_layers.map((l, i) => `${l}←${r.sources[i] ?? '?'}`).join(', ');
  const identity = typeof r.identity_max_abs_logit_diff === 'number' ? `; identity max |Δlogit| ${fmtValue(r.identity_max_abs_logit_diff)}` : '';
  return `${r.placement}: ${r.original_layers} → ${total} layers${news ? `, new ${news}` : ''}${identity}`;
}

interface CkptNode {
  key: string; // 'id:N' or 'path:P'
  path: string;
  madeBy: string;
  parentKey: string | null;
  detail?: string;
  record?: ExpansionRecord;
  order: number;
}

function methodLabel(run: RunRow, summary: Record<string, unknown>): string {
  return str(summary.method) ?? run.method ?? run.kind;
}

function median(values: number[]): number | null {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/**
 * Builds a report of the given runs (in the order given). Throws a BlocklabError naming the
 * first id that is not in the store.
 */
export function buildRunReport(store: ExperimentStore, runIds: number[], opts: BuildRunReportOptions = {}): ReportData {
  const runs: RunRow[] = runIds.map((id) => {
    const r = store.getRun(id);
    if (!r) throw new BlocklabError(`has no run ${id}; list runs with \`blocklab runs\``, { file: store.path });
    return r;
  });

  // --- checkpoints and their ancestry ---------------------------------------------------------
  const nodes = new Map<string, CkptNode>();
  let order = 0;
  const addRow = (row: CheckpointRow, depth = 0): string => {
    const key = `id:${row.id}`;
    if (nodes.has(key)) return key;
    const node: CkptNode = { key, path: row.path, madeBy: row.madeBy, parentKey: null, order: 0 };
    nodes.set(key, node);
    const expansion = store.getExpansion(row.id);
    let parentId = row.parentId ?? expansion?.baseCheckpointId ?? null;
    let record: ExpansionRecord | null = expansion?.record ?? null;
    // A folder registered on its own (an import) may still say in its config.json that it was
    // expanded. A trained model inherits that entry from its base, so only untrained ones count.
    if (!record && row.parentId === null && (row.madeBy === 'import' || row.madeBy === 'expand')) record = expansionFromFolder(row.path);
    if (record) {
      node.madeBy = 'expand';
      node.record = record;
      node.detail = expansionDetail(record);
    } else if (row.madeBy === 'train' && row.runId !== null) {
      const producer = store.getRun(row.runId);
      node.detail = `run ${row.runId}${producer ? `: ${producer.method ?? producer.kind}, ${producer.lastStep ?? '?'} steps` : ''}`;
    } else if (row.info && (row.info.layers !== undefined || row.info.params !== undefined)) {
      node.detail = [row.info.architecture, row.info.layers !== undefined ? `${row.info.layers} layers` : null, row.info.params !== undefined ? `${row.info.params} params` : null]
        .filter(Boolean)
        .join(', ');
    }
    if (parentId === null && record?.base_model && depth < 100) {
      // The folder says what it was expanded from, though the store has no link: use it.
      const base = store.findCheckpoint(resolve(record.base_model));
      if (base && base.id !== row.id) parentId = base.id;
      else {
        const pkey = `path:${resolve(record.base_model)}`;
        if (!nodes.has(pkey)) nodes.set(pkey, { key: pkey, path: resolve(record.base_model), madeBy: 'import', parentKey: null, detail: 'not in the store', order: order++ });
        node.parentKey = pkey;
      }
    }
    if (parentId !== null && parentId !== row.id && depth < 100) {
      const parent = store.getCheckpoint(parentId);
      if (parent) node.parentKey = addRow(parent, depth + 1);
    }
    node.order = order++; // ancestors first
    return key;
  };
  const runCkpt = new Map<number, { base: string | null; result: string | null }>();
  for (const r of runs) {
    const base = r.baseCheckpointId !== null ? store.getCheckpoint(r.baseCheckpointId) : undefined;
    const result = r.resultCheckpointId !== null ? store.getCheckpoint(r.resultCheckpointId) : undefined;
    runCkpt.set(r.id, { base: base ? addRow(base) : null, result: result ? addRow(result) : null });
  }

  // Labels: the folder name, parent/name for generic names, then made unique.
  const ordered = [...nodes.values()].sort((a, b) => a.order - b.order);
  const labels = new Map<string, string>();
  const used = new Set<string>();
  for (const n of ordered) {
    const name = basename(n.path) || n.path;
    let label = checkpointLabel(n.path);
    if (used.has(label)) label = `${basename(dirname(n.path))}/${name}`;
    if (used.has(label)) {
      let k = 2;
      while (used.has(`${label} (${k})`)) k++;
      label = `${label} (${k})`;
    }
    used.add(label);
    labels.set(n.key, label);
  }
  const checkpoints: ReportCheckpoint[] = ordered.map((n) => ({
    label: labels.get(n.key)!,
    path: n.path,
    madeBy: n.madeBy,
    parent: n.parentKey ? (labels.get(n.parentKey) ?? null) : null,
    ...(n.detail ? { detail: n.detail } : {}),
  }));

  // --- runs --------------------------------------------------------------------------------------
  const notes = [...(opts.notes ?? [])];
  const runLabels = new Set<string>();
  const reportRuns: ReportRun[] = runs.map((r) => {
    const summary = (r.summary && typeof r.summary === 'object' ? r.summary : {}) as Record<string, unknown>;
    const method = methodLabel(r, summary);
    const ck = runCkpt.get(r.id)!;
    const baseNode = ck.base ? nodes.get(ck.base) : undefined;
    const expanded = baseNode?.record ? ` (${baseNode.record.placement} +${baseNode.record.new_layers.length})` : '';
    let label = r.name ?? `${method}${expanded}`;
    if (runLabels.has(label)) label = `${label} #${r.id}`;
    runLabels.add(label);

    const metrics = store.getMetrics(r.id, ['loss', 'val_loss', 'tokens_per_second']);
    const curve = (name: string): ReportCurve => ({ name, points: metrics.filter((m) => m.name === name).map((m) => [m.step, m.value] as [number, number]) });
    const loss = curve('loss');
    const val = curve('val_loss');
    const curves = [loss, val].filter((c) => c.points.length > 0);
    const lastOf = (c: ReportCurve) => (c.points.length ? c.points[c.points.length - 1][1] : null);
    const elapsed = r.startedAt && r.endedAt ? (Date.parse(r.endedAt) - Date.parse(r.startedAt)) / 1000 : null;

    if (r.status !== 'completed') {
      notes.push(`Run ${r.id} (${label}) ended **${r.status}**${r.error ? `: ${r.error}` : ''}.`);
    }
    return {
      id: r.id,
      label,
      method,
      status: r.status,
      config: (r.config && typeof r.config === 'object' ? r.config : { value: r.config }) as Record<string, unknown>,
      steps: num(summary.steps) ?? r.lastStep,
      firstLoss: num(summary.firstLoss) ?? (loss.points.length ? loss.points[0][1] : null),
      lastLoss: num(summary.lastLoss) ?? lastOf(loss),
      valLoss: num(summary.valLoss) ?? lastOf(val),
      tokensPerSecond: num(summary.tokensPerSecond) || median(metrics.filter((m) => m.name === 'tokens_per_second').map((m) => m.value)),
      trainableParams: num(summary.trainableParams),
      totalParams: num(summary.totalParams),
      seconds: num(summary.seconds) ?? (elapsed !== null && Number.isFinite(elapsed) ? elapsed : null),
      base: ck.base ? labels.get(ck.base)! : null,
      result: ck.result ? labels.get(ck.result)! : null,
      curves,
    };
  });

  // --- environment --------------------------------------------------------------------------
  const environment: Record<string, string> = {};
  const byValue = (pick: (r: RunRow) => string | null) => {
    const groups = new Map<string, number[]>();
    for (const r of runs) {
      const v = pick(r) ?? 'not recorded';
      groups.set(v, [...(groups.get(v) ?? []), r.id]);
    }
    if (groups.size <= 1) return [...groups.keys()][0] ?? 'not recorded';
    return [...groups].map(([v, ids]) => `${v} (run${ids.length > 1 ? 's' : ''} ${ids.join(', ')})`).join('; ');
  };
  if (runs.length) {
    environment['Training backend'] = byValue((r) => r.backend || null);
    environment['Training host'] = byValue((r) => r.host);
    environment['Seed'] = byValue((r) => (r.seed === null ? null : String(r.seed)));
  }
  const cpuList = cpus();
  environment['Blocklab'] = blocklabVersion();
  environment['Node.js'] = process.version;
  environment['Platform'] = `${platform()} ${release()} (${arch()})`;
  environment['CPU'] = cpuList.length ? `${cpuList[0].model.trim()} × ${cpuList.length}` : 'unknown';
  environment['Memory'] = `${(totalmem() / 2 ** 30).toFixed(1)} GiB`;
  environment['Report made on'] = hostname();
  environment['Store'] = store.path;
  Object.assign(environment, opts.environment ?? {});

  const title =
    opts.title ?? (reportRuns.length === 1 ? `Blocklab report: run ${runs[0].id} (${reportRuns[0].label})` : `Blocklab report: runs ${runs.map((r) => r.id).join(', ')}`);
  return {
    title,
    createdAt: opts.createdAt ?? new Date().toISOString(),
    environment,
    checkpoints,
    runs: reportRuns,
    forgetting: opts.forgetting ?? null,
    notes,
  };
}
