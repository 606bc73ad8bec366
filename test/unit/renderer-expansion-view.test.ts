// The Expansion cell's pure logic: config parsing, the block diagram's stack, the CLI line.
import { describe, expect, it } from 'vitest';
import { baseBlocks, expandCommand, parseExpansionConfig, planConfig } from '../../src/renderer/src/lib/expansion-view';

describe('Expansion cell: config → plan → diagram', () => {
  it('interleave: a new block above each group, labelled by the block it copies', () => {
    const r = planConfig('{"blocks": 2, "placement": "interleave"}', 4);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.blocks.map((b) => `${b.kind}:${b.from}`)).toEqual(['old:0', 'old:1', 'new:1', 'old:2', 'old:3', 'new:3']);
    expect(r.blocks.map((b) => b.layer)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(r.blocks[2]!.label).toBe('copy of 1');
    expect(r.blocks[0]!.label).toBe('block 0');
  });

  it('top and bottom stack copies of the last and first block', () => {
    const top = planConfig('{"blocks": 2, "placement": "top"}', 3);
    const bottom = planConfig('{"blocks": 1, "placement": "bottom"}', 3);
    expect(top.ok && top.blocks.map((b) => `${b.kind}:${b.from}`)).toEqual(['old:0', 'old:1', 'old:2', 'new:2', 'new:2']);
    expect(bottom.ok && bottom.blocks.map((b) => `${b.kind}:${b.from}`)).toEqual(['new:0', 'old:0', 'old:1', 'old:2']);
  });

  it('explicit positions put copies in the named gaps', () => {
    const r = planConfig('{"positions": [{"position": 0}, {"position": 2, "source": 0}]}', 2);
    expect(r.ok && r.blocks.map((b) => `${b.kind}:${b.from}`)).toEqual(['new:0', 'old:0', 'old:1', 'new:0']);
  });

  it('says why a config does not plan: bad JSON, unknown keys, gaps out of range, indivisible', () => {
    const bad = planConfig('{"blocks": 2,', 4);
    expect(!bad.ok && bad.error).toMatch(/not valid JSON/);
    const unknown = parseExpansionConfig('{"blocks": 2, "placment": "top"}');
    expect(!unknown.ok && unknown.error).toMatch(/placment/);
    const gap = planConfig('{"positions": [{"position": 9}]}', 4);
    expect(!gap.ok && gap.error).toMatch(/position 9 is out of range/);
    const div = planConfig('{"blocks": 3}', 4);
    expect(!div.ok && div.error).toMatch(/valid --blocks for 4 blocks: 1, 2, 4/);
  });

  it('the base stack for a config that does not plan', () => {
    expect(baseBlocks(3).map((b) => b.kind + b.from)).toEqual(['old0', 'old1', 'old2']);
  });

  it('spells the equivalent CLI command, quoting paths that need it', () => {
    expect(expandCommand('models/base', 'out/x', { blocks: 2, placement: 'interleave' })).toBe(
      'blocklab expand models/base --out out/x --blocks 2 --placement interleave',
    );
    expect(expandCommand('/my models/base', undefined, { positions: [{ position: 4 }, { position: 8, source: 7 }] })).toBe(
      "blocklab expand '/my models/base' --out <out-folder> --positions 4,8:7",
    );
  });
});
