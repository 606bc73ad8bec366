/**
 * Block expansion, the plan (LLaMA Pro, Wu et al. 2024, DESIGN.md §1). Pure logic shared by
 * the engine (which applies a plan to weights), the CLI and the notebook's block diagram.
 *
 * A plan lists the expanded stack bottom to top. Each entry is an original block (by its index
 * in the base model) or a new block copied from an original one, whose o_proj and down_proj
 * are zeroed so that it starts as the identity.
 */
import { z } from 'zod';

export const PlacementSchema = z.enum(['interleave', 'top', 'bottom']);
export type Placement = z.infer<typeof PlacementSchema>;

/** One explicit insertion: a new block in gap `position` (0 = below block 0, L = above block L-1), copied from `source`. */
export const InsertionSchema = z.object({
  position: z.number().int(),
  source: z.number().int().optional(),
});
export type Insertion = z.infer<typeof InsertionSchema>;

export const ExpansionRequestSchema = z
  .object({
    /** number of new blocks P (implied by `positions` when those are given) */
    blocks: z.number().int().optional(),
    placement: PlacementSchema.default('interleave'),
    positions: z.array(InsertionSchema).optional(),
  })
  .strict();
export type ExpansionRequest = z.input<typeof ExpansionRequestSchema>;

export type PlannedBlock = { kind: 'original'; original: number } | { kind: 'new'; source: number };

export interface ExpansionPlan {
  originalLayers: number; // L
  newLayers: number; // P
  placement: Placement | 'positions';
  layers: PlannedBlock[]; // length L + P
}

/** What an expanded checkpoint records about itself (config.json `blocklab_expansion`). */
export const ExpansionRecordSchema = z.object({
  method: z.literal('llama-pro-block-expansion'),
  placement: z.union([PlacementSchema, z.literal('positions')]),
  original_layers: z.number().int().positive(),
  new_layers: z.array(z.number().int().nonnegative()),
  /** for each new layer (same order as new_layers) the original block it was copied from */
  sources: z.array(z.number().int().nonnegative()),
  /** for every layer of the expanded model, its index in the base model, or null when new */
  original_index: z.array(z.number().int().nonnegative().nullable()),
  base_model: z.string().optional(),
  identity_max_abs_logit_diff: z.number().optional(),
});
export type ExpansionRecord = z.infer<typeof ExpansionRecordSchema>;

/** A request that cannot be planned. The message lists what would be valid. */
export class ExpansionRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExpansionRequestError';
  }
}

function divisors(n: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= n; d++) if (n % d === 0) out.push(d);
  return out;
}

/** Parses the CLI's `--positions 4,8` or `--positions 4:3,8:7` (gap:source). */
export function parsePositions(text: string): Insertion[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((item) => {
      const m = /^(-?\d+)(?::(-?\d+))?$/.exec(item);
      if (!m) {
        throw new ExpansionRequestError(
          `cannot read position "${item}": use a gap index (e.g. 4) or gap:source (e.g. 4:3), comma-separated`,
        );
      }
      return { position: Number(m[1]), source: m[2] === undefined ? undefined : Number(m[2]) };
    });
}

/**
 * Plans an expansion of an L-block model. Throws ExpansionRequestError, naming the valid
 * choices, for anything it cannot do exactly (never rounds silently).
 */
