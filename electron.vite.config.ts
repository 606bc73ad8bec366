import { resolve } from 'node:path';
import { defineConfig } from 'electron-vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

// electron-vite's standard layout (DESIGN.md §2). The entry points — src/main/index.ts,
// src/preload/index.ts and src/renderer/index.html — arrive with the notebook app (issue 5);
// until then the engine and the CLI run under plain Node and need no build.
export default defineConfig({
  main: {
    build: { rollupOptions: { input: resolve(__dirname, 'src/main/index.ts') } },
  },
  preload: {
    build: { rollupOptions: { input: resolve(__dirname, 'src/preload/index.ts') } },
  },
  renderer: {
    root: resolve(__dirname, 'src/renderer'),
    plugins: [svelte({ configFile: resolve(__dirname, 'svelte.config.js') })],
  },
});
