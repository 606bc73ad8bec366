/**
 * The engine's public surface: the CLI, the server and the Electron main process call only
 * what is exported here. Runs under plain Node; never imports Electron.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { initBackend, type BackendName } from './backend.js';
import { openCheckpoint, type Checkpoint } from './checkpoint.js';
import { parameterCount } from './config.js';
import { BlocklabError } from './errors.js';
import { expandCheckpoint, fallbackProbeIds, type ExpandResult } from './expand.js';
import { exportHf } from './export.js';
import { exportCheckpointGguf, planGgufExport, type GgufExportResult, type GgufFileType } from './gguf.js';
import { defaultNllProbe, measureGgufNll, nllMemoryProblem, nllProbeFromFile, type GgufNllChange } from './gguf-nll.js';
import { generate, type GenerateOptions, type GenerateResult } from './generate.js';
import { LlamaModel, tokenNll } from './model.js';
import { activeBackend, loadPlanned, planCheckpoint, planSummary, requireFit, scoreTask, type MemoryPlan, type PlanTask } from './plan.js';
import { HfTokenizer, type ChatMessage } from './tokenizer.js';
import type { ExpansionRequest } from '../../shared/expansion.js';

export { BlocklabError } from './errors.js';
export { initBackend, backendReport, type BackendReport, type BackendName } from './backend.js';
export { openCheckpoint, type Checkpoint } from './checkpoint.js';
export { makeTinyCheckpoint, type TinyOptions } from './tiny.js';
export { exportHf } from './export.js';
export { parseDtypeOption } from './write-checkpoint.js';
export { parseGgufDtype } from './gguf.js';
export type { GgufNllChange } from './gguf-nll.js';
export { LlamaModel, tokenNll } from './model.js';
export { planCheckpoint, planSummary, scoreTask, generateTask, explainOutOfMemory, describePlan, type MemoryPlan, type PlanTask, type PlanSummary } from './plan.js';
export { tf } from './backend.js';
export { HfTokenizer, type ChatMessage } from './tokenizer.js';
export type { ExpandResult } from './expand.js';
export type { GenerateOptions, GenerateResult } from './generate.js';

/** What `blocklab inspect` shows about a checkpoint folder (headers only; no weights read). */
export async function inspectCheckpoint(dir: string) {
  const ckpt = await openCheckpoint(dir);
  const c = ckpt.config;
  const tokenizer = await loadTokenizerIfPresent(dir);
  const files = [...new Set([...ckpt.tensors.values()].map((t) => t.file))];
  return {
    path: dir,
    architecture: c.architecture,
    layers: c.numLayers,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    attention_heads: c.numHeads,
    kv_heads: c.numKvHeads,
    attention: c.numKvHeads === c.numHeads ? 'multi-head' : c.numKvHeads === 1 ? 'multi-query' : `grouped-query (${c.numHeads / c.numKvHeads} query heads per kv head)`,
    head_dim: c.headDim,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxPositionEmbeddings,
    rope_theta: c.ropeTheta,
    rope_scaling: c.ropeScaling,
    rms_norm_eps: c.rmsNormEps,
    tie_word_embeddings: c.tieWordEmbeddings,
    biases: { qkv: c.qkvBias, o: c.oBias, mlp: c.mlpBias },
    sliding_window: c.slidingWindow,
    parameters: parameterCount(c),
    dtype: ckpt.dtype,
    bytes: ckpt.bytes,
    files,
    tokenizer: tokenizer?.describe() ?? null,
    expansion: ckpt.expansion,
    /** the memory plan on this machine (chat; block-only tuning when it has new blocks) */
    memory_plan: planSummary(ckpt),
  };
}

export async function loadTokenizerIfPresent(dir: string): Promise<HfTokenizer | null> {
  try {
    await access(join(dir, 'tokenizer.json'));
  } catch {
    return null;
  }
  return HfTokenizer.fromFolder(dir);
}

async function requireTokenizer(dir: string, why: string): Promise<HfTokenizer> {
  const tok = await loadTokenizerIfPresent(dir);
  if (!tok) throw new BlocklabError(`has no tokenizer.json, which ${why}; pass token ids instead or add the tokenizer files`, { file: dir });
  return tok;
}

export interface LoadedModel {
  checkpoint: Checkpoint;
  model: LlamaModel;
  tokenizer: HfTokenizer | null;
  /** the memory plan it was loaded under (where each group of weights lives) */
  plan: MemoryPlan;
  dispose(): void;
}

export interface LoadModelOptions {
  /**
   * What the model is loaded for, so the memory plan can refuse it before loading when it does
   * not fit, and choose where the weights live (default: scoring one sequence of up to 1024 tokens).
   */
  task?: PlanTask | ((ckpt: Checkpoint, tokenizer: HfTokenizer | null) => PlanTask);
  /** a device budget below the backend's own limit (tests force streaming with it) */
  deviceBudget?: number | null;
}

