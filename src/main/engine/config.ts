/**
 * Hugging Face `config.json` → the model configuration the engine runs.
 *
 * Supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM. Everything the forward
 * pass depends on is read here and nowhere else, so a config the engine cannot run exactly is
 * refused with a message instead of silently computing something else.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BlocklabError } from './errors.js';
import { jsonSyntaxProblem } from '../../shared/json-error.js';

export const SUPPORTED_ARCHITECTURES = ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM'] as const;
export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];

export interface Llama3RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

export interface ModelConfig {
  architecture: Architecture;
  vocabSize: number; // V
  hiddenSize: number; // D
  intermediateSize: number; // F (SwiGLU width)
  numLayers: number; // L
  numHeads: number; // nh
  numKvHeads: number; // nkv (nh % nkv == 0; nkv < nh is grouped-query attention)
  headDim: number; // hd (config.head_dim, or D / nh)
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: Llama3RopeScaling | null;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** bias on q/k/v projections (Qwen2 always; Llama when attention_bias) */
  qkvBias: boolean;
  /** bias on o_proj (Llama attention_bias) */
  oBias: boolean;
  /** bias on gate/up/down (Llama mlp_bias) */
  mlpBias: boolean;
  /** keys further back than this many positions are masked (Mistral, Qwen2 with use_sliding_window) */
  slidingWindow: number | null;
  /** layers from this index on use the sliding window (Qwen2's max_window_layers); 0 for Mistral */
  slidingWindowFromLayer: number;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** dtype the checkpoint says it was saved in (`torch_dtype` / `dtype`), informational */
  torchDtype: string | null;
}

type Json = Record<string, unknown>;

/**
 * Upper bounds on the sizes a config.json may state, far above any released model (Llama 3.1
 * 405B: 126 layers, hidden 16384, MLP 53248, 128 heads; vocabularies ≤ 262144; contexts ≤ 10 M),
 * so a hostile or damaged config is refused before anything is sized from it. The sizes are
 * then checked against the weights actually present (checkpoint.ts) before any table is built.
 */
export const CONFIG_LIMITS = {
  num_hidden_layers: 1024,
  hidden_size: 131_072,
  intermediate_size: 1_048_576,
  num_attention_heads: 4096,
  num_key_value_heads: 4096,
  head_dim: 16_384,
  vocab_size: 16_777_216,
  max_position_embeddings: 1 << 28,
} as const;

function num(raw: Json, key: string, file: string, fallback?: number): number {
  const v = raw[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new BlocklabError(`"${key}" is missing; a ${String(raw.architectures ?? 'LLaMA')} config needs it`, { file });
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new BlocklabError(`"${key}" must be a number, got ${JSON.stringify(v)}`, { file });
  }
  return v;
}

