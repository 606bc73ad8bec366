/**
 * The Expansion cell's pure logic: read the config the person typed, plan it against the base
 * model's depth, and lay the planned stack out as a block diagram.
 */
import { ExpansionRequestSchema, planExpansion, type ExpansionPlan, type ExpansionRequest } from '../../../shared/expansion';

export interface DiagramBlock {
  /** the layer index in the expanded model (0 = bottom) */
  layer: number;
  kind: 'old' | 'new';
  /** old: its index in the base model; new: the block it copies */
  from: number;
  label: string;
}

export type ParsedConfig = { ok: true; request: ExpansionRequest } | { ok: false; error: string };

/** Parses the cell's JSON; errors name what is wrong the way the schema sees it. */
export function parseExpansionConfig(text: string): ParsedConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `the config is not valid JSON: ${(e as Error).message}` };
  }
  const r = ExpansionRequestSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const where = issue.path.length ? `${issue.path.join('.')}: ` : '';
    return { ok: false, error: `${where}${issue.message}` };
  }
  return { ok: true, request: raw as ExpansionRequest };
}

export type PlannedConfig = { ok: true; request: ExpansionRequest; plan: ExpansionPlan; blocks: DiagramBlock[] } | { ok: false; error: string };

/** Parses and plans; `layers` is the base model's depth. */
export function planConfig(text: string, layers: number): PlannedConfig {
  const parsed = parseExpansionConfig(text);
  if (!parsed.ok) return parsed;
  try {
    const plan = planExpansion(layers, parsed.request);
    return { ok: true, request: parsed.request, plan, blocks: diagramBlocks(plan) };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

/** The stack bottom → top: old blocks by their base index, new ones as copies. */
export function diagramBlocks(plan: ExpansionPlan): DiagramBlock[] {
  return plan.layers.map((b, layer) =>
    b.kind === 'original'
      ? { layer, kind: 'old', from: b.original, label: `block ${b.original}` }
      : { layer, kind: 'new', from: b.source, label: `copy of ${b.source}` },
  );
}

/** The base model's stack, for when the config does not plan (the diagram still shows the model). */
export function baseBlocks(layers: number): DiagramBlock[] {
  return Array.from({ length: layers }, (_, i) => ({ layer: i, kind: 'old' as const, from: i, label: `block ${i}` }));
}

// the command that does the same from a terminal (shared with the run page)
export { expandCommand } from '../../../shared/commands';

export { inConfigTerms } from '../../../shared/expansion';

/** The config key an error is about, so the editor can underline it. */
export function errorKey(text: string, error: string): string | undefined {
  const where = /^([A-Za-z_]+)[.:]/.exec(error);
  if (where && ['blocks', 'placement', 'positions'].includes(where[1]!)) return where[1];
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined; // the JSON itself is broken: the editor marks where already
  }
  const req = (raw ?? {}) as Record<string, unknown>;
  if (/\bposition/.test(error) && 'positions' in req) return 'positions';
  if ('blocks' in req) return 'blocks';
  if ('placement' in req) return 'placement';
  if ('positions' in req) return 'positions';
  return undefined;
}