/**
 * Opens a checkpoint, plans its memory for the task (refusing, with what would fit, when it does
 * not), and reads its weights where the plan says: float32 on the backend when the model fits,
 * else at their stored precision in RAM (or streamed from the file), a block at a time.
 */
export async function loadModel(dir: string, backend?: BackendName | 'auto', opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const report = await initBackend(backend);
  const checkpoint = await openCheckpoint(dir);
  const tokenizer = await loadTokenizerIfPresent(dir);
  if (tokenizer && tokenizer.vocabSize > checkpoint.config.vocabSize) {
    throw new BlocklabError(
      `tokenizer.json has ${tokenizer.vocabSize} tokens but config.json says vocab_size ${checkpoint.config.vocabSize}; the tokenizer does not belong to this model`,
      { file: dir },
    );
  }
  const task = typeof opts.task === 'function' ? opts.task(checkpoint, tokenizer) : (opts.task ?? scoreTask(Math.min(1024, checkpoint.config.maxPositionEmbeddings)));
  const plan = requireFit(planCheckpoint(checkpoint, task, report.active, { deviceBudget: opts.deviceBudget }), dir);
  const model = await loadPlanned(checkpoint, plan);
  return { checkpoint, model, tokenizer, plan, dispose: () => model.dispose() };
}

/**
 * Whether a loaded model serves a larger inference `task` as it is (a warm chat engine's next,
 * longer conversation: its KV cache grows). null: the task is no larger than the one it was
 * planned for. Else the plan for the larger of the two, and `reload` when that plan places the
 * weights elsewhere (a cache that no longer leaves room for them on the device). Throws the
 * plan's refusal — why, and what would fit — when the task does not fit at all, before anything
 * runs; the loaded model is untouched then.
 */
export function replanLoaded(loaded: LoadedModel, task: PlanTask, opts: { deviceBudget?: number | null } = {}): { plan: MemoryPlan; reload: boolean } | null {
  const was = loaded.plan.task;
  if (task.kind !== 'infer' || was.kind !== 'infer') throw new Error('replanLoaded plans inference tasks');
  if (task.batch <= was.batch && task.tokens <= was.tokens && task.context <= was.context) return null;
  const larger: PlanTask = { ...task, batch: Math.max(task.batch, was.batch), tokens: Math.max(task.tokens, was.tokens), context: Math.max(task.context, was.context) };
  const plan = requireFit(planCheckpoint(loaded.checkpoint, larger, activeBackend(), opts), loaded.checkpoint.dir);
  return { plan, reload: JSON.stringify(plan.residency.plan) !== JSON.stringify(loaded.plan.residency.plan) };
}

/** Frees a loaded model's weights and reads them again where `plan` says (replanLoaded's reload). */
export async function reloadUnder(loaded: LoadedModel, plan: MemoryPlan): Promise<LoadedModel> {
  loaded.dispose();
  const model = await loadPlanned(loaded.checkpoint, plan);
  return { checkpoint: loaded.checkpoint, model, tokenizer: loaded.tokenizer, plan, dispose: () => model.dispose() };
}

export interface ScoreResult {
  ids: number[];
  nll: number[];
  mean_nll: number;
}

/** Per-token NLL of ids: nll[i] = −log p(ids[i+1] | ids[0..i]). */
export async function scoreIds(loaded: LoadedModel, ids: number[]): Promise<ScoreResult> {
  const nll = Array.from(await tokenNll(loaded.model, ids));
  return { ids, nll, mean_nll: nll.reduce((a, b) => a + b, 0) / nll.length };
}

export async function scoreText(loaded: LoadedModel, text: string, opts: { addSpecialTokens?: boolean } = {}): Promise<ScoreResult> {
  const tok = loaded.tokenizer ?? (await requireTokenizer(loaded.checkpoint.dir, 'scoring text needs'));
  return scoreIds(loaded, tok.encode(text, { addSpecialTokens: opts.addSpecialTokens ?? true }));
}

export interface GenerateTextOptions extends GenerateOptions {
  prompt: string;
  /** format the prompt with the tokenizer's chat template, as a user message */
  chat?: boolean;
  system?: string;
  /** a whole conversation instead of one prompt (chat: the template; without one, plain text turns) */
  messages?: ChatMessage[];
  /** with `messages`: use the tokenizer's chat template when it has one (default true) */
  useTemplate?: boolean;
}

/**
 * How a conversation becomes the model's input text: the tokenizer's chat template, or — when
 * it has none, or `useTemplate` is false (a base model never trained on the template) — the
 * turns as plain text for the model to continue.
 */
export function conversationPrompt(tok: HfTokenizer, messages: ChatMessage[], useTemplate = true): { prompt: string; templated: boolean } {
  if (useTemplate && tok.chatTemplate) return { prompt: tok.applyChatTemplate(messages, { addGenerationPrompt: true }), templated: true };
  // No template (or a base model): the turns as plain text, continued as it stands, like a
  // completion — no newline after the last turn (a model tuned on code answers one with indentation).
  return { prompt: messages.map((m) => m.content).join('\n\n'), templated: false };
}

