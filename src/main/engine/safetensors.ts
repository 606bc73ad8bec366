/**
 * safetensors reading and writing, streamed: headers are parsed whole (they are small and
 * bounded), tensor data is read and written one tensor at a time at its file position, so a
 * multi-GB checkpoint never sits in memory at once.
 *
 * Layout: an 8-byte little-endian u64 N, N bytes of UTF-8 JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}`,
 * then the data region; offsets are relative to the start of the data region (8 + N).
 *
 * Every file is untrusted: each problem is a one-line BlocklabError naming the file, never a
 * RangeError, an out-of-memory or a hang.
 */
import { constants as bufferConstants } from 'node:buffer';
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { BlocklabError } from './errors.js';
import { DTYPE_BYTES, isDType, toFloat32, type DType } from './dtype.js';
import { jsonSyntaxProblem } from '../../shared/json-error.js';

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** absolute position of the first byte in the file */
  byteOffset: number;
  byteLength: number;
  /** the file the tensor is in */
  file: string;
}

export interface SafetensorsFile {
  path: string;
  metadata: Record<string, string>;
  tensors: Map<string, TensorInfo>;
}

export interface TensorToWrite {
  name: string;
  dtype: DType;
  shape: number[];
  /** the bytes, or a function that produces them when this tensor's turn comes */
  data: Uint8Array | (() => Promise<Uint8Array>);
}

/** Headers larger than this are refused (the reference library's limit is the same). */
export const MAX_HEADER_BYTES = 100_000_000;
/** The largest read or write handed to the OS at once (Node refuses more than 2^31-1). */
const IO_CHUNK = 1 << 30;

const SUPPORTED = 'F32, F16, BF16';
const CONVERT_HINT =
  'convert the checkpoint in Python with model.to(torch.float16) and save_pretrained(..., safe_serialization=True)';
const SINGLE_FILE = 'model.safetensors';
const INDEX_FILE = 'model.safetensors.index.json';

const q = (s: string): string => JSON.stringify(s);
const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Bytes a tensor of this dtype and shape needs, or undefined when that is not a safe integer. */
function tensorBytes(shape: number[], dtype: DType): number | undefined {
  let n = DTYPE_BYTES[dtype];
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return undefined;
  }
  return n;
}

function isValidShape(shape: unknown): shape is number[] {
  return Array.isArray(shape) && shape.every((d) => Number.isSafeInteger(d) && d >= 0);
}

function errnoCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

/** Opens a file for reading; a missing or unreadable file is a BlocklabError naming it. */
async function openForRead(file: string): Promise<FileHandle> {
  try {
    return await fsp.open(file, 'r');
  } catch (e) {
    const code = errnoCode(e);
    if (code === 'ENOENT') throw new BlocklabError('file not found; check the path', { file, cause: e });
    if (code === 'EISDIR') throw new BlocklabError('is a folder, not a safetensors file', { file, cause: e });
    throw new BlocklabError(`cannot open the file (${code ?? String(e)}); check its permissions`, { file, cause: e });
  }
}

/** Reads exactly `length` bytes at `position` into `into` (from its start), in bounded chunks. */
async function readExactly(fh: FileHandle, into: Uint8Array, position: number, file: string): Promise<void> {
  let done = 0;
  while (done < into.byteLength) {
    const want = Math.min(IO_CHUNK, into.byteLength - done);
    const { bytesRead } = await fh.read(into, done, want, position + done);
    if (bytesRead === 0) {
      throw new BlocklabError(
        `the file ended after ${position + done} bytes while reading ${into.byteLength} bytes at offset ${position}; ` +
          'it looks truncated or changed while being read: re-download or re-export it',
        { file },
      );
    }
    done += bytesRead;
  }
}