function posInt(raw: Json, key: string, file: string, fallback?: number): number {
  const v = num(raw, key, file, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new BlocklabError(`"${key}" must be a positive integer, got ${v}`, { file });
  const max = (CONFIG_LIMITS as Record<string, number>)[key];
  if (max !== undefined && v > max) throw new BlocklabError(`"${key}" is ${v}, more than any model this engine can run (at most ${max}); the config is damaged or not a LLaMA-family config`, { file });
  return v;
}

function ids(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

/** Parses an already-read config.json object; `file` names it in errors. */
export function parseHfConfig(raw: unknown, file = 'config.json'): ModelConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new BlocklabError('is not a JSON object', { file });
  }
  const c = raw as Json;
  const archs = Array.isArray(c.architectures) ? (c.architectures as unknown[]) : [];
  const arch = archs.find((a): a is Architecture => SUPPORTED_ARCHITECTURES.includes(a as Architecture));
  if (!arch) {
    const said = archs.length ? archs.join(', ') : `model_type ${JSON.stringify(c.model_type ?? null)} with no "architectures"`;
    throw new BlocklabError(
      `unsupported architecture ${said}; Blocklab runs ${SUPPORTED_ARCHITECTURES.join(', ')} — ` +
        'other decoder models need their own forward pass and are not loaded',
      { file },
    );
  }
  const act = c.hidden_act ?? 'silu';
  if (act !== 'silu') {
    throw new BlocklabError(`hidden_act ${JSON.stringify(act)} is not supported; LLaMA-family MLPs use "silu"`, { file });
  }
  const hiddenSize = posInt(c, 'hidden_size', file);
  const numHeads = posInt(c, 'num_attention_heads', file);
  const numKvHeads = posInt(c, 'num_key_value_heads', file, numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new BlocklabError(
      `num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`,
      { file },
    );
  }
  const explicitHeadDim = c.head_dim === null || c.head_dim === undefined ? undefined : posInt(c, 'head_dim', file);
  if (explicitHeadDim === undefined && hiddenSize % numHeads !== 0) {
    throw new BlocklabError(`hidden_size (${hiddenSize}) is not divisible by num_attention_heads (${numHeads}) and no head_dim is given`, { file });
  }
  const headDim = explicitHeadDim ?? hiddenSize / numHeads;
  if (headDim % 2 !== 0) throw new BlocklabError(`head_dim ${headDim} must be even for rotary embeddings`, { file });
  if (c.partial_rotary_factor !== undefined && c.partial_rotary_factor !== 1 && c.partial_rotary_factor !== 1.0) {
    throw new BlocklabError(`partial_rotary_factor ${String(c.partial_rotary_factor)} is not supported (only 1.0)`, { file });
  }

  let ropeScaling: Llama3RopeScaling | null = null;
  const rs = (c.rope_scaling ?? null) as Json | null;
  if (rs !== null) {
    if (typeof rs !== 'object') throw new BlocklabError('"rope_scaling" must be an object or null', { file });
    const type = rs.rope_type ?? rs.type;
    if (type === 'default') ropeScaling = null;
    else if (type === 'llama3') {
      ropeScaling = {
        type: 'llama3',
        factor: num(rs, 'factor', file),
        lowFreqFactor: num(rs, 'low_freq_factor', file),
        highFreqFactor: num(rs, 'high_freq_factor', file),
        originalMaxPositionEmbeddings: num(rs, 'original_max_position_embeddings', file),
      };
      if (ropeScaling.highFreqFactor <= ropeScaling.lowFreqFactor) {
        throw new BlocklabError('rope_scaling high_freq_factor must be greater than low_freq_factor', { file });
      }
    } else {
      throw new BlocklabError(
        `rope_scaling type ${JSON.stringify(type)} is not supported; supported: "llama3" (or none)`,
        { file },
      );
    }
  }

  const isQwen2 = arch === 'Qwen2ForCausalLM';
  const isMistral = arch === 'MistralForCausalLM';
  const attentionBias = c.attention_bias === true;
  let slidingWindow: number | null = null;
  let slidingWindowFromLayer = 0;
  const numLayers = posInt(c, 'num_hidden_layers', file);
  if (isMistral && typeof c.sliding_window === 'number') slidingWindow = c.sliding_window;
  if (isQwen2 && c.use_sliding_window === true && typeof c.sliding_window === 'number') {
    slidingWindow = c.sliding_window;
    slidingWindowFromLayer = typeof c.max_window_layers === 'number' ? c.max_window_layers : numLayers;
  }

  return {
    architecture: arch,
    vocabSize: posInt(c, 'vocab_size', file),
    hiddenSize,
    intermediateSize: posInt(c, 'intermediate_size', file),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: num(c, 'rms_norm_eps', file, 1e-6),
    ropeTheta: num(c, 'rope_theta', file, 10000),
    ropeScaling,
    maxPositionEmbeddings: posInt(c, 'max_position_embeddings', file, 2048),
    tieWordEmbeddings: c.tie_word_embeddings === true,
    qkvBias: isQwen2 || attentionBias,
    oBias: !isQwen2 && attentionBias,
    mlpBias: !isQwen2 && !isMistral && c.mlp_bias === true,
    slidingWindow,
    slidingWindowFromLayer,
    bosTokenId: typeof c.bos_token_id === 'number' ? c.bos_token_id : null,
    eosTokenIds: ids(c.eos_token_id),
    torchDtype: typeof c.torch_dtype === 'string' ? c.torch_dtype : typeof c.dtype === 'string' ? c.dtype : null,
  };
}

