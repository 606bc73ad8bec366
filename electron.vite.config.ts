import { resolve } from 'node:path';
import { defineConfig } from 'electron-vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

// electron-vite's standard layout (DESIGN.md §2). Main bundles the app's entry and the engine
// process (a utilityProcess entry of its own); the preload is CommonJS, as sandboxed preloads
// must be; the renderer is the Svelte notebook, also served by `blocklab serve`.
export default defineConfig({
  main: {
    build: {
      rollupOptions: {
        // an optional dependency with a native addon beside its index.js: loaded from node_modules at run time
        external: ['webgpu'],
        input: {
          index: resolve(__dirname, 'src/main/index.ts'),
          'engine-process': resolve(__dirname, 'src/main/jobs/engine-process.ts'),
        },
      },
    },
  },
  preload: {
    build: {
      rollupOptions: {
        input: resolve(__dirname, 'src/preload/index.ts'),
        output: { format: 'cjs', entryFileNames: '[name].cjs' },
      },
    },
  },
  renderer: {
    root: resolve(__dirname, 'src/renderer'),
    build: { outDir: resolve(__dirname, 'out/renderer'), chunkSizeWarningLimit: 8000 },
    plugins: [svelte({ configFile: resolve(__dirname, 'svelte.config.js') })],
  },
});