async function writeAll(fh: FileHandle, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.byteLength) {
    const want = Math.min(IO_CHUNK, data.byteLength - done);
    const { bytesWritten } = await fh.write(data, done, want);
    done += bytesWritten;
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Reads and validates the header of a safetensors file; tensor data is not read. */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsFile> {
  const fh = await openForRead(file);
  try {
    const { size } = await fh.stat();
    if (size < 8) {
      throw new BlocklabError(
        `the file is only ${size} bytes, shorter than the 8-byte header length every safetensors file starts with; ` +
          'it looks truncated or is not a safetensors file: re-download or re-export it',
        { file },
      );
    }
    const lenBytes = new Uint8Array(8);
    await readExactly(fh, lenBytes, 0, file);
    const n64 = new DataView(lenBytes.buffer).getBigUint64(0, true);
    if (n64 > BigInt(Number.MAX_SAFE_INTEGER) || Number(n64) > MAX_HEADER_BYTES) {
      throw new BlocklabError(
        `the header length is ${n64} bytes, more than the ${MAX_HEADER_BYTES}-byte limit; ` +
          'the file is corrupt or not a safetensors file: re-download or re-export it',
        { file },
      );
    }
    const headerLen = Number(n64);
    if (8 + headerLen > size) {
      throw new BlocklabError(
        `the header length is ${headerLen} bytes but the file is only ${size} bytes; ` +
          'the header length is larger than the file, so it looks truncated or is not a safetensors file: re-download or re-export it',
        { file },
      );
    }
    const headerBytes = new Uint8Array(headerLen);
    await readExactly(fh, headerBytes, 8, file);
    return parseHeader(file, headerBytes, 8 + headerLen, size);
  } finally {
    await fh.close();
  }
}

function parseHeader(file: string, headerBytes: Uint8Array, dataStart: number, fileSize: number): SafetensorsFile {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch (e) {
    throw new BlocklabError(
      'the header is not valid UTF-8; the file is corrupt or not a safetensors file: re-download or re-export it',
      { file, cause: e },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new BlocklabError(
      `the header is not valid JSON (${jsonSyntaxProblem(e)}); ` +
        'the file is corrupt or not a safetensors file: re-download or re-export it',
      { file, cause: e },
    );
  }
  if (!isPlainObject(json)) {
    throw new BlocklabError(
      'the header is not a JSON object; the file is corrupt or not a safetensors file: re-download or re-export it',
      { file },
    );
  }

  const dataSize = fileSize - dataStart;
  let metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  const spans: { name: string; begin: number; end: number }[] = [];

  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isPlainObject(entry) || !Object.values(entry).every((v) => typeof v === 'string')) {
        throw new BlocklabError(
          '"__metadata__" in the header must map strings to strings; the file was not written by a safetensors library: re-export it',
          { file },
        );
      }
      metadata = Object.fromEntries(Object.entries(entry)) as Record<string, string>; // own keys, even "__proto__"
      continue;
    }
    if (!isPlainObject(entry) || !('dtype' in entry) || !('shape' in entry) || !('data_offsets' in entry)) {
      throw new BlocklabError(
        `tensor ${q(name)} in the header lacks one of dtype, shape and data_offsets; the file is corrupt: re-download or re-export it`,
        { file },
      );
    }
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== 'string' || !isDType(dtype)) {
      throw new BlocklabError(
        `tensor ${q(name)} has dtype ${typeof dtype === 'string' ? dtype : JSON.stringify(dtype)}, which is not supported; ` +
          `supported dtypes are ${SUPPORTED} (integer and 8-bit types such as I8 or F8_E4M3 are not): ${CONVERT_HINT}`,
        { file },
      );
    }
    if (!isValidShape(shape)) {
      throw new BlocklabError(
        `tensor ${q(name)} has shape ${JSON.stringify(shape)}; a shape must be a list of non-negative integers. ` +
          'The file is corrupt: re-download or re-export it',
        { file },
      );
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      throw new BlocklabError(
        `tensor ${q(name)} has data_offsets ${JSON.stringify(offsets)}; they must be two non-negative integers [begin, end] with begin <= end. ` +
          'The file is corrupt: re-download or re-export it',
        { file },
      );
    }
    const [begin, end] = offsets as [number, number];
    const need = tensorBytes(shape, dtype);
    if (need !== end - begin) {
      throw new BlocklabError(
        `tensor ${q(name)}: shape ${JSON.stringify(shape)} of ${dtype} needs ${need ?? 'too many'} bytes ` +
          `but data_offsets give ${end - begin}; the file is corrupt: re-download or re-export it`,
        { file },
      );
    }
    if (end > dataSize) {
      throw new BlocklabError(
        `tensor ${q(name)} ends at byte ${end} of the data region but the file holds only ${dataSize} bytes of data; ` +
          'the file looks truncated: re-download or re-export it',
        { file },
      );
    }
    tensors.set(name, { name, dtype, shape: [...shape], byteOffset: dataStart + begin, byteLength: end - begin, file });
    if (end > begin) spans.push({ name, begin, end });
  }

  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < spans.length; i++) {
    const prev = spans[i - 1];
    const cur = spans[i];
    if (cur.begin < prev.end) {
      throw new BlocklabError(
        `tensors ${q(prev.name)} [${prev.begin}, ${prev.end}) and ${q(cur.name)} [${cur.begin}, ${cur.end}) overlap in the data region; ` +
          'the file is corrupt: re-download or re-export it',
        { file },
      );
    }
  }
  return { path: file, metadata, tensors };
}