export async function generateText(loaded: LoadedModel, opts: GenerateTextOptions): Promise<GenerateResult & { prompt: string; templated: boolean }> {
  const tok = loaded.tokenizer ?? (await requireTokenizer(loaded.checkpoint.dir, 'generating text needs'));
  let prompt = opts.prompt;
  let addSpecialTokens = true;
  let templated = false;
  if (opts.messages) {
    const messages = opts.system ? [{ role: 'system' as const, content: opts.system }, ...opts.messages] : opts.messages;
    const c = conversationPrompt(tok, messages, opts.useTemplate ?? true);
    prompt = c.prompt;
    templated = c.templated;
    addSpecialTokens = !c.templated;
  } else if (opts.chat) {
    const messages: ChatMessage[] = [];
    if (opts.system) messages.push({ role: 'system', content: opts.system });
    messages.push({ role: 'user', content: opts.prompt });
    prompt = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
    templated = true;
    addSpecialTokens = false; // the template writes BOS itself
  }
  const ids = tok.encode(prompt, { addSpecialTokens });
  const eos = new Set([...loaded.checkpoint.config.eosTokenIds, ...tok.eosTokenIds]);
  const result = await generate(loaded.model, ids, (out) => tok.decode(out, { skipSpecialTokens: true }), {
    ...opts,
    eosTokenIds: opts.eosTokenIds ?? [...eos],
    never: tok.undecodableIds(loaded.checkpoint.config.vocabSize),
  });
  return { ...result, prompt, templated };
}

const PROBE_TEXT =
  'The committee met on Tuesday to review the budget. def mean(xs):\n    return sum(xs) / len(xs)\n' +
  'Block expansion adds identity blocks, so the model computes exactly what it did before.';

/** Expands a checkpoint and checks the identity on a probe text (or probe ids without a tokenizer). */
export async function expandModel(
  dir: string,
  request: ExpansionRequest,
  opts: { out: string; overwrite?: boolean; backend?: BackendName | 'auto' },
): Promise<ExpandResult> {
  await initBackend(opts.backend);
  const ckpt = await openCheckpoint(dir);
  const tok = await loadTokenizerIfPresent(dir);
  let probe = tok ? tok.encode(PROBE_TEXT) : fallbackProbeIds(ckpt.config);
  probe = probe.filter((id) => id < ckpt.config.vocabSize).slice(0, Math.min(64, ckpt.config.maxPositionEmbeddings));
  if (probe.length === 0) probe = fallbackProbeIds(ckpt.config);
  return expandCheckpoint(ckpt, request, { out: opts.out, overwrite: opts.overwrite, probeIds: probe });
}

export async function exportModel(dir: string, opts: Parameters<typeof exportHf>[1]) {
  return exportHf(await openCheckpoint(dir), opts);
}

export interface GgufExportOptions {
  out: string;
  dtype?: GgufFileType;
  overwrite?: boolean;
  name?: string;
  /** measure the NLL change (default: for every dtype but F32, whose weights are the checkpoint's exactly) */
  nll?: boolean;
  /** a text file to measure it on (default: the bundled demo's held-out text) */
  nllText?: string;
  backend?: BackendName | 'auto';
  onTensor?: (index: number, total: number, name: string) => void;
  onPhase?: (message: string) => void;
}

/**
 * `blocklab export --format gguf`: one GGUF v3 file for llama.cpp (F32, F16, Q8_0, Q4_0 or Q4_K_M; see
 * gguf.ts), with the NLL change its rounding causes on a probe text (gguf-nll.ts). The file is
 * the product: if the measurement fails afterwards (a model too large to score here), the
 * export stands and says so in its warnings.
 */
export async function exportGguf(dir: string, opts: GgufExportOptions): Promise<GgufExportResult & { nll: GgufNllChange | null }> {
  const ckpt = await openCheckpoint(dir);
  const plan = await planGgufExport(ckpt, { dtype: opts.dtype, name: opts.name });
  const measure = opts.nll ?? plan.dtype !== 'F32';
  // a bad probe file is refused before anything is written
  const probe = measure ? await (opts.nllText ? nllProbeFromFile(opts.nllText) : defaultNllProbe()) : null;
  const result = await exportCheckpointGguf(ckpt, { out: opts.out, overwrite: opts.overwrite, plan, onTensor: opts.onTensor });
  let nll: GgufNllChange | null = null;
  if (probe) {
    try {
      const { active } = await initBackend(opts.backend);
      const tooBig = nllMemoryProblem(ckpt.config, active);
      if (tooBig) throw new BlocklabError(tooBig);
      nll = await measureGgufNll(ckpt, plan, probe, opts.onPhase);
    } catch (e) {
      result.warnings.push(`the NLL change was not measured: ${(e as Error).message}`);
    }
  }
  return { ...result, nll };
}
