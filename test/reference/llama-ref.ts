/**
 * A second, deliberately naive implementation of the Hugging Face LLaMA/Mistral/Qwen2 forward
 * pass: plain loops in float64 over the weights exactly as they are stored ([out, in]), read
 * straight from config.json and the safetensors files. It shares no math with
 * src/main/engine/model.ts (no tfjs, no transposed weights, no GQA reshaping trick), so the
 * engine is tested against the semantics rather than against itself:
 *
 *   - RMSNorm: x / sqrt(mean(x²) + eps) · w
 *   - RoPE: rotate-half, inv_freq = 1/θ^(2i/hd), llama3 scaling per transformers'
 *     _compute_llama3_parameters
 *   - GQA: query head h reads kv head floor(h / (nh / nkv)) (transformers' repeat_kv)
 *   - causal mask, Mistral/Qwen2 sliding window (q − k < W)
 *   - SwiGLU: down(silu(gate(x)) · up(x)); biases where the config has them
 *   - tied lm_head = embed_tokens
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readShardedIndex, readTensorFloat32 } from '../../src/main/engine/safetensors.js';

type Vec = Float64Array;

/** Float64 weights by HF tensor name, in the HF layout ([out, in] for linears). */
export type RefWeights = Map<string, Float64Array>;

/** config.json as transformers writes it (the fields the forward pass reads). */
export type RefConfig = Record<string, any>;

/** config.json and every tensor of a checkpoint folder, widened to float64. */
export async function loadReference(dir: string): Promise<{ config: RefConfig; weights: RefWeights }> {
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as RefConfig;
  const infos = await readShardedIndex(dir);
  const weights: RefWeights = new Map();
  for (const [name, info] of infos) weights.set(name, Float64Array.from(await readTensorFloat32(info)));
  return { config, weights };
}

function getter(weights: RefWeights): { get(name: string): Float64Array; has(name: string): boolean } {
  return {
    get: (n) => {
      const t = weights.get(n);
      if (!t) throw new Error(`reference: missing ${n}`);
      return t;
    },
    has: (n) => weights.has(n),
  };
}

/** y = W x (+ b), W stored [out, in] row-major. */
function matvec(w: Float64Array, x: Vec, out: number, b?: Float64Array): Vec {
  const inn = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o] : 0;
    const row = o * inn;
    for (let i = 0; i < inn; i++) s += w[row + i] * x[i];
    y[o] = s;
  }
  return y;
}

function rmsnorm(x: Vec, w: Float64Array, eps: number): Vec {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * w[i]);
}

function invFreqs(cfg: Record<string, any>, hd: number): number[] {
  const theta = cfg.rope_theta ?? 10000;
  const inv: number[] = [];
  for (let i = 0; i < hd; i += 2) inv.push(1 / Math.pow(theta, i / hd));
  const rs = cfg.rope_scaling;
  if (!rs || (rs.rope_type ?? rs.type) !== 'llama3') return inv;
  const { factor, low_freq_factor: lo, high_freq_factor: hi, original_max_position_embeddings: old } = rs;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < old / hi) return f; // high frequency: unchanged
    if (wavelen > old / lo) return f / factor; // low frequency: scaled
    const smooth = (old / wavelen - lo) / (hi - lo);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}

/** rotate-half RoPE on one head vector at position p */
function rope(x: Vec, p: number, inv: number[]): Vec {
  const half = x.length / 2;
  const y = new Float64Array(x.length);
  for (let i = 0; i < half; i++) {
    const c = Math.cos(p * inv[i]);
    const s = Math.sin(p * inv[i]);
    y[i] = x[i] * c - x[i + half] * s;
    y[i + half] = x[i + half] * c + x[i] * s;
  }
  return y;
}

/** Logits [T][V] for ids, float64, from a checkpoint folder. */
export async function referenceLogits(dir: string, ids: number[]): Promise<Float64Array[]> {
  const { config, weights } = await loadReference(dir);
  return logitsFromWeights(config, weights, ids);
}

