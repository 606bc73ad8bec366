/**
 * A Hugging Face checkpoint folder: config.json + safetensors (one file or shards) + tokenizer
 * files. Opening reads only headers; weights are read tensor by tensor when a model is built.
 */
import { access, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { BlocklabError } from './errors.js';
import { expectedShapes, readHfConfig, type ModelConfig } from './config.js';
import { readShardedIndex, type TensorInfo } from './safetensors.js';
import type { DType } from './dtype.js';
import { parseExpansionRecord, type ExpansionRecord } from '../../shared/expansion.js';

export interface Checkpoint {
  dir: string;
  config: ModelConfig;
  /** config.json as read, kept so exports write back every field transformers wrote */
  rawConfig: Record<string, unknown>;
  tensors: Map<string, TensorInfo>;
  /** the dtype most of the weights are stored in */
  dtype: DType;
  /** total bytes of tensor data */
  bytes: number;
  /** set when this checkpoint was made by `blocklab expand` */
  expansion: ExpansionRecord | null;
}

/** Keys some older checkpoints carry that are recomputed, not loaded (transformers ignores them too). */
function isIgnorable(name: string): boolean {
  return name.endsWith('.rotary_emb.inv_freq');
}

export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  let s;
  try {
    s = await stat(dir);
  } catch {
    throw new BlocklabError('no such folder; pass a Hugging Face checkpoint folder (config.json + model.safetensors)', { file: dir });
  }
  if (!s.isDirectory()) {
    throw new BlocklabError('is a file; pass the checkpoint folder that holds config.json and model.safetensors', { file: dir });
  }
  const { config, raw } = await readConfigOrExplain(dir);
  const tensors = await readShardedIndex(dir);
  checkSizesAgainstWeights(config, tensors, dir);
  validateTensors(config, tensors, dir);

  const byDtype = new Map<DType, number>();
  let bytes = 0;
  for (const t of tensors.values()) {
    bytes += t.byteLength;
    byDtype.set(t.dtype, (byDtype.get(t.dtype) ?? 0) + t.byteLength);
  }
  const dtype = [...byDtype.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'F32';
  let expansion: ExpansionRecord | null = null;
  if (raw.blocklab_expansion !== undefined) {
    try {
      expansion = parseExpansionRecord(raw.blocklab_expansion);
    } catch (e) {
      throw new BlocklabError((e as Error).message, { file: join(dir, 'config.json') });
    }
  }
  return { dir, config, rawConfig: raw, tensors, dtype, bytes, expansion };
}

/**
 * readHfConfig, except that a folder with no config.json but PyTorch pickle weights gets the
 * pickle refusal (why, and how to convert) rather than "config.json not found".
 */
async function readConfigOrExplain(dir: string): ReturnType<typeof readHfConfig> {
  try {
    return await readHfConfig(dir);
  } catch (e) {
    const configMissing = await access(join(dir, 'config.json')).then(() => false, () => true);
    const names = configMissing ? await readdir(dir).catch(() => [] as string[]) : [];
    if (names.some((n) => /^pytorch_model.*\.bin$/.test(n) || /\.(pt|pth)$/.test(n))) {
      await readShardedIndex(dir); // throws the pickle refusal unless safetensors weights are there too
    }
    throw e;
  }
}

/**
 * The sizes config.json states, against the weights that are there, before anything is built
 * from them: a config claiming 2,000,000,000 layers over a 4-layer file is refused here rather
 * than sizing tables (validateTensors below makes one entry per expected tensor) from it.
 */
function checkSizesAgainstWeights(config: ModelConfig, tensors: Map<string, TensorInfo>, dir: string): void {
  const configFile = join(dir, 'config.json');
  const layers = new Set<number>();
  for (const name of tensors.keys()) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m) layers.add(Number(m[1]));
  }
  if (config.numLayers > layers.size) {
    throw new BlocklabError(`says num_hidden_layers is ${config.numLayers}, but the safetensors files hold weights for ${layers.size} layer(s); fix num_hidden_layers or add the missing shards`, { file: configFile });
  }
  const embed = tensors.get('model.embed_tokens.weight');
  if (embed && (embed.shape.length !== 2 || embed.shape[0] !== config.vocabSize || embed.shape[1] !== config.hiddenSize)) {
    throw new BlocklabError(
      `says vocab_size ${config.vocabSize} and hidden_size ${config.hiddenSize}, but model.embed_tokens.weight has shape [${embed.shape.join(', ')}]; the config does not belong to these weights`,
      { file: configFile },
    );
  }
}

/** Every tensor the config implies must be present with its exact shape; nothing unknown may be. */
function validateTensors(config: ModelConfig, tensors: Map<string, TensorInfo>, dir: string): void {
  const expected = expectedShapes(config);
  for (const [name, shape] of expected) {
    const t = tensors.get(name);
    if (!t) {
      const hint = name === 'lm_head.weight' ? ' (or set "tie_word_embeddings": true in config.json if the head is tied)' : '';
      throw new BlocklabError(`tensor ${name} is missing from the safetensors files${hint}`, { file: dir });
    }
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new BlocklabError(
        `tensor ${name} has shape [${t.shape.join(', ')}] but config.json implies [${shape.join(', ')}]`,
        { file: t.file },
      );
    }
  }
  for (const [name, t] of tensors) {
    if (expected.has(name) || isIgnorable(name)) continue;
    if (name === 'lm_head.weight' && config.tieWordEmbeddings) continue; // tied: transformers ignores the copy
    const layer = /^model\.layers\.(\d+)\./.exec(name);
    if (layer && Number(layer[1]) >= config.numLayers) {
      throw new BlocklabError(
        `tensor ${name} belongs to layer ${layer[1]} but config.json says num_hidden_layers is ${config.numLayers}`,
        { file: t.file },
      );
    }
    throw new BlocklabError(`unexpected tensor ${name}: not part of a ${config.architecture} with this config`, { file: t.file });
  }
}

/** Tokenizer and generation files copied along with a checkpoint on export or expansion. */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'generation_config.json',
  'tokenizer.model',
  'chat_template.jinja',
  'chat_template.json',
];

export async function tokenizerFilesIn(dir: string): Promise<string[]> {
  const present = new Set(await readdir(dir));
  return TOKENIZER_FILES.filter((f) => present.has(f));
}
