/**
 * AdamW (decoupled weight decay, Loshchilov & Hutter), exactly as torch.optim.AdamW computes
 * it, with linear warmup then cosine decay, and global-norm gradient clipping. State is kept
 * only for trainable parameters: a frozen weight has no m, no v.
 *
 *   p ← p · (1 − lr·wd)
 *   m ← β1·m + (1 − β1)·g          v ← β2·v + (1 − β2)·g²
 *   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
 */
import { DEFAULT_ADAMW as SHARED_DEFAULT_ADAMW } from '../../shared/jobs.js';
import { tf } from './backend.js';
import type { Param } from './trainable.js';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const DEFAULT_ADAMW: AdamWOptions = SHARED_DEFAULT_ADAMW;

export interface ScheduleOptions {
  lr: number;
  warmup: number;
  totalSteps: number;
  /** the learning rate at the end of the cosine, as a fraction of lr */
  minLrRatio: number;
}

/**
 * Learning rate for optimizer step `step` (0-based): linear warmup over `warmup` steps
 * (lr·(step+1)/warmup), then cosine from lr down to minLrRatio·lr at the last step.
 */
export function learningRate(step: number, s: ScheduleOptions): number {
  if (s.warmup > 0 && step < s.warmup) return (s.lr * (step + 1)) / s.warmup;
  const decaySteps = Math.max(1, s.totalSteps - s.warmup);
  const progress = Math.min(1, Math.max(0, (step - s.warmup) / decaySteps));
  const min = s.lr * s.minLrRatio;
  return min + 0.5 * (s.lr - min) * (1 + Math.cos(Math.PI * progress));
}

/**
 * The gradients' global L2 norm, and the factor that scales it to at most maxNorm (torch's
 * clip_coef = min(max_norm / (total_norm + 1e-6), 1); null for maxNorm 0 = no clipping).
 * AdamW.apply takes the factor, so that no clipped copy of every gradient is made.
 */
export function globalNormClip(grads: tf.Tensor[], maxNorm: number): { norm: tf.Scalar; scale: tf.Scalar | null } {
  const norm = tf.tidy(() => tf.sqrt(tf.addN(grads.map((g) => tf.sum(tf.square(g))))) as tf.Scalar);
  if (!(maxNorm > 0)) return { norm, scale: null };
  return { norm, scale: tf.tidy(() => tf.minimum(tf.div(maxNorm, tf.add(norm, 1e-6)), 1) as tf.Scalar) };
}

/** Scales gradients so their global L2 norm is at most maxNorm (0 = no clipping). Returns the norm before clipping. */
export function clipByGlobalNorm(grads: tf.Tensor[], maxNorm: number): { grads: tf.Tensor[]; norm: tf.Scalar } {
  const { norm, scale } = globalNormClip(grads, maxNorm);
  if (!scale) return { grads, norm };
  const clipped = tf.tidy(() => grads.map((g) => tf.mul(g, scale)));
  scale.dispose();
  return { grads: clipped, norm };
}

export interface AdamWState {
  step: number;
  m: Map<string, tf.Tensor>;
  v: Map<string, tf.Tensor>;
}

export class AdamW {
  readonly options: AdamWOptions;
  step = 0;
  readonly m = new Map<string, tf.Variable>();
  readonly v = new Map<string, tf.Variable>();
  private readonly params: Param[];

  constructor(params: Param[], options: AdamWOptions) {
    this.params = params;
    this.options = options;
    for (const p of params) {
      // tidy frees the zeros the variables were made from (a variable is not tracked by tidy)
      this.m.set(p.name, tf.tidy(() => tf.variable(tf.zerosLike(p.variable), false)));
      this.v.set(p.name, tf.tidy(() => tf.variable(tf.zerosLike(p.variable), false)));
    }
  }

  /** Bytes held by the optimiser state (two float32 moments per trainable value). */
  stateBytes(): number {
    return this.params.reduce((n, p) => n + 2 * 4 * p.variable.size, 0);
  }

  /** One update with gradients aligned with `params`, each multiplied by `gradScale` first when given (clipping). */
  apply(grads: tf.Tensor[], lr: number, gradScale: tf.Scalar | null = null): void {
    this.step += 1;
    const { beta1, beta2, eps, weightDecay } = this.options;
    const bc1 = 1 - Math.pow(beta1, this.step);
    const bc2 = 1 - Math.pow(beta2, this.step);
    const stepSize = lr / bc1;
    const bc2Sqrt = Math.sqrt(bc2);
    this.params.forEach((p, i) => {
      tf.tidy(() => {
        const g = gradScale ? tf.mul(grads[i], gradScale) : grads[i];
        const m = this.m.get(p.name)!;
        const v = this.v.get(p.name)!;
        let value: tf.Tensor = p.variable;
        if (p.decay && weightDecay > 0) value = tf.mul(value, 1 - lr * weightDecay);
        const mNew = tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1));
        const vNew = tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2));
        const denom = tf.add(tf.div(tf.sqrt(vNew), bc2Sqrt), eps);
        m.assign(mNew);
        v.assign(vNew);
        p.variable.assign(tf.sub(value, tf.mul(tf.div(mNew, denom), stepSize)));
      });
    });
  }

  /** Restores moments and step count saved by a checkpoint. */
  load(state: AdamWState): void {
    this.step = state.step;
    for (const p of this.params) {
      const m = state.m.get(p.name);
      const v = state.v.get(p.name);
      if (!m || !v) throw new Error(`optimizer state has no moments for ${p.name}`);
      this.m.get(p.name)!.assign(m);
      this.v.get(p.name)!.assign(v);
    }
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
  }
}
