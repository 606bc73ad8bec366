/**
 * LLaMA-Factory's freeze rule as transcribed in src/shared/llamafactory.ts, against cases worked
 * out by hand from hiyouga/LLaMA-Factory src/llamafactory/model/adapter.py (`_setup_freeze_tuning`):
 *   use_llama_pro: L % n == 0, stride = L // n, range(stride - 1, L + stride - 1, stride)
 *   n > 0: range(max(0, L - n), L);  n < 0: range(min(-n, L))
 * and the YAML numbers PyYAML (YAML 1.1) reads back as floats.
 */
import { describe, expect, it } from 'vitest';
import { freezeFieldsFor, llamaFactoryFreezeLayers, llamaFactoryFreezeParams, planLlamaFactoryMethod } from '../../src/shared/llamafactory.js';
import { PYYAML_FLOAT, yamlNumber } from '../../src/main/interop/llamafactory.js';

describe("LLaMA-Factory's trainable layers", () => {
  it('use_llama_pro: LLaMA2-7B 32 → 40 with 8 new blocks trains 4, 9, …, 39 (one after every 4 originals)', () => {
    expect(llamaFactoryFreezeLayers({ numLayers: 40, freeze_trainable_layers: 8, use_llama_pro: true })).toEqual({ layers: [4, 9, 14, 19, 24, 29, 34, 39] });
    // 4 → 6 with 2 new blocks: stride 3, layers 2 and 5 (not 0 and 3, which a range(0, L, stride) would give)
    expect(llamaFactoryFreezeLayers({ numLayers: 6, freeze_trainable_layers: 2, use_llama_pro: true })).toEqual({ layers: [2, 5] });
  });

  it('use_llama_pro refuses a layer count not divisible by n, as LLaMA-Factory raises', () => {
    const r = llamaFactoryFreezeLayers({ numLayers: 7, freeze_trainable_layers: 2, use_llama_pro: true });
    expect(r).toHaveProperty('error');
    expect((r as { error: string }).error).toMatch(/7 is not divisible by freeze_trainable_layers 2/);
  });

  it('without use_llama_pro: +n is the last n, -n the first |n|, clamped to the model', () => {
    expect(llamaFactoryFreezeLayers({ numLayers: 6, freeze_trainable_layers: 2, use_llama_pro: false })).toEqual({ layers: [4, 5] });
    expect(llamaFactoryFreezeLayers({ numLayers: 6, freeze_trainable_layers: -2, use_llama_pro: false })).toEqual({ layers: [0, 1] });
    expect(llamaFactoryFreezeLayers({ numLayers: 3, freeze_trainable_layers: 9, use_llama_pro: false })).toEqual({ layers: [0, 1, 2] });
    expect(llamaFactoryFreezeLayers({ numLayers: 3, freeze_trainable_layers: -9, use_llama_pro: false })).toEqual({ layers: [0, 1, 2] });
  });

  it('the substring rule: ".1." trains layer 1 and not layer 11; modules narrow it', () => {
    const names = ['model.embed_tokens.weight', 'model.layers.1.mlp.up_proj.weight', 'model.layers.11.mlp.up_proj.weight', 'model.layers.1.input_layernorm.weight', 'model.norm.weight', 'lm_head.weight'];
    expect(llamaFactoryFreezeParams(names, [1])).toEqual(['model.layers.1.mlp.up_proj.weight', 'model.layers.1.input_layernorm.weight']);
    expect(llamaFactoryFreezeParams(names, [1], ['mlp'])).toEqual(['model.layers.1.mlp.up_proj.weight']);
    expect(llamaFactoryFreezeParams(names, [1], ['all'], ['norm'])).toEqual(['model.layers.1.mlp.up_proj.weight', 'model.layers.1.input_layernorm.weight', 'model.norm.weight']);
  });
});

