#!/usr/bin/env node
/**
 * Packs scripts/gpu-measure.ts for a GPU machine that has the repository's files but not its
 * node_modules (600 MB, with Dawn for every platform) and maybe no Node:
 *
 *   gpu-kit/measure.mjs     the script and the engine, bundled (esbuild, tsx's own)
 *   gpu-kit/node_modules/   what the bundle loads at run time: webgpu (index.js; dawn.node for
 *                           linux-x64, xz-compressed) and a stand-in for @tensorflow/tfjs (below)
 *   gpu-kit/node.xz         this Node binary, for a machine without Node 20+ (--no-node: left out)
 *   gpu-kit/run.sh          sets up Vulkan and Node there and runs the measurement
 *
 * About 35 MB in all. Usage: node scripts/gpu-kit.mjs [--no-node]; then, on the machine,
 * `bash gpu-kit/run.sh [gpu-measure options]` from the repository's root (README: WebGPU).
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const kit = join(repo, 'gpu-kit');
const require = createRequire(join(repo, 'package.json'));
const withNode = !process.argv.includes('--no-node');
if (process.platform !== 'linux' || process.arch !== 'x64') throw new Error('the kit carries linux-x64 binaries (Dawn, Node): build it on linux-x64');

rmSync(kit, { recursive: true, force: true });
mkdirSync(kit, { recursive: true });

// 1. the bundle. `webgpu` stays outside (its index.js loads dawn.node from beside itself).
const { build } = await import(require.resolve('esbuild'));
await build({
  entryPoints: [join(repo, 'scripts', 'gpu-measure.ts')],
  outfile: join(kit, 'measure.mjs'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['webgpu'],
  // CommonJS modules in the bundle require() Node's own modules
  banner: { js: "import { createRequire as __blocklabCreateRequire } from 'node:module'; const require = __blocklabCreateRequire(import.meta.url);" },
  logLevel: 'error',
});

// 2. Dawn: index.js and the linux-x64 addon (compressed: run.sh unpacks it)
const webgpuDir = dirname(require.resolve('webgpu/package.json'));
const dawnOut = join(kit, 'node_modules', 'webgpu');
mkdirSync(join(dawnOut, 'dist', 'linux-x64'), { recursive: true });
for (const f of ['package.json', 'index.js', 'LICENSE.md']) copyFileSync(join(webgpuDir, f), join(dawnOut, f));
writeFileSync(join(dawnOut, 'dist', 'linux-x64', 'dawn.node.xz'), execFileSync('xz', ['-9', '-c', join(webgpuDir, 'dist', 'linux-x64', 'dawn.node')], { maxBuffer: 1 << 30 }));

// 3. engine/autodiff.ts require()s @tensorflow/tfjs only to register its gradient functions in
// tfjs-core; the bundle already holds @tensorflow/tfjs (gpu-measure.ts imports it) and so
// registered them in the bundle's one tfjs-core. This stand-in answers that require().
const tfjsOut = join(kit, 'node_modules', '@tensorflow', 'tfjs');
mkdirSync(tfjsOut, { recursive: true });
writeFileSync(join(tfjsOut, 'package.json'), JSON.stringify({ name: '@tensorflow/tfjs', version: require('@tensorflow/tfjs/package.json').version, main: 'index.js' }) + '\n');
writeFileSync(join(tfjsOut, 'index.js'), '// gpu-kit: @tensorflow/tfjs is inside measure.mjs, which registered its gradients already\nmodule.exports = {};\n');

// 4. Node, for a machine without it
if (withNode) writeFileSync(join(kit, 'node.xz'), execFileSync('xz', ['-6', '-T2', '-c', process.execPath], { maxBuffer: 1 << 30 }));

// 5. the runner
copyFileSync(join(repo, 'scripts', 'gpu-run.sh'), join(kit, 'run.sh'));

let total = 0;
const sizes = ['measure.mjs', 'node_modules/webgpu/dist/linux-x64/dawn.node.xz', ...(withNode ? ['node.xz'] : [])].map((f) => {
  const n = statSync(join(kit, f)).size;
  total += n;
  return `${f} ${(n / 2 ** 20).toFixed(1)} MiB`;
});
console.log(`gpu-kit/: ${sizes.join(', ')}; ${(total / 2 ** 20).toFixed(1)} MiB in all (Node ${process.version}); ${readFileSync(join(kit, 'run.sh'), 'utf8').split('\n').length} lines of run.sh`);
