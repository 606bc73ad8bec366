/**
 * Damaged copies of a good checkpoint folder, made byte by byte, for the bad-input tests:
 * every damage is what a broken download, a hostile file or a wrong folder looks like.
 */
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface SafetensorsHeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}
export type SafetensorsHeader = Record<string, SafetensorsHeaderEntry | Record<string, string>>;

/** Copies the folder `from` to `to` (which must not exist). */
export async function copyCheckpoint(from: string, to: string): Promise<string> {
  await cp(from, to, { recursive: true, errorOnExist: true, force: false });
  return to;
}

/** Splits a safetensors file into its JSON header and its data region. */
export function splitSafetensors(bytes: Buffer): { header: SafetensorsHeader; headerLength: number; data: Buffer } {
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as SafetensorsHeader;
  return { header, headerLength, data: bytes.subarray(8 + headerLength) };
}

/** The tensor entries of a header (without __metadata__), ordered by where their data begins. */
export function tensorEntries(header: SafetensorsHeader): [string, SafetensorsHeaderEntry][] {
  return (Object.entries(header).filter(([k]) => k !== '__metadata__') as [string, SafetensorsHeaderEntry][]).sort(
    (a, b) => a[1].data_offsets[0] - b[1].data_offsets[0],
  );
}

/**
 * Rewrites the JSON header of `file` with `edit` and leaves the data region's bytes as they
 * are. When the new header fits in the old one's length it is padded with spaces to exactly
 * that length (the 8-byte prefix is unchanged); otherwise the prefix gets the new length.
 */
export async function rewriteHeader(file: string, edit: (header: SafetensorsHeader) => void): Promise<void> {
  const bytes = await readFile(file);
  const { header, headerLength, data } = splitSafetensors(bytes);
  edit(header);
  let text = JSON.stringify(header);
  let length = Buffer.byteLength(text, 'utf8');
  if (length <= headerLength) {
    text += ' '.repeat(headerLength - length);
    length = headerLength;
  } else {
    text += ' '.repeat((8 - (length % 8)) % 8);
    length = Buffer.byteLength(text, 'utf8');
  }
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(length));
  await writeFile(file, Buffer.concat([prefix, Buffer.from(text, 'utf8'), data]));
}

/** Cuts the last `bytes` bytes off the file. */
export async function truncateFile(file: string, bytes: number): Promise<void> {
  const all = await readFile(file);
  await writeFile(file, all.subarray(0, all.byteLength - bytes));
}

/** Sets the 8-byte little-endian header length at the start of a safetensors file. */
export async function setHeaderLength(file: string, length: bigint): Promise<void> {
  const all = await readFile(file);
  all.writeBigUInt64LE(length, 0);
  await writeFile(file, all);
}