/** The exact bytes of one tensor, in a fresh ArrayBuffer of exactly that length. */
export async function readTensorBytes(info: TensorInfo): Promise<Uint8Array> {
  if (info.byteLength > bufferConstants.MAX_LENGTH) {
    throw new BlocklabError(
      `tensor ${q(info.name)} is ${info.byteLength} bytes, more than the ${bufferConstants.MAX_LENGTH} bytes Node can hold in one array; ` +
        'shard the checkpoint differently or split the tensor',
      { file: info.file },
    );
  }
  const out = new Uint8Array(info.byteLength);
  if (info.byteLength === 0) return out;
  const fh = await openForRead(info.file);
  try {
    await readExactly(fh, out, info.byteOffset, info.file);
  } finally {
    await fh.close();
  }
  return out;
}

/** One tensor's values as float32, whatever its stored dtype. */
export async function readTensorFloat32(info: TensorInfo): Promise<Float32Array> {
  const bytes = await readTensorBytes(info);
  // the buffer is fresh, exact and aligned: F32 needs no copy
  if (info.dtype === 'F32') return new Float32Array(bytes.buffer, 0, bytes.byteLength / 4);
  return toFloat32(bytes, info.dtype);
}

// ---------------------------------------------------------------------------------------------
// Writing

interface PlannedTensor {
  t: TensorToWrite;
  byteLength: number;
}

function planTensors(file: string, tensors: TensorToWrite[]): PlannedTensor[] {
  const seen = new Set<string>();
  return tensors.map((t) => {
    if (seen.has(t.name)) throw new BlocklabError(`tensor ${q(t.name)} is given twice`, { file });
    if (t.name === '__metadata__') throw new BlocklabError('a tensor cannot be named "__metadata__"', { file });
    seen.add(t.name);
    if (!isDType(t.dtype)) {
      throw new BlocklabError(`tensor ${q(t.name)} has unsupported dtype ${q(String(t.dtype))}; supported: ${SUPPORTED}`, {
        file,
      });
    }
    const byteLength = isValidShape(t.shape) ? tensorBytes(t.shape, t.dtype) : undefined;
    if (byteLength === undefined) {
      throw new BlocklabError(`tensor ${q(t.name)} has an invalid shape ${JSON.stringify(t.shape)}`, { file });
    }
    return { t, byteLength };
  });
}

/**
 * Writes one safetensors file at exactly `file` (atomic renames are the caller's job): tensors in
 * the given order, contiguous, the data region 8-byte aligned, each tensor's lazy data produced
 * and written one at a time, fsync before close. `metadata` is merged over `{format: 'pt'}`.
 * Returns the number of bytes written (the file's size). A failed write removes the partial file.
 */
export async function writeSafetensors(
  file: string,
  tensors: TensorToWrite[],
  metadata?: Record<string, string>,
): Promise<number> {
  const planned = planTensors(file, tensors);
  const meta: Record<string, string> = { format: 'pt', ...(metadata ?? {}) };
  for (const [k, v] of Object.entries(meta)) {
    if (typeof v !== 'string') throw new BlocklabError(`metadata ${q(k)} must be a string`, { file });
  }

  // built by hand so keys keep the given order (a JS object would put "0", "1", ... first)
  const parts = [`"__metadata__":${JSON.stringify(meta)}`];
  let offset = 0;
  for (const { t, byteLength } of planned) {
    const entry = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + byteLength] };
    parts.push(`${JSON.stringify(t.name)}:${JSON.stringify(entry)}`);
    offset += byteLength;
  }
  let headerText = `{${parts.join(',')}}`;
  const rawLen = Buffer.byteLength(headerText, 'utf8');
  headerText += ' '.repeat((8 - (rawLen % 8)) % 8); // data region starts 8-byte aligned
  const headerBytes = Buffer.from(headerText, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.byteLength));

  let fh: FileHandle;
  try {
    fh = await fsp.open(file, 'w');
  } catch (e) {
    throw new BlocklabError(`cannot create the file (${errnoCode(e) ?? String(e)}); check the folder exists and is writable`, {
      file,
      cause: e,
    });
  }
  let written = 0;
  try {
    await writeAll(fh, prefix);
    await writeAll(fh, headerBytes);
    written = 8 + headerBytes.byteLength;
    for (const { t, byteLength } of planned) {
      const data = typeof t.data === 'function' ? await t.data() : t.data;
      if (!(data instanceof Uint8Array) || data.byteLength !== byteLength) {
        throw new BlocklabError(
          `tensor ${q(t.name)}: shape ${JSON.stringify(t.shape)} of ${t.dtype} needs ${byteLength} bytes ` +
            `but its data has ${data instanceof Uint8Array ? data.byteLength : 'no'} bytes`,
          { file },
        );
      }
      await writeAll(fh, data);
      written += byteLength;
    }
    await fh.sync();
    await fh.close();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await fsp.rm(file, { force: true }).catch(() => undefined);
    throw e;
  }
  return written;
}