/** Reads and parses `<dir>/config.json`, with errors that name the file. */
export async function readHfConfig(dir: string): Promise<{ config: ModelConfig; raw: Record<string, unknown> }> {
  const file = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new BlocklabError(
        'not found; a checkpoint folder needs the config.json that transformers writes with save_pretrained',
        { file },
      );
    }
    if (code === 'ENOTDIR') throw new BlocklabError('is not a folder; pass the checkpoint folder, not a file', { file: dir });
    throw new BlocklabError(`cannot be read (${code ?? String(e)})`, { file });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new BlocklabError(`is not valid JSON (${jsonSyntaxProblem(e)}); fix the file or re-download the checkpoint`, { file });
  }
  return { config: parseHfConfig(raw, file), raw: raw as Record<string, unknown> };
}

/** The HF tensor names of one decoder block, in the order transformers saves them. */
export function blockTensorNames(config: ModelConfig, i: number): string[] {
  const p = `model.layers.${i}.`;
  const names = [`${p}input_layernorm.weight`];
  for (const proj of ['q_proj', 'k_proj', 'v_proj']) {
    names.push(`${p}self_attn.${proj}.weight`);
    if (config.qkvBias) names.push(`${p}self_attn.${proj}.bias`);
  }
  names.push(`${p}self_attn.o_proj.weight`);
  if (config.oBias) names.push(`${p}self_attn.o_proj.bias`);
  for (const proj of ['gate_proj', 'up_proj', 'down_proj']) {
    names.push(`${p}mlp.${proj}.weight`);
    if (config.mlpBias) names.push(`${p}mlp.${proj}.bias`);
  }
  names.push(`${p}post_attention_layernorm.weight`);
  return names;
}

/** Expected shape of every tensor of the checkpoint, keyed by HF name. */
export function expectedShapes(config: ModelConfig): Map<string, number[]> {
  const { vocabSize: V, hiddenSize: D, intermediateSize: F, numHeads: nh, numKvHeads: nkv, headDim: hd } = config;
  const shapes = new Map<string, number[]>();
  shapes.set('model.embed_tokens.weight', [V, D]);
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}.`;
    shapes.set(`${p}input_layernorm.weight`, [D]);
    shapes.set(`${p}self_attn.q_proj.weight`, [nh * hd, D]);
    shapes.set(`${p}self_attn.k_proj.weight`, [nkv * hd, D]);
    shapes.set(`${p}self_attn.v_proj.weight`, [nkv * hd, D]);
    if (config.qkvBias) {
      shapes.set(`${p}self_attn.q_proj.bias`, [nh * hd]);
      shapes.set(`${p}self_attn.k_proj.bias`, [nkv * hd]);
      shapes.set(`${p}self_attn.v_proj.bias`, [nkv * hd]);
    }
    shapes.set(`${p}self_attn.o_proj.weight`, [D, nh * hd]);
    if (config.oBias) shapes.set(`${p}self_attn.o_proj.bias`, [D]);
    shapes.set(`${p}mlp.gate_proj.weight`, [F, D]);
    shapes.set(`${p}mlp.up_proj.weight`, [F, D]);
    shapes.set(`${p}mlp.down_proj.weight`, [D, F]);
    if (config.mlpBias) {
      shapes.set(`${p}mlp.gate_proj.bias`, [F]);
      shapes.set(`${p}mlp.up_proj.bias`, [F]);
      shapes.set(`${p}mlp.down_proj.bias`, [D]);
    }
    shapes.set(`${p}post_attention_layernorm.weight`, [D]);
  }
  shapes.set('model.norm.weight', [D]);
  if (!config.tieWordEmbeddings) shapes.set('lm_head.weight', [V, D]);
  return shapes;
}

/** Number of parameters, counting a tied embedding once. */
export function parameterCount(config: ModelConfig): number {
  let n = 0;
  for (const shape of expectedShapes(config).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}
