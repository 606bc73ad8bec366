/**
 * `blocklab export --format hf`: a checkpoint re-written in the Hugging Face layout, in its
 * source dtype by default (weights copied bit for bit) or converted with --dtype.
 */
import { expectedShapes } from './config.js';
import type { Checkpoint } from './checkpoint.js';
import type { DType } from './dtype.js';
import { TORCH_DTYPE_NAMES, tensorFromSource, writeCheckpoint, type WrittenCheckpoint } from './write-checkpoint.js';
import type { TensorToWrite } from './safetensors.js';

const MODEL_TYPES: Record<string, string> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
};

/** config.json for a written checkpoint: the source's fields, with the dtype and layer count it now has. */
export function exportedConfig(ckpt: Checkpoint, dtype: DType, changes: Record<string, unknown> = {}): Record<string, unknown> {
  const config: Record<string, unknown> = { ...ckpt.rawConfig, ...changes };
  config.architectures = [ckpt.config.architecture];
  config.model_type ??= MODEL_TYPES[ckpt.config.architecture];
  config.torch_dtype = TORCH_DTYPE_NAMES[dtype];
  if ('dtype' in config) config.dtype = TORCH_DTYPE_NAMES[dtype];
  return config;
}

/** Every tensor of the checkpoint, in the order transformers saves them, in `dtype`. */
export function checkpointTensors(ckpt: Checkpoint, dtype?: DType): TensorToWrite[] {
  const out: TensorToWrite[] = [];
  for (const name of expectedShapes(ckpt.config).keys()) {
    const info = ckpt.tensors.get(name)!;
    out.push(tensorFromSource(name, info, dtype ?? info.dtype));
  }
  return out;
}

export async function exportHf(
  ckpt: Checkpoint,
  opts: { out: string; dtype?: DType; overwrite?: boolean; maxShardBytes?: number },
): Promise<WrittenCheckpoint & { dtype: DType }> {
  const dtype = opts.dtype ?? ckpt.dtype;
  const written = await writeCheckpoint({
    out: opts.out,
    overwrite: opts.overwrite ?? false,
    config: exportedConfig(ckpt, dtype),
    tensors: checkpointTensors(ckpt, opts.dtype),
    tokenizerFrom: ckpt.dir,
    maxShardBytes: opts.maxShardBytes,
    metadata: ckpt.expansion ? { blocklab_expansion: JSON.stringify(ckpt.expansion) } : undefined,
  });
  return { ...written, dtype };
}
