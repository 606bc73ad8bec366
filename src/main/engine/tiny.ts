/**
 * Tiny random checkpoints in the exact Hugging Face layout, for the README's first steps and
 * for tests: config.json as transformers writes it, safetensors (one file or shards) in F32,
 * F16 or BF16, and a real byte-level BPE tokenizer.json. Seeded: the same options give the
 * same bytes.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeByteLevelTokenizer } from './byte-tokenizer.js';
import { expectedShapes, parseHfConfig, type Architecture } from './config.js';
import { fromFloat32, type DType } from './dtype.js';
import { BlocklabError } from './errors.js';
import { fillNormal, fillUniform, seededRandom } from './random.js';
import type { TensorToWrite } from './safetensors.js';
import { TORCH_DTYPE_NAMES, writeCheckpoint } from './write-checkpoint.js';

export interface TinyOptions {
  architecture?: Architecture;
  layers?: number;
  hidden?: number;
  heads?: number;
  kvHeads?: number;
  /** set to use an explicit head_dim (≠ hidden / heads) */
  headDim?: number;
  intermediate?: number;
  maxPositions?: number;
  dtype?: DType;
  tie?: boolean;
  /** Llama: bias on q, k, v and o (attention_bias) */
  attentionBias?: boolean;
  /** Llama: bias on gate, up and down (mlp_bias) */
  mlpBias?: boolean;
  /** rope_scaling of type llama3 with this original context length */
  llama3RopeOriginalContext?: number;
  ropeTheta?: number;
  /** Mistral: sliding_window */
  slidingWindow?: number;
  /** write shards of at most this many bytes (with model.safetensors.index.json) */
  maxShardBytes?: number;
  /** BPE merges for the tokenizer (none: a 256-byte vocabulary plus special tokens) */
  merges?: [string, string][];
  /** vocab_size larger than the tokenizer (models often pad it) */
  padVocabTo?: number;
  /** use the tokenizer files of this folder (tokenizer.json + tokenizer_config.json) instead of a byte-level one */
  tokenizerFrom?: string;
  seed?: number;
  /** weights drawn from a normal distribution (default), or a uniform one of the same spread: ~10× faster to draw, for the bench's large shapes */
  distribution?: 'normal' | 'uniform';
  overwrite?: boolean;
}

const MODEL_TYPES: Record<Architecture, string> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
};

interface AddedToken {
  id: number;
  content: string;
}

/** The config.json transformers would write for this tiny model. */
function tinyConfig(o: Required<Pick<TinyOptions, 'architecture' | 'layers' | 'hidden' | 'heads' | 'kvHeads' | 'intermediate' | 'maxPositions' | 'dtype' | 'tie'>> & TinyOptions, vocab: number, bos: number, eos: number): Record<string, unknown> {
  const arch = o.architecture;
  const c: Record<string, unknown> = {
    architectures: [arch],
    model_type: MODEL_TYPES[arch],
    attention_dropout: 0.0,
    bos_token_id: bos,
    eos_token_id: eos,
    hidden_act: 'silu',
    hidden_size: o.hidden,
    initializer_range: 0.02,
    intermediate_size: o.intermediate,
    max_position_embeddings: o.maxPositions,
    num_attention_heads: o.heads,
    num_hidden_layers: o.layers,
    num_key_value_heads: o.kvHeads,
    rms_norm_eps: 1e-5,
    rope_theta: o.ropeTheta ?? (arch === 'Qwen2ForCausalLM' ? 1000000.0 : 10000.0),
    tie_word_embeddings: o.tie,
    torch_dtype: TORCH_DTYPE_NAMES[o.dtype],
    transformers_version: '4.46.0',
    use_cache: true,
    vocab_size: vocab,
  };
  if (o.headDim !== undefined) c.head_dim = o.headDim;
  if (arch === 'LlamaForCausalLM') {
    c.attention_bias = o.attentionBias ?? false;
    c.mlp_bias = o.mlpBias ?? false;
    c.pretraining_tp = 1;
    c.rope_scaling = o.llama3RopeOriginalContext
      ? { rope_type: 'llama3', factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: o.llama3RopeOriginalContext }
      : null;
  } else if (arch === 'MistralForCausalLM') {
    c.sliding_window = o.slidingWindow ?? null;
  } else {
    c.use_sliding_window = false;
    c.sliding_window = o.maxPositions;
    c.max_window_layers = o.layers;
    c.rope_scaling = null;
  }
  return c;
}