/** Logits [T][V] for ids, float64, from in-memory weights (HF names and layout) and config.json. */
export function logitsFromWeights(cfg: RefConfig, weights: RefWeights, ids: number[]): Float64Array[] {
  const W = getter(weights);
  const D: number = cfg.hidden_size;
  const nh: number = cfg.num_attention_heads;
  const nkv: number = cfg.num_key_value_heads ?? nh;
  const hd: number = cfg.head_dim ?? D / nh;
  const F: number = cfg.intermediate_size;
  const V: number = cfg.vocab_size;
  const L: number = cfg.num_hidden_layers;
  const eps: number = cfg.rms_norm_eps;
  const arch: string = cfg.architectures[0];
  const window: number | null =
    arch === 'MistralForCausalLM' ? cfg.sliding_window ?? null : arch === 'Qwen2ForCausalLM' && cfg.use_sliding_window ? cfg.sliding_window : null;
  const windowFrom = arch === 'Qwen2ForCausalLM' ? cfg.max_window_layers ?? L : 0;
  const inv = invFreqs(cfg, hd);
  const T = ids.length;
  const bias = (n: string) => (W.has(n) ? W.get(n) : undefined);

  const embed = W.get('model.embed_tokens.weight');
  let xs: Vec[] = ids.map((id) => embed.slice(id * D, (id + 1) * D));
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    const qs: Vec[][] = [];
    const ks: Vec[][] = [];
    const vs: Vec[][] = [];
    for (let t = 0; t < T; t++) {
      const n = rmsnorm(xs[t], W.get(`${p}input_layernorm.weight`), eps);
      const q = matvec(W.get(`${p}self_attn.q_proj.weight`), n, nh * hd, bias(`${p}self_attn.q_proj.bias`));
      const k = matvec(W.get(`${p}self_attn.k_proj.weight`), n, nkv * hd, bias(`${p}self_attn.k_proj.bias`));
      const v = matvec(W.get(`${p}self_attn.v_proj.weight`), n, nkv * hd, bias(`${p}self_attn.v_proj.bias`));
      qs.push(Array.from({ length: nh }, (_, h) => rope(q.slice(h * hd, (h + 1) * hd), t, inv)));
      ks.push(Array.from({ length: nkv }, (_, h) => rope(k.slice(h * hd, (h + 1) * hd), t, inv)));
      vs.push(Array.from({ length: nkv }, (_, h) => v.slice(h * hd, (h + 1) * hd)));
    }
    const useWindow = window !== null && l >= windowFrom;
    const next: Vec[] = [];
    for (let t = 0; t < T; t++) {
      const ctx = new Float64Array(nh * hd);
      for (let h = 0; h < nh; h++) {
        const kvh = Math.floor(h / (nh / nkv));
        const visible: number[] = [];
        for (let s = 0; s <= t; s++) if (!useWindow || t - s < window!) visible.push(s);
        const scores = visible.map((s) => {
          let d = 0;
          for (let i = 0; i < hd; i++) d += qs[t][h][i] * ks[s][kvh][i];
          return d / Math.sqrt(hd);
        });
        const m = Math.max(...scores);
        const e = scores.map((x) => Math.exp(x - m));
        const z = e.reduce((a, b) => a + b, 0);
        visible.forEach((s, j) => {
          for (let i = 0; i < hd; i++) ctx[h * hd + i] += (e[j] / z) * vs[s][kvh][i];
        });
      }
      const attn = matvec(W.get(`${p}self_attn.o_proj.weight`), ctx, D, bias(`${p}self_attn.o_proj.bias`));
      const hsum = xs[t].map((v, i) => v + attn[i]);
      const m = rmsnorm(hsum, W.get(`${p}post_attention_layernorm.weight`), eps);
      const g = matvec(W.get(`${p}mlp.gate_proj.weight`), m, F, bias(`${p}mlp.gate_proj.bias`));
      const u = matvec(W.get(`${p}mlp.up_proj.weight`), m, F, bias(`${p}mlp.up_proj.bias`));
      const act = g.map((x, i) => (x / (1 + Math.exp(-x))) * u[i]);
      const mlp = matvec(W.get(`${p}mlp.down_proj.weight`), act, D, bias(`${p}mlp.down_proj.bias`));
      next.push(hsum.map((v, i) => v + mlp[i]));
    }
    xs = next;
  }
  const head = cfg.tie_word_embeddings ? embed : W.get('lm_head.weight');
  return xs.map((x) => matvec(head, rmsnorm(x, W.get('model.norm.weight'), eps), V));
}

/** nll[t] = −log softmax(logits[t])[ids[t+1]] for one row's logits. */
function nllFromLogits(logits: Float64Array[], ids: number[]): number[] {
  const nll: number[] = [];
  for (let t = 0; t + 1 < ids.length; t++) {
    const row = logits[t];
    let m = -Infinity;
    for (const v of row) m = Math.max(m, v);
    let z = 0;
    for (const v of row) z += Math.exp(v - m);
    nll.push(-(row[ids[t + 1]] - m - Math.log(z)));
  }
  return nll;
}

/** nll[i] = −log softmax(logits[i])[ids[i+1]], float64. */
export async function referenceNll(dir: string, ids: number[]): Promise<number[]> {
  return nllFromLogits(await referenceLogits(dir, ids), ids);
}

/** Per-token NLL of one row from in-memory weights. */
export function nllFromWeights(cfg: RefConfig, weights: RefWeights, ids: number[]): number[] {
  return nllFromLogits(logitsFromWeights(cfg, weights, ids), ids);
}

/**
 * The training loss: mean next-token cross-entropy over every predicted position of every row
 * (rows of equal length, so this is also the mean of the rows' means), float64.
 */
export function meanLossFromWeights(cfg: RefConfig, weights: RefWeights, batch: number[][]): number {
  let sum = 0;
  let count = 0;
  for (const ids of batch) {
    for (const v of nllFromWeights(cfg, weights, ids)) {
      sum += v;
      count++;
    }
  }
  return sum / count;
}
