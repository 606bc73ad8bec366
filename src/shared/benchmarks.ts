/**
 * The benchmark contract: what a task file holds (lm-evaluation-harness-compatible JSONL with a
 * Blocklab header), and the documents `blocklab eval` / `blocklab compare` return (the same
 * objects the API, the server and the app exchange). Every process may import this file.
 *
 * A task file is JSONL. Its kind, name, domain and role come from either
 *   - a first line  {"blocklab_benchmark": {"name": "...", "kind": "multiple_choice", ...}}, or
 *   - a sidecar     NAME.json next to NAME.jsonl holding the same object (wrapped or bare),
 * and without either, the kind is inferred from the first item's fields (name = file name,
 * domain "general"). Items, one JSON object a line:
 *   multiple_choice  {"context" | "query": str, "choices": [str, ...], "gold": int}
 *   perplexity       {"text": str}
 *   generation       {"prompt": str, "answer": str, "until"?: [str], "regex"?: str}
 * Other fields are allowed and ignored (harness data often carries ids and labels).
 */
import { z } from 'zod';
import type { ForgettingSummary } from './forgetting.js';

export const BENCHMARK_KINDS = ['multiple_choice', 'perplexity', 'generation'] as const;
export const BenchmarkKindSchema = z.enum(BENCHMARK_KINDS);
export type BenchmarkKind = z.infer<typeof BenchmarkKindSchema>;

/** old: the skill the base model already had (a drop is forgetting); new: the tuning domain (a rise is gain). */
export const BenchmarkRoleSchema = z.enum(['old', 'new']);
export type BenchmarkRole = z.infer<typeof BenchmarkRoleSchema>;

/** Bounds on untrusted task files. */
export const BENCHMARK_LIMITS = {
  /** bytes of a task file (and of a few-shot split) */
  maxFileBytes: 256 * 1024 * 1024,
  /** characters of one line */
  maxLineChars: 1024 * 1024,
  /** items in one file */
  maxItems: 200_000,
  maxChoices: 64,
  maxStopStrings: 16,
  /** characters of an extraction regex */
  maxRegexChars: 500,
  maxGenTokens: 4096,
  maxShots: 64,
} as const;

const shortText = (max: number) => z.string().max(max, `must be at most ${max} characters`);

export const BenchmarkHeaderSchema = z.strictObject({
  name: z
    .string()
    .min(1, 'must not be empty')
    .max(100, 'must be at most 100 characters')
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.\-]*$/, 'may hold only letters, digits, _ . - (and must start with a letter or digit)'),
  kind: BenchmarkKindSchema,
  /** free tag: general, code, math, law, ... */
  domain: shortText(50).min(1).default('general'),
  /** defaults to "old" for domain "general" and "new" for any other domain */
  role: BenchmarkRoleSchema.optional(),
  description: shortText(2000).optional(),
  /** JSONL of the same kind (header optional) that few-shot examples are drawn from, relative to this file */
  fewshot_split: shortText(1000).min(1).optional(),
  /** between a context and its continuation (harness target_delimiter) */
  target_delimiter: shortText(100).default(' '),
  /** between few-shot examples (harness fewshot_delimiter) */
  fewshot_delimiter: shortText(100).default('\n\n'),
  /** generation: stop strings for every item (default: [fewshot_delimiter], as the harness does) */
  until: z.array(shortText(1000).min(1)).max(BENCHMARK_LIMITS.maxStopStrings).optional(),
  /** generation: extraction regex for every item; the first capture group is the answer */
  regex: shortText(BENCHMARK_LIMITS.maxRegexChars).min(1).optional(),
  /** generation: most new tokens (harness max_gen_toks, 256) */
  max_gen_tokens: z.number().int().min(1).max(BENCHMARK_LIMITS.maxGenTokens).default(256),
});
export type BenchmarkHeader = z.output<typeof BenchmarkHeaderSchema>;

/** The first line of a task file, or the whole of a sidecar (which may also hold the bare header). */
export const BenchmarkHeaderLineSchema = z.strictObject({ blocklab_benchmark: z.unknown() });

export const MultipleChoiceItemSchema = z
  .object({
    context: z.string().optional(),
    query: z.string().optional(),
    choices: z.array(z.string().min(1, 'a choice must not be empty')).min(1, 'needs at least one choice').max(BENCHMARK_LIMITS.maxChoices),
    gold: z.number().int('must be the index of the right choice').nonnegative('must be the index of the right choice'),
  })
  .superRefine((item, ctx) => {
    if (item.context === undefined && item.query === undefined) {
      ctx.addIssue({ code: 'custom', path: ['context'], message: 'a multiple-choice item needs "context" (or "query")' });
    }
    if (item.context !== undefined && item.query !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['query'], message: 'give "context" or "query", not both' });
    }
    if (item.gold >= item.choices.length) {
      ctx.addIssue({ code: 'custom', path: ['gold'], message: `is ${item.gold} but there are ${item.choices.length} choices (gold counts from 0)` });
    }
  });
export type MultipleChoiceItem = z.infer<typeof MultipleChoiceItemSchema>;

export const PerplexityItemSchema = z.object({ text: z.string().min(1, 'must not be empty') });
export type PerplexityItem = z.infer<typeof PerplexityItemSchema>;

