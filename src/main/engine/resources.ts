/**
 * Where the bundled files (resources/: the demo model, corpora, benchmarks, notebook) are:
 * `$BLOCKLAB_RESOURCES` when set — the Electron app sets it, since its bundled code does not
 * sit where these sources do — else the repository's resources/ folder.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export function resourcesDir(): string {
  const fromEnv = process.env.BLOCKLAB_RESOURCES;
  return fromEnv ? resolve(fromEnv) : fileURLToPath(new URL('../../../resources', import.meta.url));
}

/** The bundled demo: base model, tokenizer, corpora, benchmarks, notebook. */
export function demoDir(): string {
  return resolve(resourcesDir(), 'demo');
}

export function builtinBenchmarkDir(): string {
  return resolve(demoDir(), 'benchmarks');
}
