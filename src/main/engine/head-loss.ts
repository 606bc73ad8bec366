/**
 * The LM head and the cross-entropy of training as one custom-gradient op, computed over the
 * vocabulary in chunks, so that the [N, V] logits (and their softmax, one-hot and gradient,
 * each as large) never sit in memory whole: at most one chunk's [N, Vc] at a time.
 *
 *   forward:  for each chunk c of the vocabulary: l_c = x W_cᵀ            [N, Vc]
 *             running max m and sum s of exp(l − m) (an online log-sum-exp), and the target's logit
 *             loss = mean_n (m_n + log s_n − l[n, t_n])
 *   backward: for each chunk, recompute l_c, then dl_c = (exp(l_c − lse) − onehot_c) · dy / N
 *             dx += dl_c W_c;  dW_c = dl_cᵀ x  (only when the head trains)
 *
 * When the whole vocabulary fits one chunk (N·V up to 16 Mi logits: a 32000-token vocabulary at
 * batch 4 × 128), one chunk's softmax is kept for the backward pass instead of recomputed.
 *
 * The head is read as rows of its [V, D] weight (the Hugging Face layout of lm_head, and the
 * embedding itself when tied) from the weight store: streamed heads are widened one chunk at a
 * time.
 */
import { tf } from './backend.js';
import { linearOI } from './autodiff.js';
import { LOSS_CHUNK_ELEMENTS } from '../../shared/memory-plan.js';

type Tensor = tf.Tensor;

export interface HeadSource {
  vocab: number;
  /** rows v0..v1 of the head, [v1 − v0, D] float32 */
  rows(v0: number, v1: number): tf.Tensor2D;
  /** gives back what rows() returned */
  release(t: tf.Tensor2D): void;
  /** the head's [V, D] variable when it trains (an untied head, or the tied embedding); else null */
  trainable: tf.Variable | null;
  /** the most rows one call to rows() may ask for (a head kept in blocks of rows: WebGPU's binding limit) */
  maxRows?: number | null;
}

/** Vocabulary rows per chunk for N positions: about LOSS_CHUNK_ELEMENTS logits at a time. */
export function lossChunkRows(n: number, vocab: number): number {
  return Math.max(1, Math.min(vocab, Math.floor(LOSS_CHUNK_ELEMENTS / Math.max(1, n))));
}

/**
 * Mean next-token cross-entropy of the logits x Wᵀ against `targets`. x: [N, D] float32,
 * targets: [N] int32. `chunkRows` overrides the chunk size (tests use it to force many chunks).
 */