// ---------------------------------------------------------------------------------------------
// Folders: a single model.safetensors, or shards with model.safetensors.index.json

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.access(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * All tensors of a Hugging Face checkpoint folder: the shards named by
 * model.safetensors.index.json, or the single model.safetensors.
 */
export async function readShardedIndex(dir: string): Promise<Map<string, TensorInfo>> {
  const indexPath = path.join(dir, INDEX_FILE);
  const singlePath = path.join(dir, SINGLE_FILE);
  if (await exists(indexPath)) return readIndex(dir, indexPath);
  if (await exists(singlePath)) return (await readSafetensorsHeader(singlePath)).tensors;

  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (e) {
    const code = errnoCode(e);
    throw new BlocklabError(
      code === 'ENOENT'
        ? 'folder not found; check the path'
        : code === 'ENOTDIR'
          ? 'is a file, not a checkpoint folder; give the folder that holds config.json and model.safetensors'
          : `cannot read the folder (${code ?? String(e)})`,
      { file: dir, cause: e },
    );
  }
  const pickles = names.filter((n) => /^pytorch_model.*\.bin$/.test(n) || /\.(pt|pth)$/.test(n)).sort();
  if (pickles.length > 0) {
    throw new BlocklabError(
      `holds only PyTorch pickle checkpoints (${pickles.slice(0, 3).join(', ')}${pickles.length > 3 ? ', ...' : ''}), ` +
        'which are not loaded because unpickling runs arbitrary code; convert them to safetensors with ' +
        `python -c "from transformers import AutoModelForCausalLM as M; M.from_pretrained('${dir}').save_pretrained('OUT', safe_serialization=True)"`,
      { file: dir },
    );
  }
  const others = names.filter((n) => n.endsWith('.safetensors')).sort();
  throw new BlocklabError(
    `no ${SINGLE_FILE} or ${INDEX_FILE} was found in the folder` +
      (others.length > 0 ? ` (it has ${others.slice(0, 3).join(', ')}, which are not a model checkpoint by name)` : '') +
      '; give a Hugging Face checkpoint folder saved with save_pretrained(..., safe_serialization=True)',
    { file: dir },
  );
}

async function readIndex(dir: string, indexPath: string): Promise<Map<string, TensorInfo>> {
  let index: unknown;
  try {
    const st = await fsp.stat(indexPath);
    if (st.size > MAX_HEADER_BYTES) throw new Error(`the index is ${st.size} bytes, more than ${MAX_HEADER_BYTES}`);
    index = JSON.parse(await fsp.readFile(indexPath, 'utf8'));
  } catch (e) {
    throw new BlocklabError(
      `is not valid JSON (${jsonSyntaxProblem(e)}); re-download or re-export the checkpoint`,
      { file: indexPath, cause: e },
    );
  }
  const weightMap = isPlainObject(index) ? index.weight_map : undefined;
  if (!isPlainObject(weightMap) || !Object.values(weightMap).every((v) => typeof v === 'string' && v.length > 0)) {
    throw new BlocklabError(
      'has no "weight_map" object mapping tensor names to shard file names; re-download or re-export the checkpoint',
      { file: indexPath },
    );
  }
  const root = path.resolve(dir);
  const shardNames = [...new Set(Object.values(weightMap) as string[])];
  for (const shard of shardNames) {
    const resolved = path.resolve(root, shard);
    if (
      path.isAbsolute(shard) ||
      /^[a-zA-Z]:/.test(shard) ||
      shard.split(/[\\/]/).includes('..') ||
      !(resolved + path.sep).startsWith(root + path.sep) ||
      resolved === root
    ) {
      throw new BlocklabError(
        `names shard ${q(shard)}, which is outside the checkpoint folder; shard paths must stay in the folder (no ".." or absolute paths)` +
          ': the index is corrupt or malicious, re-download the checkpoint',
        { file: indexPath },
      );
    }
  }

  const headers = new Map<string, SafetensorsFile>();
  for (const shard of shardNames) {
    const shardPath = path.join(dir, shard);
    if (!(await exists(shardPath))) {
      throw new BlocklabError(
        `lists shard ${q(shard)}, which is missing from the folder; the download looks incomplete: re-download the checkpoint`,
        { file: indexPath },
      );
    }
    headers.set(shard, await readSafetensorsHeader(shardPath));
  }

  const all = new Map<string, TensorInfo>();
  for (const [shard, header] of headers) {
    for (const [name, info] of header.tensors) {
      const already = all.get(name);
      if (already) {
        throw new BlocklabError(
          `tensor ${q(name)} appears in two shards, ${q(path.basename(already.file))} and ${q(shard)}; ` +
            'the checkpoint is inconsistent: re-download or re-export it',
          { file: indexPath },
        );
      }
      all.set(name, info);
    }
  }
  for (const [name, shard] of Object.entries(weightMap) as [string, string][]) {
    if (!headers.get(shard)!.tensors.has(name)) {
      throw new BlocklabError(
        `says tensor ${q(name)} is in shard ${q(shard)}, but that shard has no such tensor; ` +
          'the checkpoint is inconsistent: re-download or re-export it',
        { file: indexPath },
      );
    }
  }
  return all;
}

/**
 * Groups tensors, in order, into shards of at most `maxShardBytes` bytes of tensor data; a single
 * tensor larger than the limit gets a shard of its own. Returns the names in each shard.
 */
export function planShards(tensors: { name: string; byteLength: number }[], maxShardBytes: number): string[][] {
  const shards: string[][] = [];
  let current: string[] = [];
  let size = 0;
  for (const t of tensors) {
    if (current.length > 0 && size + t.byteLength > maxShardBytes) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(t.name);
    size += t.byteLength;
  }
  if (current.length > 0) shards.push(current);
  return shards;
}

const pad5 = (n: number): string => String(n).padStart(5, '0');

/**
 * Writes a checkpoint's tensors into the existing folder `dir` in the transformers layout: one
 * model.safetensors when everything fits in one shard, else model-0000i-of-0000n.safetensors plus
 * model.safetensors.index.json. Returns the paths written (the index last) and totalBytes, the
 * total tensor data size (the index's metadata.total_size). Files from an earlier export in `dir`
 * are not removed.
 */
export async function writeSafetensorsFolder(
  dir: string,
  tensors: TensorToWrite[],
  opts: { maxShardBytes?: number; metadata?: Record<string, string> } = {},
): Promise<{ files: string[]; totalBytes: number }> {
  const maxShardBytes = opts.maxShardBytes ?? 5e9;
  const planned = planTensors(dir, tensors);
  const totalBytes = planned.reduce((s, p) => s + p.byteLength, 0);
  const groups = planShards(
    planned.map((p) => ({ name: p.t.name, byteLength: p.byteLength })),
    maxShardBytes,
  );
  if (groups.length <= 1) {
    const file = path.join(dir, SINGLE_FILE);
    await writeSafetensors(file, tensors, opts.metadata);
    return { files: [file], totalBytes };
  }
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const files: string[] = [];
  const weightMap: [string, string][] = [];
  for (let i = 0; i < groups.length; i++) {
    const shardName = `model-${pad5(i + 1)}-of-${pad5(groups.length)}.safetensors`;
    const file = path.join(dir, shardName);
    await writeSafetensors(
      file,
      groups[i].map((n) => byName.get(n)!),
      opts.metadata,
    );
    files.push(file);
    for (const n of groups[i]) weightMap.push([n, shardName]);
  }
  // transformers writes the index with sorted keys, indent 2 and a final newline
  // (built by hand: a JS object would reorder numeric-looking names)
  weightMap.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const entries = weightMap.map(([n, f]) => `    ${JSON.stringify(n)}: ${JSON.stringify(f)}`).join(',\n');
  const text = `{\n  "metadata": {\n    "total_size": ${totalBytes}\n  },\n  "weight_map": {\n${entries}\n  }\n}\n`;
  const indexPath = path.join(dir, INDEX_FILE);
  const fh = await fsp.open(indexPath, 'w');
  try {
    await fh.writeFile(text, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
  files.push(indexPath);
  return { files, totalBytes };
}