export function planExpansion(originalLayers: number, request: ExpansionRequest): ExpansionPlan {
  const parsed = ExpansionRequestSchema.safeParse(request);
  if (!parsed.success) {
    throw new ExpansionRequestError(`invalid expansion request: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`).join('; ')}`);
  }
  const req = parsed.data;
  const L = originalLayers;
  if (!Number.isInteger(L) || L <= 0) throw new ExpansionRequestError(`the base model must have at least one block (got ${L})`);

  if (req.positions && req.positions.length > 0) {
    if (req.blocks !== undefined && req.blocks !== req.positions.length) {
      throw new ExpansionRequestError(
        `--blocks ${req.blocks} disagrees with the ${req.positions.length} positions given; drop --blocks or give ${req.blocks} positions`,
      );
    }
    for (const ins of req.positions) {
      if (ins.position < 0 || ins.position > L) {
        throw new ExpansionRequestError(
          `position ${ins.position} is out of range: gaps of a ${L}-block model are 0 (below block 0) to ${L} (above block ${L - 1})`,
        );
      }
      const source = ins.source ?? Math.max(ins.position - 1, 0);
      if (source < 0 || source >= L) {
        throw new ExpansionRequestError(`source block ${source} (for position ${ins.position}) is out of range: valid sources are 0 to ${L - 1}`);
      }
    }
    // Stable: several insertions in one gap keep the order they were given in.
    const byGap = new Map<number, number[]>();
    for (const ins of req.positions) {
      const list = byGap.get(ins.position) ?? [];
      list.push(ins.source ?? Math.max(ins.position - 1, 0));
      byGap.set(ins.position, list);
    }
    const layers: PlannedBlock[] = [];
    for (let gap = 0; gap <= L; gap++) {
      for (const source of byGap.get(gap) ?? []) layers.push({ kind: 'new', source });
      if (gap < L) layers.push({ kind: 'original', original: gap });
    }
    return { originalLayers: L, newLayers: req.positions.length, placement: 'positions', layers };
  }

  const P = req.blocks;
  if (P === undefined) throw new ExpansionRequestError('say how many blocks to add (--blocks P) or where (--positions)');
  if (P <= 0) throw new ExpansionRequestError(`--blocks must be a positive number of new blocks (got ${P})`);

  const layers: PlannedBlock[] = [];
  switch (req.placement) {
    case 'interleave': {
      if (L % P !== 0) {
        throw new ExpansionRequestError(
          `interleave needs the ${L} blocks to split into ${P} equal groups, and ${L} is not divisible by ${P}; ` +
            `valid --blocks for ${L} blocks: ${divisors(L).join(', ')} (or use --placement top|bottom, or --positions)`,
        );
      }
      const group = L / P;
      for (let i = 0; i < L; i++) {
        layers.push({ kind: 'original', original: i });
        if ((i + 1) % group === 0) layers.push({ kind: 'new', source: i });
      }
      break;
    }
    case 'top': {
      // Suffix stacking: P copies of the last block, above the stack (interleave with the whole
      // stack as one group, repeated).
      for (let i = 0; i < L; i++) layers.push({ kind: 'original', original: i });
      for (let j = 0; j < P; j++) layers.push({ kind: 'new', source: L - 1 });
      break;
    }
    case 'bottom': {
      // Prefix stacking: P copies of the first block, below the stack.
      for (let j = 0; j < P; j++) layers.push({ kind: 'new', source: 0 });
      for (let i = 0; i < L; i++) layers.push({ kind: 'original', original: i });
      break;
    }
  }
  return { originalLayers: L, newLayers: P, placement: req.placement, layers };
}

/** The record an expanded checkpoint carries, from its plan. */
export function expansionRecord(plan: ExpansionPlan, extra: Partial<ExpansionRecord> = {}): ExpansionRecord {
  const newLayers: number[] = [];
  const sources: number[] = [];
  const originalIndex: (number | null)[] = [];
  plan.layers.forEach((b, i) => {
    if (b.kind === 'new') {
      newLayers.push(i);
      sources.push(b.source);
      originalIndex.push(null);
    } else originalIndex.push(b.original);
  });
  return {
    method: 'llama-pro-block-expansion',
    placement: plan.placement,
    original_layers: plan.originalLayers,
    new_layers: newLayers,
    sources,
    original_index: originalIndex,
    ...extra,
  };
}

/** Validates a stored record; throws ExpansionRequestError saying what is malformed. */
export function parseExpansionRecord(raw: unknown): ExpansionRecord {
  const r = ExpansionRecordSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new ExpansionRequestError(`"blocklab_expansion" is malformed (${issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid'}); remove it or re-run blocklab expand`);
  }
  return r.data;
}

/**
 * The planner's messages name the CLI's flags (`--blocks`, `--placement top|bottom`); where the
 * request is a JSON config (the notebook's Expansion cell) the same things are its keys.
 */
export function inConfigTerms(message: string): string {
  return message.replace(/--(blocks|placement|positions)\b/g, '"$1"');
}