export function headCrossEntropy(x: tf.Tensor2D, targets: tf.Tensor1D, head: HeadSource, chunkRows?: number): tf.Scalar {
  const [N] = x.shape;
  const V = head.vocab;
  const step = Math.max(2, Math.min(chunkRows ?? lossChunkRows(N, V), head.maxRows ?? Infinity));
  const chunks: [number, number][] = [];
  for (let v0 = 0; v0 < V; v0 += step) chunks.push([v0, Math.min(V, v0 + step)]);
  // tf.oneHot needs a depth of 2 or more: a last chunk of one row joins the one before
  if (chunks.length > 1 && chunks[chunks.length - 1][1] - chunks[chunks.length - 1][0] < 2) chunks[chunks.length - 2][1] = chunks.pop()![1];

  /** the chunk's logits, with the targets that fall in it: local index and whether it is there */
  const chunkLogits = (xIn: Tensor, v0: number, v1: number) => {
    const w = head.rows(v0, v1);
    try {
      return linearOI(xIn, w) as tf.Tensor2D; // [N, Vc]
    } finally {
      head.release(w);
    }
  };
  // (in float32, exact for ids < 2^24: wasm's clip kernel reads int32 tensors as float32 bits)
  const targetsIn = (tg: Tensor, v0: number, v1: number) => {
    const local = tf.sub(tf.cast(tg, 'float32'), v0);
    const inside = tf.logicalAnd(tf.greaterEqual(local, 0), tf.less(local, v1 - v0));
    return { local: tf.cast(tf.clipByValue(local, 0, v1 - v0 - 1), 'int32'), inside, localF: local };
  };
  /** the targets' one-hot rows in this chunk: a row of zeros for a target in another chunk (index −1) */
  const oneHotIn = (tg: Tensor, v0: number, v1: number) => {
    const { localF, inside } = targetsIn(tg, v0, v1);
    return tf.oneHot(tf.cast(tf.where(inside, localF, tf.fill(localF.shape, -1)), 'int32') as tf.Tensor1D, v1 - v0);
  };

  const forward = (xIn: Tensor, tg: Tensor): { loss: tf.Scalar; lse: tf.Tensor1D } => {
    let m: Tensor | null = null; // [N] running max
    let s: Tensor | null = null; // [N] running Σ exp(l − m)
    let picked: Tensor = tf.zeros([N]); // [N] the target's logit
    for (const [v0, v1] of chunks) {
      const next = tf.tidy(() => {
        const l = chunkLogits(xIn, v0, v1);
        const cm = tf.max(l, 1);
        let mNew: Tensor;
        let sNew: Tensor;
        if (m === null || s === null) {
          mNew = cm;
          sNew = tf.sum(tf.exp(tf.sub(l, tf.reshape(cm, [N, 1]))), 1);
        } else {
          mNew = tf.maximum(m, cm);
          sNew = tf.add(tf.mul(s, tf.exp(tf.sub(m, mNew))), tf.sum(tf.exp(tf.sub(l, tf.reshape(mNew, [N, 1]))), 1));
        }
        const { local, inside } = targetsIn(tg, v0, v1);
        const flat = tf.add(tf.mul(tf.range(0, N, 1, 'int32'), tf.scalar(v1 - v0, 'int32')), local);
        const here = tf.gather(tf.reshape(l, [N * (v1 - v0)]), flat);
        return [mNew, sNew, tf.add(picked, tf.where(inside, here, tf.zerosLike(here)))];
      });
      for (const t of [m, s, picked]) t?.dispose();
      [m, s, picked] = next;
    }
    const out = tf.tidy(() => {
      const lse = tf.add(m!, tf.log(s!)) as tf.Tensor1D;
      return { loss: tf.mean(tf.sub(lse, picked)) as tf.Scalar, lse };
    });
    for (const t of [m, s, picked]) t?.dispose();
    return out;
  };

  const backward = (dy: Tensor, xIn: Tensor, lse: Tensor, tg: Tensor): Tensor[] => {
    const scale = tf.div(dy, N);
    let dx: Tensor = tf.zerosLike(xIn);
    const dW: Tensor[] = [];
    for (const [v0, v1] of chunks) {
      const [dxPart, dwPart] = tf.tidy(() => {
        const w = head.rows(v0, v1);
        try {
          const l = linearOI(xIn, w);
          const p = tf.exp(tf.sub(l, tf.reshape(lse, [N, 1])));
          const dl = tf.mul(tf.sub(p, oneHotIn(tg, v0, v1)), scale) as tf.Tensor2D; // [N, Vc]
          const dxC = tf.matMul(dl, w); // [N, D]
          const dwC = head.trainable ? tf.matMul(tf.transpose(dl) as tf.Tensor2D, xIn as tf.Tensor2D) : null; // [Vc, D]
          return dwC ? [dxC, dwC] : [dxC];
        } finally {
          head.release(w);
        }
      });
      const sum = tf.add(dx, dxPart);
      dx.dispose();
      dxPart.dispose();
      dx = sum;
      if (dwPart) dW.push(dwPart);
    }
    scale.dispose();
    if (!head.trainable) return [dx];
    const dw = dW.length === 1 ? dW[0] : tf.concat(dW, 0);
    if (dW.length > 1) for (const t of dW) t.dispose();
    return [dx, dw];
  };

  /**
   * The whole vocabulary in one chunk (the usual case: N·V up to LOSS_CHUNK_ELEMENTS): the softmax
   * kernel (several times faster than Exp) gives p, and log-sum-exp = max − log(max p) (max p ≥ 1/V:
   * it cannot underflow); p is kept for the backward pass, which then needs no second head product.
   */
  const wholeForward = (xIn: Tensor, tg: Tensor): { loss: tf.Scalar; p: Tensor } =>
    tf.tidy(() => {
      const l = chunkLogits(xIn, 0, V); // [N, V]
      const p = tf.softmax(l);
      const lse = tf.sub(tf.max(l, 1), tf.log(tf.max(p, 1)));
      const flat = tf.add(tf.mul(tf.range(0, N, 1, 'int32'), tf.scalar(V, 'int32')), tf.cast(tg, 'int32'));
      const picked = tf.gather(tf.reshape(l, [N * V]), flat);
      return { loss: tf.mean(tf.sub(lse, picked)) as tf.Scalar, p };
    });
  const wholeBackward = (dy: Tensor, xIn: Tensor, p: Tensor, tg: Tensor): Tensor[] =>
    tf.tidy(() => {
      const w = head.rows(0, V);
      try {
        const dl = tf.mul(tf.sub(p, tf.oneHot(tf.cast(tg, 'int32') as tf.Tensor1D, V)), tf.div(dy, N)) as tf.Tensor2D; // [N, V]
        const dx = tf.matMul(dl, w); // [N, D]
        return head.trainable ? [dx, tf.matMul(tf.transpose(dl) as tf.Tensor2D, xIn as tf.Tensor2D)] : [dx];
      } finally {
        head.release(w);
      }
    });

  const op = tf.customGrad(((...args: unknown[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const xIn = args[0] as Tensor;
    // what the backward pass reads must be saved: anything else made in the forward is freed after it
    if (chunks.length === 1) {
      const { loss, p } = wholeForward(xIn, targets);
      save([xIn, p, targets]);
      return { value: loss, gradFunc: (dy: Tensor, saved: Tensor[]) => wholeBackward(dy, saved[0], saved[1], saved[2]) };
    }
    const { loss, lse } = forward(xIn, targets);
    save([xIn, lse, targets]);
    return { value: loss, gradFunc: (dy: Tensor, saved: Tensor[]) => backward(dy, saved[0], saved[1], saved[2]) };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  const inputs: Tensor[] = head.trainable ? [x, head.trainable] : [x];
  return (op as unknown as (...xs: Tensor[]) => tf.Scalar)(...inputs);
}
