/**
 * Gradients for training.
 *
 * - tfjs-core's Node bundle registers no gradient functions; @tensorflow/tfjs (same 4.22.0
 *   core) registers all of them when it is loaded. It is loaded once, lazily, by training.
 * - The hot paths get hand-written backward passes built only from plain, non-transposed
 *   matmuls with explicit transposes: the wasm backend sends only those to XNNPACK, and
 *   stock matmul gradients (transposeA/B) fall to a scalar loop (STACK.md: a block step 3.9×
 *   faster). A frozen weight gets no weight gradient at all — not computed, then discarded.
 * - The embedding lookup avoids GatherV2's stock gradient, which needs UnsortedSegmentSum, a
 *   kernel the wasm backend does not have (the head and cross-entropy are head-loss.ts).
 */
import { createRequire } from 'node:module';
import { tf } from './backend.js';

type Tensor = tf.Tensor;

let gradientsLoaded = false;

type GradResult = { value: Tensor; gradFunc: (dy: Tensor, saved: Tensor[]) => Tensor[] };

/** tf.customGrad with the argument types spelled out (tfjs types them loosely). */
export function customGrad<A extends Tensor[]>(f: (...args: [...A, tf.GradSaveFunc]) => GradResult): (...args: A) => Tensor {
  return tf.customGrad(f as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (...args: A) => Tensor;
}

/** Whether ops are being recorded for gradients now (tf.grad / variableGrads, outside a custom gradient's forward). */
export function recordingGradients(): boolean {
  return (tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn();
}

/**
 * Gradients of f at xs against dy, taken inside another gradient's backward pass (a streamed
 * block recomputes itself there). tfjs keeps one tape: a gradient computed at depth 0 replaces
 * it, then frees and clears it, which would lose the outer one's — so it is put back after.
 */
export function gradsWithin(f: (...xs: Tensor[]) => Tensor, xs: Tensor[], dy: Tensor): Tensor[] {
  const state = (tf.engine() as unknown as { state: { activeTape: unknown } }).state;
  const outer = state.activeTape;
  try {
    return tf.grads(f)(xs, dy);
  } finally {
    state.activeTape = outer;
  }
}

/** Registers tfjs's gradient functions (idempotent). */
export function ensureGradients(): void {
  if (gradientsLoaded) return;
  const require = createRequire(import.meta.url);
  require('@tensorflow/tfjs');
  gradientsLoaded = true;
}

/** y = x @ w for a trainable w: dx = dy @ wᵀ, dw = xᵀ @ dy. x: [N, in], w: [in, out] */
const linearBothGrad = customGrad<[Tensor, Tensor]>((x, w, save) => {
  save([x, w]);
  return {
    value: tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D),
    gradFunc: (dy: Tensor, saved: Tensor[]) => {
      const [xs, ws] = saved;
      return [matMulBT(dy, ws), matMulAT(xs, dy)];
    },
  };
});

/**
 * a @ bᵀ. On wasm as an explicit transpose then a plain matmul (the fast XNNPACK route); on
 * other backends the transposed matmul is native.
 */
export function matMulBT(a: Tensor, b: Tensor): Tensor {
  if (tf.getBackend() === 'wasm') return tf.matMul(a as tf.Tensor2D, tf.transpose(b) as tf.Tensor2D);
  return tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, false, true);
}

/** aᵀ @ b, likewise. */
export function matMulAT(a: Tensor, b: Tensor): Tensor {
  if (tf.getBackend() === 'wasm') return tf.matMul(tf.transpose(a) as tf.Tensor2D, b as tf.Tensor2D);
  return tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, true, false);
}

/** y = x @ w for a frozen w: only dx = dy @ wᵀ. */
function linearInputGrad(x: Tensor, w: Tensor): Tensor {
  const f = customGrad<[Tensor]>((xIn) => ({
    value: tf.matMul(xIn as tf.Tensor2D, w as tf.Tensor2D),
    gradFunc: (dy: Tensor) => [matMulBT(dy, w)],
  }));
  return f(x);
}

/**
 * x @ Wᵀ for W in the Hugging Face layout [out, in]: x [N, in] → [N, out]. On wasm as (W @ xᵀ)ᵀ, a
 * plain matmul whose large operand is the left one, so XNNPACK never packs (copies) the weight;
 * the result is bit-identical to x @ (Wᵀ) there. Elsewhere the backend's own transposed matmul.
 */
export function linearOI(x: Tensor, w: Tensor): Tensor {
  if (tf.getBackend() === 'wasm') {
    return tf.tidy(() => tf.transpose(tf.matMul(w as tf.Tensor2D, tf.transpose(x) as tf.Tensor2D)));
  }
  return tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D, false, true);
}

/**
 * dy @ W for W [out, in]: the input gradient of x @ Wᵀ. On wasm through a transient Wᵀ as the
 * left operand (bit-identical to the plain product, and XNNPACK keeps no packed copy of W).
 */
function inputGradOI(dy: Tensor, w: Tensor): Tensor {
  if (tf.getBackend() === 'wasm') return tf.tidy(() => linearOI(dy, tf.transpose(w)));
  return tf.matMul(dy as tf.Tensor2D, w as tf.Tensor2D);
}

/** x @ Wᵀ for a frozen W [out, in] (a streamed block's): only dx = dy @ W. */
export function frozenLinearOI(x: Tensor, w: Tensor): Tensor {
  const f = customGrad<[Tensor]>((xIn) => ({
    value: linearOI(xIn, w),
    gradFunc: (dy: Tensor) => [inputGradOI(dy, w)],
  }));
  return f(x);
}

/** x @ Wᵀ for a trainable W [out, in]: dx = dy @ W, dW = dyᵀ @ x (already [out, in]). */
export const trainableLinearOI = customGrad<[Tensor, Tensor]>((x, w, save) => {
  save([x, w]);
  return {
    value: linearOI(x, w),
    gradFunc: (dy: Tensor, saved: Tensor[]) => {
      const [xs, ws] = saved;
      return [inputGradOI(dy, ws), matMulAT(dy, xs)];
    },
  };
});

/** x @ w with the fast backward; `trainable` says whether w gets a gradient. */
export function fastLinear(x: Tensor, w: Tensor, trainable: boolean): Tensor {
  return trainable ? linearBothGrad(x, w) : linearInputGrad(x, w);
}

/**
 * Embedding lookup embed[ids] whose gradient is dE = onehot(ids)ᵀ @ dy (a plain matmul),
 * used when the embedding itself trains. ids: [N] int32, embed: [V, D] → [N, D]
 */
export const trainableEmbedding = customGrad<[Tensor, Tensor]>((embed, ids, save) => {
  save([ids]);
  return {
    value: tf.gather(embed, ids),
    gradFunc: (dy: Tensor, saved: Tensor[]) => {
      const V = embed.shape[0]!;
      const oneHot = tf.cast(tf.oneHot(saved[0] as tf.Tensor1D, V), 'float32'); // [N, V]
      return [matMulAT(oneHot, dy), tf.zerosLike(saved[0])];
    },
  };
});
