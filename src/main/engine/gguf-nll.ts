/**
 * What a GGUF export's rounding costs: the mean next-token NLL of a probe text under the
 * checkpoint's own weights and under the weights exactly as the GGUF file holds them (each
 * tensor's written bytes decoded by our dequantizer and un-permuted), computed by the same
 * engine, so that the difference is the quantization's and nothing else's. llama.cpp running the
 * file sees the same change up to its own arithmetic (test/integration/gguf-quant.test.ts
 * measures how close).
 */
import { open } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import type { BackendName } from './backend.js';
import type { Checkpoint } from './checkpoint.js';
import { parameterCount, type ModelConfig } from './config.js';
import { BlocklabError } from './errors.js';
import type { GgufExportPlan } from './gguf.js';
import { LlamaModel, tokenNll } from './model.js';
import { demoDir } from './resources.js';
import { HfTokenizer } from './tokenizer.js';
import type { GgufNllChange } from '../../shared/api.js';

export type { GgufNllChange };

/** Tokens scored at most (fewer when the model's context is shorter). */
export const GGUF_NLL_MAX_TOKENS = 512;

/** Characters of a probe file read at most: far more than GGUF_NLL_MAX_TOKENS tokens. */
const PROBE_MAX_CHARS = 64 * 1024;

export interface NllProbe {
  text: string;
  label: string;
}

async function readHead(file: string, bytes: number): Promise<string> {
  const fh = await open(file, 'r');
  try {
    const buf = new Uint8Array(bytes);
    const { bytesRead } = await fh.read(buf, 0, bytes, 0);
    return new TextDecoder('utf-8').decode(buf.subarray(0, bytesRead)).replace(/\uFFFD+$/, ''); // a character cut at the end
  } finally {
    await fh.close();
  }
}

/** A text file as the probe (its first 64 KiB). */
export async function nllProbeFromFile(file: string): Promise<NllProbe> {
  let text: string;
  try {
    text = await readHead(file, PROBE_MAX_CHARS);
  } catch (e) {
    throw new BlocklabError(`cannot read the NLL probe text (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); give --nll-text a text file`, { file });
  }
  if (text.trim().length === 0) throw new BlocklabError('the NLL probe text is empty; give --nll-text a file with some text', { file });
  return { text, label: file };
}

/**
 * The default probe: the bundled demo's held-out texts, prose (The Devil's Dictionary) then
 * code (the Python standard library), which no demo model trained on.
 */
export async function defaultNllProbe(): Promise<NllProbe> {
  try {
    return await demoProbe();
  } catch (e) {
    throw new BlocklabError(
      `cannot read the bundled demo's held-out text to measure the NLL change (${(e as Error).message}); give --nll-text a text file, or --no-nll`,
      { file: demoDir() },
    );
  }
}

async function demoProbe(): Promise<NllProbe> {
  const demo = demoDir();
  const prose = await readHead(join(demo, 'corpora', 'general', 'heldout.txt'), 1500);
  const lines = (await readHead(join(demo, 'corpora', 'code', 'heldout.jsonl'), PROBE_MAX_CHARS)).split('\n').slice(0, -1); // the last line may be cut
  let code = '';
  for (const line of lines) {
    if (code.length >= 1500) break;
    code += (code ? '\n\n' : '') + (JSON.parse(line) as { text: string }).text;
  }
  code = code.slice(0, 1500);
  return { text: `${prose}\n\n${code}`, label: "the bundled demo's held-out prose and code" };
}

/** The probe's token ids: the tokenizer's encoding (BOS as it adds it), cut to the context. */
export function nllProbeIds(tok: HfTokenizer, probe: NllProbe, maxPositions: number): number[] {
  const ids = tok.encode(probe.text).slice(0, Math.min(GGUF_NLL_MAX_TOKENS, maxPositions));
  if (ids.length < 2) throw new BlocklabError(`the NLL probe text (${probe.label}) is shorter than two tokens; give a longer text`);
  return ids;
}

const GIB = 2 ** 30;

/**
 * Why scoring this model on `backend` would not fit in memory, or null when it fits: the
 * float32 weights (one model at a time), a transposed copy of tied embeddings, and the logits.
 * The wasm backend's heap is 4 GiB (wasm32); elsewhere half the machine's memory is allowed.
 */
export function nllMemoryProblem(config: ModelConfig, backend: BackendName): string | null {
  const tokens = Math.min(GGUF_NLL_MAX_TOKENS, config.maxPositionEmbeddings);
  const need = 4 * (parameterCount(config) + (config.tieWordEmbeddings ? config.vocabSize * config.hiddenSize : 0) + 3 * tokens * config.vocabSize);
  const limit = backend === 'wasm' ? 3.5 * GIB : totalmem() / 2;
  if (need <= limit) return null;
  return `scoring needs the model in float32, ${(need / GIB).toFixed(1)} GiB, more than the ${backend} backend can hold here (${(limit / GIB).toFixed(1)} GiB); pass --no-nll, or export on a machine with a native backend (blocklab doctor)`;
}

async function meanNll(ckpt: Checkpoint, ids: number[], read?: (name: string) => Promise<Float32Array>): Promise<number> {
  const model = await LlamaModel.fromTensors(ckpt.config, ckpt.tensors, read ? { read: (info) => read(info.name) } : {});
  try {
    const nll = await tokenNll(model, ids);
    let sum = 0;
    for (const v of nll) sum += v;
    return sum / nll.length;
  } finally {
    model.dispose();
  }
}

/**
 * Scores the probe with the checkpoint's weights, then with `plan`'s as written (one model in
 * memory at a time). The backend must be initialised.
 */
export async function measureGgufNll(
  ckpt: Checkpoint,
  plan: GgufExportPlan,
  probe: NllProbe,
  onPhase?: (message: string) => void,
): Promise<GgufNllChange> {
  const ids = nllProbeIds(await HfTokenizer.fromFolder(ckpt.dir), probe, ckpt.config.maxPositionEmbeddings);
  onPhase?.(`scoring ${ids.length} tokens with the checkpoint's weights`);
  const checkpoint = await meanNll(ckpt, ids);
  onPhase?.(`scoring ${ids.length} tokens with the ${plan.dtype} file's weights`);
  const gguf = await meanNll(ckpt, ids, (name) => {
    const read = plan.asWritten.get(name);
    if (!read) throw new Error(`the GGUF plan has no tensor for ${name}`);
    return read();
  });
  return { text: probe.label, tokens: ids.length - 1, checkpoint, gguf, delta: gguf - checkpoint };
}