/** Writes a random tiny checkpoint with a byte-level tokenizer to `out`; returns its config.json. */
export async function makeTinyCheckpoint(out: string, options: TinyOptions = {}): Promise<Record<string, unknown>> {
  const o = {
    architecture: options.architecture ?? 'LlamaForCausalLM',
    layers: options.layers ?? 4,
    hidden: options.hidden ?? 64,
    heads: options.heads ?? 4,
    kvHeads: options.kvHeads ?? 2,
    intermediate: options.intermediate ?? 176,
    maxPositions: options.maxPositions ?? 512,
    dtype: options.dtype ?? 'F32',
    tie: options.tie ?? true,
    ...options,
  } as const;
  if (o.architecture !== 'LlamaForCausalLM' && (o.attentionBias || o.mlpBias || o.llama3RopeOriginalContext)) {
    throw new BlocklabError('attention_bias, mlp_bias and llama3 rope scaling are Llama options; use --arch llama');
  }
  const { tokenizerJson, tokenizerConfig } = options.tokenizerFrom
    ? {
        tokenizerJson: JSON.parse(await readFile(join(options.tokenizerFrom, 'tokenizer.json'), 'utf8')) as object,
        tokenizerConfig: JSON.parse(await readFile(join(options.tokenizerFrom, 'tokenizer_config.json'), 'utf8')) as object,
      }
    : makeByteLevelTokenizer({ merges: options.merges });
  const added = (tokenizerJson as { added_tokens: AddedToken[] }).added_tokens;
  const idOf = (content: string) => {
    const t = added.find((a) => a.content === content);
    if (!t) throw new Error(`byte-level tokenizer has no ${content}`);
    return t.id;
  };
  const modelVocab = Object.values((tokenizerJson as { model?: { vocab?: Record<string, number> } }).model?.vocab ?? {});
  const tokenizerVocab = [...added.map((a) => a.id), ...modelVocab].reduce((a, b) => Math.max(a, b), 0) + 1;
  const vocab = Math.max(tokenizerVocab, options.padVocabTo ?? 0);
  const config = tinyConfig(o, vocab, idOf('<|begin_of_text|>'), idOf('<|end_of_text|>'));
  const parsed = parseHfConfig(config, 'tiny config');

  const random = seededRandom(o.seed ?? 0);
  const fill = o.distribution === 'uniform' ? fillUniform : fillNormal;
  // Each tensor is made when its turn to be written comes (in this order, so the random stream
  // and the bytes are the same as made all at once): a multi-GB checkpoint never sits in memory.
  const tensors: TensorToWrite[] = [...expectedShapes(parsed)].map(([name, shape]) => ({
    name,
    dtype: o.dtype,
    shape,
    data: async () => {
      const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
      if (name.endsWith('norm.weight')) fill(values, random, 0.1, 1);
      else if (name.endsWith('.bias')) fill(values, random, 0.1);
      else if (name === 'model.embed_tokens.weight') fill(values, random, 0.25); // tied: logits of std ~2 for D = 64
      else if (name === 'lm_head.weight') fill(values, random, 2 / Math.sqrt(shape[1]));
      else fill(values, random, 1 / Math.sqrt(shape[1])); // [out, in]: unit-variance outputs
      return fromFloat32(values, o.dtype);
    },
  }));

  await writeCheckpoint({
    out,
    overwrite: o.overwrite ?? false,
    config,
    tensors,
    maxShardBytes: o.maxShardBytes,
    verify: async (tmp) => {
      await writeFile(join(tmp, 'tokenizer.json'), JSON.stringify(tokenizerJson));
      await writeFile(join(tmp, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2) + '\n');
      await writeFile(
        join(tmp, 'generation_config.json'),
        JSON.stringify({ bos_token_id: config.bos_token_id, eos_token_id: config.eos_token_id, transformers_version: '4.46.0' }, null, 2) + '\n',
      );
    },
  });
  return config;
}
