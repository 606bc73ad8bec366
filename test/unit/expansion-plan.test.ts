/** The expansion plan (src/shared/expansion.ts): layouts of every placement, records, refusals. */
import { describe, expect, it } from 'vitest';
import { ExpansionRequestError, expansionRecord, parsePositions, planExpansion, type PlannedBlock } from '../../src/shared/expansion.js';

/** 'o3' = original block 3, 'n3' = new copy of block 3 */
const show = (layers: PlannedBlock[]) => layers.map((b) => (b.kind === 'original' ? `o${b.original}` : `n${b.source}`)).join(' ');

describe('planExpansion', () => {
  it('interleave: LLaMA2-7B 32 → 40, one new block after every 4 (the paper)', () => {
    const plan = planExpansion(32, { blocks: 8 });
    expect(plan.layers).toHaveLength(40);
    const record = expansionRecord(plan);
    expect(record.new_layers).toEqual([4, 9, 14, 19, 24, 29, 34, 39]);
    expect(record.sources).toEqual([3, 7, 11, 15, 19, 23, 27, 31]);
    expect(record.original_index.filter((x) => x !== null)).toEqual(Array.from({ length: 32 }, (_, i) => i));
  });

  it('interleave on a small model', () => {
    expect(show(planExpansion(4, { blocks: 2 }).layers)).toBe('o0 o1 n1 o2 o3 n3');
    expect(show(planExpansion(3, { blocks: 3, placement: 'interleave' }).layers)).toBe('o0 n0 o1 n1 o2 n2');
    expect(show(planExpansion(4, { blocks: 1 }).layers)).toBe('o0 o1 o2 o3 n3');
  });

  it('top and bottom stacking', () => {
    expect(show(planExpansion(3, { blocks: 2, placement: 'top' }).layers)).toBe('o0 o1 o2 n2 n2');
    expect(show(planExpansion(3, { blocks: 2, placement: 'bottom' }).layers)).toBe('n0 n0 o0 o1 o2');
    // not limited by divisibility
    expect(planExpansion(5, { blocks: 3, placement: 'top' }).layers).toHaveLength(8);
  });

  it('explicit positions with default and chosen sources, several in one gap in order', () => {
    const plan = planExpansion(4, { positions: parsePositions('0, 2:0, 4, 2:3') });
    expect(show(plan.layers)).toBe('n0 o0 o1 n0 n3 o2 o3 n3');
    expect(plan.placement).toBe('positions');
    expect(expansionRecord(plan).new_layers).toEqual([0, 3, 4, 7]);
  });

  it('refuses interleave when L is not divisible by P, naming the valid P', () => {
    expect(() => planExpansion(32, { blocks: 6 })).toThrow(ExpansionRequestError);
    expect(() => planExpansion(32, { blocks: 6 })).toThrow(/valid --blocks for 32 blocks: 1, 2, 4, 8, 16, 32/);
  });

  it('refuses P ≤ 0, missing P, out-of-range positions and sources, and malformed lists', () => {
    expect(() => planExpansion(4, { blocks: 0 })).toThrow(/positive/);
    expect(() => planExpansion(4, { blocks: -2 })).toThrow(/positive/);
    expect(() => planExpansion(4, {})).toThrow(/--blocks/);
    expect(() => planExpansion(4, { positions: [{ position: 5 }] })).toThrow(/0 \(below block 0\) to 4/);
    expect(() => planExpansion(4, { positions: [{ position: -1 }] })).toThrow(/out of range/);
    expect(() => planExpansion(4, { positions: [{ position: 2, source: 4 }] })).toThrow(/valid sources are 0 to 3/);
    expect(() => planExpansion(4, { blocks: 3, positions: [{ position: 2 }] })).toThrow(/disagrees/);
    expect(() => parsePositions('2,x')).toThrow(/gap:source/);
    expect(() => planExpansion(4, { blocks: 1.5 })).toThrow(/invalid expansion request/);
  });
});
