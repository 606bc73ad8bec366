/**
 * Parquet corpora (the format Hugging Face datasets are stored in), read through hyparquet, a
 * maintained pure-JavaScript reader, with hyparquet-compressors for the codecs beyond snappy
 * (zstd, gzip, brotli, lz4). The file is streamed: only its footer and then one row group's
 * text column at a time are in memory, never the whole file.
 */
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema, type FileMetaData } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { BlocklabError } from './errors.js';

/** The most uncompressed bytes of the text column one row group may hold (it is decoded whole). */
export const PARQUET_MAX_ROW_GROUP_BYTES = 1024 * 1024 * 1024;

export function isParquetPath(path: string): boolean {
  return path.toLowerCase().endsWith('.parquet');
}

async function openParquet(file: string) {
  let buffer;
  try {
    buffer = await asyncBufferFromFile(file);
  } catch (e) {
    throw new BlocklabError(`cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)}); check its permissions`, { file, cause: e });
  }
  let metadata: FileMetaData;
  try {
    metadata = await parquetMetadataAsync(buffer);
  } catch (e) {
    throw new BlocklabError(`is not a readable Parquet file (${(e as Error).message}); give a .parquet file written by pyarrow, pandas or 🤗 datasets`, { file, cause: e });
  }
  return { buffer, metadata };
}

/** The top-level column names of a Parquet file and whether each holds UTF-8 strings. */
export async function parquetColumns(file: string): Promise<{ name: string; isString: boolean }[]> {
  const { metadata } = await openParquet(file);
  return columnsOf(metadata);
}

function columnsOf(metadata: FileMetaData): { name: string; isString: boolean }[] {
  return parquetSchema(metadata).children.map((c) => {
    const e = c.element;
    const isString = c.children.length === 0 && e.type === 'BYTE_ARRAY' && (e.converted_type === 'UTF8' || e.logical_type?.type === 'STRING');
    return { name: e.name, isString };
  });
}

/**
 * The documents in column `column` of a Parquet file, one per row, row group by row group.
 * Null values and blank strings are left out (as blank documents are elsewhere).
 */
export async function* parquetDocuments(file: string, column: string): AsyncGenerator<string> {
  const { buffer, metadata } = await openParquet(file);
  const columns = columnsOf(metadata);
  const col = columns.find((c) => c.name === column);
  if (!col) {
    throw new BlocklabError(
      `has no column "${column}"; its columns are ${columns.map((c) => `"${c.name}"`).join(', ') || 'none'}: choose the one with the text with --text-column`,
      { file },
    );
  }
  if (!col.isString) {
    const strings = columns.filter((c) => c.isString).map((c) => `"${c.name}"`);
    throw new BlocklabError(
      `column "${column}" does not hold strings${strings.length ? `; its string columns are ${strings.join(', ')}` : ''}: choose the text column with --text-column`,
      { file },
    );
  }
  let rowStart = 0;
  for (const [g, rg] of metadata.row_groups.entries()) {
    const rows = Number(rg.num_rows);
    const chunk = rg.columns.find((c) => c.meta_data?.path_in_schema.join('.') === column);
    const bytes = Number(chunk?.meta_data?.total_uncompressed_size ?? 0);
    if (bytes > PARQUET_MAX_ROW_GROUP_BYTES) {
      throw new BlocklabError(
        `row group ${g} holds ${bytes} bytes of column "${column}", over the ${PARQUET_MAX_ROW_GROUP_BYTES} a row group may have here; rewrite the file with smaller row groups (pyarrow: row_group_size)`,
        { file },
      );
    }
    let values: Record<string, unknown>[];
    try {
      values = await parquetReadObjects({ file: buffer, metadata, columns: [column], rowStart, rowEnd: rowStart + rows, compressors });
    } catch (e) {
      throw new BlocklabError(`row group ${g} cannot be decoded (${(e as Error).message}); the file may be damaged`, { file, cause: e });
    }
    for (const row of values) {
      const v = row[column];
      if (v === null || v === undefined) continue;
      if (typeof v !== 'string') throw new BlocklabError(`column "${column}" holds a ${typeof v} in row group ${g}; choose a text column with --text-column`, { file });
      if (v.trim() !== '') yield v;
    }
    rowStart += rows;
  }
}
