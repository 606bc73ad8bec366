// How the notebook writes numbers, sizes and durations.
import { describe, expect, it } from 'vitest';
import { formatBytes, formatCount, formatDuration, formatSmall, formatWhen } from '../../src/renderer/src/lib/format';

describe('renderer number formats', () => {
  it('parameter counts', () => {
    expect(formatCount(869504)).toBe('870 K');
    expect(formatCount(1_234_567)).toBe('1.23 M');
    expect(formatCount(12_345_678)).toBe('12.3 M');
    expect(formatCount(7e9)).toBe('7.00 B');
    expect(formatCount(512)).toBe('512');
  });
  it('sizes, small values, durations, times', () => {
    expect(formatBytes(3478016)).toBe('3.3 MiB');
    expect(formatBytes(900)).toBe('900 B');
    expect(formatSmall(0.0000031)).toBe('3.1e-6');
    expect(formatSmall(0)).toBe('0');
    expect(formatSmall(0.25)).toBe('0.25');
    expect(formatDuration(75)).toBe('1m 15s');
    expect(formatDuration(3700)).toBe('1h 1m');
    const now = Date.parse('2026-11-28T12:00:00Z');
    expect(formatWhen('2026-11-28T11:58:00Z', now)).toBe('2 min ago');
    expect(formatWhen('2026-11-20T10:00:00Z', now)).toBe('2026-11-20');
  });
});
