import { defineConfig } from 'vitest/config';

// Engine, CLI and store tests run under plain Node: the engine never imports Electron.
export default defineConfig({
  test: {
    environment: 'node',
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The wasm backend is single-threaded here; forks keep each file's tfjs state apart.
    pool: 'forks',
  },
});