describe('expressing an expansion in LLaMA-Factory', () => {
  it('interleave → use_llama_pro, top → +n, bottom → -n', () => {
    const inter = freezeFieldsFor(6, [2, 5]);
    expect(inter.ok && inter.plan.fields).toEqual({ finetuning_type: 'freeze', freeze_trainable_layers: 2, freeze_trainable_modules: 'all', use_llama_pro: true });
    const top = freezeFieldsFor(6, [4, 5]);
    expect(top.ok && top.plan.fields).toEqual({ finetuning_type: 'freeze', freeze_trainable_layers: 2, freeze_trainable_modules: 'all' });
    const bottom = freezeFieldsFor(6, [0, 1]);
    expect(bottom.ok && bottom.plan.fields).toEqual({ finetuning_type: 'freeze', freeze_trainable_layers: -2, freeze_trainable_modules: 'all' });
  });

  it('an explicit layout is refused with what each setting would have trained', () => {
    const r = freezeFieldsFor(6, [1, 4]);
    expect(r.ok).toBe(false);
    const reason = (r as { reason: string }).reason;
    expect(reason).toMatch(/cannot train exactly layers 1, 4 of 6/);
    expect(reason).toMatch(/use_llama_pro: true, freeze_trainable_layers: 2 would train layers 2, 5/);
    expect(reason).toMatch(/freeze_trainable_layers: 2 \(the last 2\) would train layers 4, 5/);
    expect(reason).toMatch(/freeze_trainable_layers: -2 \(the first 2\) would train layers 0, 1/);
  });

  it('an uneven interleave (7 layers, 2 new) is refused: LLaMA-Factory would raise', () => {
    const r = freezeFieldsFor(7, [3, 6]);
    expect(r.ok).toBe(false);
    expect((r as { reason: string }).reason).toMatch(/num_layers 7 is not divisible by freeze_trainable_layers 2/);
  });

  it('full, LoRA (explicit modules, integer alpha) and last:K', () => {
    const full = planLlamaFactoryMethod({ kind: 'full' }, 4, [0, 1, 2, 3]);
    expect(full.ok && full.plan.fields).toEqual({ finetuning_type: 'full' });
    const lora = planLlamaFactoryMethod({ kind: 'lora', rank: 8, alpha: 16, targets: ['q', 'v'] }, 4, []);
    expect(lora.ok && lora.plan.fields).toEqual({ finetuning_type: 'lora', lora_rank: 8, lora_alpha: 16, lora_dropout: 0, lora_target: 'q_proj,v_proj' });
    const badAlpha = planLlamaFactoryMethod({ kind: 'lora', rank: 8, alpha: 12.5, targets: ['q'] }, 4, []);
    expect(badAlpha.ok).toBe(false);
    expect((badAlpha as { reason: string }).reason).toMatch(/lora_alpha is an integer/);
    const last = planLlamaFactoryMethod({ kind: 'last', k: 2 }, 4, [2, 3]);
    expect(last.ok && last.plan.fields).toEqual({ finetuning_type: 'freeze', freeze_trainable_layers: 2, freeze_trainable_modules: 'all' });
    // on an interleaved 4 → 6 model the last 2 *original* blocks are layers 3 and 4: not expressible
    const lastExpanded = planLlamaFactoryMethod({ kind: 'last', k: 2 }, 6, [3, 4]);
    expect(lastExpanded.ok).toBe(false);
    expect((lastExpanded as { reason: string }).reason).toMatch(/last 2 original blocks/);
  });
});

describe('YAML numbers', () => {
  it('floats carry a dot and a signed exponent, so PyYAML does not read them as strings', () => {
    expect(yamlNumber(2e-4, true)).toBe('2.0e-4');
    expect(yamlNumber(1e-8, true)).toBe('1.0e-8');
    expect(yamlNumber(1.5e-5, true)).toBe('1.5e-5');
    expect(yamlNumber(0.95, true)).toBe('0.95');
    expect(yamlNumber(1, true)).toBe('1.0');
    expect(yamlNumber(0, true)).toBe('0.0');
    expect(yamlNumber(128)).toBe('128');
    for (const x of [2e-4, 1e-8, 3e-5, 0.1, 0.95, 1, 0, 1e20, 6.02e23]) expect(yamlNumber(x, true), String(x)).toMatch(PYYAML_FLOAT);
    // what JavaScript would print is not a PyYAML float
    expect('1e-8').not.toMatch(PYYAML_FLOAT);
    expect('0.0002').toMatch(PYYAML_FLOAT);
  });
});
