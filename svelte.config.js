// Svelte 5 for the renderer (src/renderer); runes mode everywhere.
export default {
  compilerOptions: { runes: true },
};
