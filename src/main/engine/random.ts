/** Seeded randomness: the same seed gives the same numbers on every machine and backend. */

/** mulberry32: a small, fast PRNG with a 32-bit state; uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fills a Float32Array with normal(mean, std) draws (Box–Muller on `random`). */
export function fillNormal(out: Float32Array, random: () => number, std: number, mean = 0): Float32Array {
  for (let i = 0; i < out.length; i += 2) {
    const u = 1 - random(); // (0, 1]
    const v = random();
    const r = Math.sqrt(-2 * Math.log(u)) * std;
    out[i] = mean + r * Math.cos(2 * Math.PI * v);
    if (i + 1 < out.length) out[i + 1] = mean + r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

/** Fills a Float32Array with uniform draws of the given standard deviation: U(mean − √3·std, mean + √3·std). */
export function fillUniform(out: Float32Array, random: () => number, std: number, mean = 0): Float32Array {
  const half = Math.sqrt(3) * std;
  for (let i = 0; i < out.length; i++) out[i] = mean + (2 * random() - 1) * half;
  return out;
}

/** Deterministic pseudo-random ids in [0, vocab) (an LCG: the same on every machine). */
export function randomIds(n: number, vocab: number, seed: number): number[] {
  const ids: number[] = [];
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    ids.push(s % vocab);
  }
  return ids;
}