export const GenerationItemSchema = z.object({
  prompt: z.string(),
  answer: z.string(),
  until: z.array(z.string().min(1)).max(BENCHMARK_LIMITS.maxStopStrings).optional(),
  regex: z.string().min(1).max(BENCHMARK_LIMITS.maxRegexChars).optional(),
});
export type GenerationItem = z.infer<typeof GenerationItemSchema>;

export const ITEM_SCHEMAS = {
  multiple_choice: MultipleChoiceItemSchema,
  perplexity: PerplexityItemSchema,
  generation: GenerationItemSchema,
} as const;

// ---------------------------------------------------------------------------------------------
// Metrics

/** The metrics each kind reports (lm-evaluation-harness names, plus token_perplexity). */
export const KIND_METRICS = {
  multiple_choice: ['acc', 'acc_norm'],
  perplexity: ['word_perplexity', 'byte_perplexity', 'bits_per_byte', 'token_perplexity'],
  generation: ['exact_match'],
} as const satisfies Record<BenchmarkKind, readonly string[]>;

/** The one number per benchmark that compare and the forgetting chart use. */
export const HEADLINE_METRIC: Record<BenchmarkKind, string> = {
  multiple_choice: 'acc_norm',
  perplexity: 'bits_per_byte',
  generation: 'exact_match',
};

const LOWER_IS_BETTER = new Set(['word_perplexity', 'byte_perplexity', 'bits_per_byte', 'token_perplexity']);

export function higherIsBetter(metric: string): boolean {
  return !LOWER_IS_BETTER.has(metric);
}

export const DELTA_NOTE =
  'delta > 0 always means "better" for gain (new-domain benchmarks) and "worse" for forgetting (old-domain ones): ' +
  'for acc/acc_norm/exact_match, gain = tuned − base and forgetting = base − tuned; for bits_per_byte and perplexities ' +
  '(lower is better), gain = base − tuned and forgetting = tuned − base';

// ---------------------------------------------------------------------------------------------
// Documents returned by eval and compare

export const EvalResultSchema = z.object({
  /** the checkpoint folder as given */
  checkpoint: z.string(),
  checkpoint_id: z.number().int(),
  /** the benchmark's name (header) */
  benchmark: z.string(),
  benchmark_id: z.number().int(),
  /** the store's name for this benchmark file + setup: NAME@HASH12/Kshot[/limitN][/lenL] */
  benchmark_key: z.string(),
  kind: BenchmarkKindSchema,
  domain: z.string(),
  role: BenchmarkRoleSchema,
  shots: z.number().int(),
  limit: z.number().int().nullable(),
  metric: z.string(),
  value: z.number().nullable(),
  /** sample standard error of the mean for acc / acc_norm / exact_match; null for perplexities (as the harness: N/A) */
  stderr: z.number().nullable(),
  n: z.number().int(),
  /** true when the value came from the store instead of being computed now */
  cached: z.boolean(),
});
export type EvalResult = z.infer<typeof EvalResultSchema>;

export const EvalReportSchema = z.object({
  run_id: z.number().int(),
  results: z.array(EvalResultSchema),
  /** with --output-path: the lm-evaluation-harness files written per checkpoint */
  outputs: z.array(z.object({ checkpoint: z.string(), results_file: z.string(), samples_files: z.array(z.string()) })).optional(),
});
export type EvalReport = z.infer<typeof EvalReportSchema>;

const ScoreSchema = z.object({ value: z.number().nullable(), stderr: z.number().nullable(), n: z.number().int() });

export const CompareRowSchema = z.object({
  benchmark: z.string(),
  benchmark_key: z.string(),
  kind: BenchmarkKindSchema,
  domain: z.string(),
  role: BenchmarkRoleSchema,
  metric: z.string(),
  higher_is_better: z.boolean(),
  /** forgetting for role old, gain for role new */
  flag: z.enum(['forgetting', 'gain']),
  base: ScoreSchema,
  checkpoints: z.array(ScoreSchema.extend({ checkpoint: z.string(), delta: z.number().nullable() })),
});
export type CompareRow = z.infer<typeof CompareRowSchema>;

export const CompareReportSchema = z.object({
  run_id: z.number().int(),
  base: z.string(),
  checkpoints: z.array(z.string()),
  delta_note: z.string(),
  rows: z.array(CompareRowSchema),
  /**
   * the trade-off scatter: per checkpoint, mean gain over new-domain benchmarks (x), mean forgetting
   * over old-domain ones (y) — both over the benchmarks of `summary_family` only (never mixing units)
   */
  summary: z.array(
    z.object({
      checkpoint: z.string(),
      mean_gain: z.number().nullable(),
      mean_forgetting: z.number().nullable(),
      new_benchmarks: z.number().int(),
      old_benchmarks: z.number().int(),
    }),
  ),
  /** the metric family `summary` averages over (src/shared/forgetting.ts); null when no benchmark has one */
  summary_family: z.enum(['accuracy', 'bits_per_byte']).nullable().optional(),
  /** per-family means with standard errors, and what they let one conclude */
  forgetting: z.custom<ForgettingSummary>((v) => typeof v === 'object' && v !== null).optional(),
});
export type CompareReport = z.infer<typeof CompareReportSchema>;
