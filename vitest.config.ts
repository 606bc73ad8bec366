import { execFileSync } from 'node:child_process';
import { defineConfig } from 'vitest/config';

/**
 * The numerical engine tests run twice: on the default backend (wasm here) and on webgpu —
 * Mesa's llvmpipe through Dawn's OpenGL ES route when there is no GPU, as in CI. The same test
 * files, the same tolerances (measured on both; see each file).
 */
const WEBGPU_FILES = [
  'test/integration/model.test.ts', // parity with the float64 reference, KV cache, batching
  'test/integration/hf-reference.test.ts', // parity with transformers (PyTorch fixtures)
  'test/integration/gradients.test.ts', // every gradient against finite differences
  'test/integration/expand.test.ts', // the expansion's identity
  'test/integration/train.test.ts', // frozen weights bit-identical, exact resume, all four methods
  'test/integration/generate.test.ts', // decoding with the KV cache, sampling
  'test/integration/eval.test.ts', // batched scoring
];

/**
 * Whether Dawn finds a WebGPU adapter here, asked of `blocklab doctor` in a child process (the
 * test runner itself never loads Dawn). Without one the webgpu pass is left out with the reason
 * printed — unless BLOCKLAB_REQUIRE_WEBGPU=1 (CI: .ci/run), where it runs and fails with the reason.
 */
function webgpuAdapter(): { found: boolean; note: string } {
  // vitest evaluates this file once more for each project that extends it: probe once
  const cached = process.env.BLOCKLAB_WEBGPU_PROBE;
  if (cached) return JSON.parse(cached) as { found: boolean; note: string };
  const result = probeAdapter();
  process.env.BLOCKLAB_WEBGPU_PROBE = JSON.stringify(result);
  return result;
}

function probeAdapter(): { found: boolean; note: string } {
  try {
    const out = execFileSync(process.execPath, ['bin/blocklab.mjs', 'doctor', '--json', '--backend', 'webgpu'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    const doc = JSON.parse(out) as { webgpuAdapter: { device: string; description: string } | null };
    return { found: doc.webgpuAdapter !== null, note: doc.webgpuAdapter ? `${doc.webgpuAdapter.device} (${doc.webgpuAdapter.description})` : 'no adapter' };
  } catch (e) {
    // doctor --json prints {"error": "..."} when the backend cannot start
    const err = e as { stdout?: string; stderr?: string; message: string };
    let note = (err.stdout || err.stderr || err.message).split('\n').find((l) => l.trim()) ?? 'unknown error';
    try {
      note = (JSON.parse(note) as { error?: string }).error ?? note;
    } catch {
      // not JSON: the first line as it is
    }
    return { found: false, note: note.trim().slice(0, 400) };
  }
}

function webgpuProject() {
  const required = process.env.BLOCKLAB_REQUIRE_WEBGPU === '1';
  const adapter = webgpuAdapter();
  if (!adapter.found && !required) {
    if (process.env.BLOCKLAB_WEBGPU_WARNED) return [];
    process.env.BLOCKLAB_WEBGPU_WARNED = '1';
    console.warn(`\n[webgpu] the webgpu pass of the engine tests is SKIPPED: no WebGPU adapter could be created (${adapter.note}).\n`);
    return [];
  }
  return [
    {
      extends: true as const,
      test: {
        name: 'webgpu',
        include: WEBGPU_FILES,
        env: { BLOCKLAB_TEST_BACKEND: 'webgpu' },
        // llvmpipe runs the GPU's work on the CPU, ~6× slower than wasm: the training runs in
        // train.test.ts's hooks take that much longer (a property of the software adapter, not load)
        testTimeout: 180_000,
        hookTimeout: 300_000,
      },
    },
  ];
}

// Engine, CLI and store tests run under plain Node: the engine never imports Electron.
export default defineConfig({
  test: {
    environment: 'node',
    // `include` is per project: a project that extends this config would add its files to these
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The wasm backend is single-threaded here; forks keep each file's tfjs state apart.
    pool: 'forks',
    projects: [{ extends: true, test: { name: 'default', include: ['test/**/*.test.ts'] } }, ...webgpuProject()],
  },
});
