import type { Timing } from './report.js';

export function summarize(seconds: number[]): Timing {
  if (seconds.length === 0) throw new Error('no timings to summarize');
  const sorted = [...seconds].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return {
    median,
    mean: seconds.reduce((a, b) => a + b, 0) / seconds.length,
    min: sorted[0],
    max: sorted[sorted.length - 1],
    samples: seconds.length,
  };
}

/** The process's RSS high-water mark in bytes (getrusage ru_maxrss). */
export function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}
