import { describe, expect, it } from 'vitest';
import { configDiff, flattenConfig, formatConfigValue } from '../../src/renderer/src/lib/config-diff';

describe('flattenConfig', () => {
  it('nests to dotted keys; arrays and empty objects are leaves', () => {
    expect(flattenConfig({ lr: 0.001, method: { kind: 'lora', rank: 8, targets: ['q', 'v'] }, adamw: { beta1: 0.9 }, extra: {} })).toEqual({
      lr: 0.001,
      'method.kind': 'lora',
      'method.rank': 8,
      'method.targets': ['q', 'v'],
      'adamw.beta1': 0.9,
      extra: {},
    });
  });
  it('a non-object config flattens to nothing', () => {
    expect(flattenConfig(null)).toEqual({});
    expect(flattenConfig(42)).toEqual({});
  });
});

describe('configDiff', () => {
  const a = { lr: 0.001, steps: 40, method: { kind: 'blocks' }, data: { paths: ['x'] }, seed: 0 };
  const b = { lr: 0.0003, steps: 40, method: { kind: 'lora', rank: 8 }, data: { paths: ['x'] }, seed: 0 };

  it('keeps only the keys that differ, sorted, with one value per config', () => {
    expect(configDiff([a, b])).toEqual([
      { key: 'lr', values: [0.001, 0.0003] },
      { key: 'method.kind', values: ['blocks', 'lora'] },
      { key: 'method.rank', values: [undefined, 8] },
    ]);
  });

  it('three configs: a key differs if any one differs', () => {
    const c = { ...a, seed: 1 };
    expect(configDiff([a, a, c]).map((r) => r.key)).toEqual(['seed']);
  });

  it('arrays compare by content, objects inside regardless of key order', () => {
    expect(configDiff([{ t: ['q', 'v'], o: { x: 1, y: 2 } }, { t: ['q', 'v'], o: { y: 2, x: 1 } }])).toEqual([]);
    expect(configDiff([{ t: ['q', 'v'] }, { t: ['v', 'q'] }])).toEqual([{ key: 't', values: [['q', 'v'], ['v', 'q']] }]);
  });

  it('a missing or null config differs on every key the others have; one config has no diff', () => {
    expect(configDiff([{ lr: 1 }, null])).toEqual([{ key: 'lr', values: [1, undefined] }]);
    expect(configDiff([a])).toEqual([]);
  });

  it('null is a value, different from a missing key', () => {
    expect(configDiff([{ k: null }, {}])).toEqual([{ key: 'k', values: [null, undefined] }]);
  });
});

describe('formatConfigValue', () => {
  it('strings as they are, other values as JSON, missing as a dash', () => {
    expect(formatConfigValue('lora')).toBe('lora');
    expect(formatConfigValue(0.001)).toBe('0.001');
    expect(formatConfigValue(['q', 'v'])).toBe('["q","v"]');
    expect(formatConfigValue(undefined)).toBe('—');
    expect(formatConfigValue(null)).toBe('null');
  });
});
