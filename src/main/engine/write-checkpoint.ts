/**
 * Writing a checkpoint folder in the Hugging Face layout that
 * `transformers.AutoModelForCausalLM.from_pretrained` loads unchanged: config.json,
 * model.safetensors (or shards + index), and the tokenizer files of the source. Atomic.
 */
import { copyFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { writeFolderAtomically } from './atomic.js';
import { tokenizerFilesIn } from './checkpoint.js';
import { fromFloat32, toFloat32, type DType } from './dtype.js';
import { readTensorBytes, writeSafetensorsFolder, type TensorInfo, type TensorToWrite } from './safetensors.js';

export const TORCH_DTYPE_NAMES: Record<DType, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

export function parseDtypeOption(text: string): DType | null {
  const t = text.toLowerCase();
  if (t === 'f32' || t === 'float32' || t === 'fp32') return 'F32';
  if (t === 'f16' || t === 'float16' || t === 'fp16' || t === 'half') return 'F16';
  if (t === 'bf16' || t === 'bfloat16') return 'BF16';
  return null;
}

/** A tensor read from a source file, converted to `dtype` when it differs (bytes copied exactly otherwise). */
export function tensorFromSource(name: string, info: TensorInfo, dtype: DType = info.dtype): TensorToWrite {
  return {
    name,
    dtype,
    shape: info.shape,
    data: async () => {
      const bytes = await readTensorBytes(info);
      return dtype === info.dtype ? bytes : fromFloat32(toFloat32(bytes, info.dtype), dtype);
    },
  };
}

/** A tensor of zeros (+0.0 is all-zero bits in F32, F16 and BF16). */
export function zeroTensor(name: string, shape: number[], dtype: DType, bytesPerElement: number): TensorToWrite {
  const n = shape.reduce((a, b) => a * b, 1);
  return { name, dtype, shape, data: async () => new Uint8Array(n * bytesPerElement) };
}

export interface WriteCheckpointOptions {
  out: string;
  overwrite: boolean;
  config: Record<string, unknown>;
  tensors: TensorToWrite[];
  /** folder whose tokenizer and generation files are copied */
  tokenizerFrom?: string;
  metadata?: Record<string, string>;
  maxShardBytes?: number;
  /** runs on the finished temporary folder before it is moved into place; throw to abandon */
  verify?: (tmpDir: string) => Promise<void>;
}

export interface WrittenCheckpoint {
  dir: string;
  files: string[];
  bytes: number;
}

export async function writeCheckpoint(opts: WriteCheckpointOptions): Promise<WrittenCheckpoint> {
  return writeFolderAtomically(opts.out, opts.overwrite, async (tmp) => {
    const { files, totalBytes } = await writeSafetensorsFolder(tmp, opts.tensors, {
      maxShardBytes: opts.maxShardBytes,
      metadata: opts.metadata,
    });
    await writeFile(join(tmp, 'config.json'), JSON.stringify(opts.config, null, 2) + '\n');
    const copied: string[] = [];
    if (opts.tokenizerFrom) {
      for (const f of await tokenizerFilesIn(opts.tokenizerFrom)) {
        await copyFile(join(opts.tokenizerFrom, f), join(tmp, f));
        copied.push(f);
      }
    }
    if (opts.verify) await opts.verify(tmp);
    return { dir: opts.out, files: ['config.json', ...files.map((f) => basename(f)), ...copied], bytes: totalBytes };
  });
}
