/**
 * The backend a test file runs on: `auto` (wasm here), or the one BLOCKLAB_TEST_BACKEND names.
 * vitest.config.ts runs the numerical test files a second time with `webgpu` (see there).
 */
import { initBackend, type BackendName, type BackendReport } from '../../src/main/engine/index.js';

export const TEST_BACKEND = (process.env.BLOCKLAB_TEST_BACKEND ?? 'auto') as BackendName | 'auto';

export function initTestBackend(): Promise<BackendReport> {
  return initBackend(TEST_BACKEND);
}
