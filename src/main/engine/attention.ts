/**
 * Causal scaled dot-product attention, softmax(q kᵀ / √hd + mask) v, with a hand-written
 * backward pass.
 *
 * Why: on the wasm backend only non-transposed, batch-1 matmuls reach XNNPACK; batched
 * matmuls (and every stock BatchMatMul gradient, which transposes) fall to a scalar loop.
 * Profiling a d=128 training step showed 84% of its time in those. Here every product is a
 * plain 2-D matmul on one (sequence, kv head) slice, with explicit transposes. Other backends
 * run the batched form, which they do natively.
 *
 *   forward:  S = q kᵀ·c + M,  P = softmax(S),  O = P v
 *   backward: dv = Pᵀ dO,  dP = dO vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),
 *             dq = dS k·c,  dk = dSᵀ q·c
 */
import { tf } from './backend.js';
import { customGrad, recordingGradients as recording } from './autodiff.js';

type Tensor = tf.Tensor;


/** inference: attention scores of at most about this many float32 values at a time (a long context's rows are chunked) */
let SCORE_CHUNK_ELEMENTS = 4 * 2 ** 20;

/** Sets the inference score chunk (tests make it small to compare chunked and whole). Returns the previous one. */
export function setScoreChunkElements(n: number): number {
  const old = SCORE_CHUNK_ELEMENTS;
  SCORE_CHUNK_ELEMENTS = n;
  return old;
}

const t2 = (x: Tensor) => tf.transpose(x) as tf.Tensor2D;
/** [N, a, b] → N tensors [a, b] (split + reshape: much faster than unstack on wasm) */
const slices = (x: Tensor, n: number, a: number, b: number): Tensor[] => tf.split(tf.reshape(x, [n, a * b]), n, 0).map((t) => tf.reshape(t, [a, b]));
const mm = (a: Tensor, b: Tensor) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D);

/**
 * q: [B, H, R, hd] (R query rows per head: the g grouped query heads × T), k, v: [B, H, S, hd],
 * mask: [R, S] additive. Returns [B, H, R, hd].
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor): Tensor {
  const [B, H, R, hd] = q.shape as [number, number, number, number];
  const S = k.shape[2]!;
  const scale = 1 / Math.sqrt(hd);
  if (tf.getBackend() !== 'wasm') {
    const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), scale), mask);
    return tf.matMul(tf.softmax(scores, -1), v);
  }
  if (!recording()) {
    // no gradient wanted: one slice's scores at a time, nothing kept for a backward pass, and a
    // long context's query rows a chunk at a time (rows are independent: the same values)
    const qs = slices(q, B * H, R, hd);
    const ks = slices(k, B * H, S, hd);
    const vs = slices(v, B * H, S, hd);
    const rowsPer = Math.max(1, Math.floor(SCORE_CHUNK_ELEMENTS / S));
    const rowsOf = (qi: Tensor, kT: Tensor, vi: Tensor, maskRows: Tensor) => mm(tf.softmax(tf.add(tf.mul(mm(qi, kT), scale), maskRows), -1), vi);
    // (a few query rows, as in decoding: the slices' intermediates are small, no scope of their own)
    if (R * S <= 65536) return tf.reshape(tf.stack(qs.map((qi, i) => rowsOf(qi, t2(ks[i]), vs[i], mask))), [B, H, R, hd]);
    const outs = qs.map((qi, i) =>
      tf.tidy(() => {
        const kT = t2(ks[i]);
        if (R <= rowsPer) return rowsOf(qi, kT, vs[i], mask);
        const parts: Tensor[] = [];
        for (let r0 = 0; r0 < R; r0 += rowsPer) {
          const n = Math.min(rowsPer, R - r0);
          parts.push(tf.tidy(() => rowsOf(tf.slice(qi, [r0, 0], [n, hd]), kT, vs[i], tf.slice(mask, [r0, 0], [n, S]))));
        }
        return tf.concat(parts, 0);
      }),
    );
    return tf.reshape(tf.stack(outs), [B, H, R, hd]);
  }
  const f = customGrad<[Tensor, Tensor, Tensor]>((qIn, kIn, vIn, save) => {
    const qs = slices(qIn, B * H, R, hd);
    const ks = slices(kIn, B * H, S, hd);
    const vs = slices(vIn, B * H, S, hd);
    const probs: Tensor[] = [];
    const outs: Tensor[] = [];
    for (let i = 0; i < qs.length; i++) {
      const p = tf.softmax(tf.add(tf.mul(mm(qs[i], t2(ks[i])), scale), mask), -1); // [R, S]
      probs.push(p);
      outs.push(mm(p, vs[i])); // [R, hd]
    }
    const pAll = tf.stack(probs); // [BH, R, S]
    save([qIn, kIn, vIn, pAll]);
    return {
      value: tf.reshape(tf.stack(outs), [B, H, R, hd]),
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const [qS, kS, vS, pS] = saved;
        const q2 = slices(qS, B * H, R, hd);
        const k2 = slices(kS, B * H, S, hd);
        const v2 = slices(vS, B * H, S, hd);
        const p2 = slices(pS, B * H, R, S);
        const dO = slices(dy, B * H, R, hd);
        const dq: Tensor[] = [];
        const dk: Tensor[] = [];
        const dv: Tensor[] = [];
        for (let i = 0; i < q2.length; i++) {
          const p = p2[i];
          dv.push(mm(t2(p), dO[i])); // [S, hd]
          const dP = mm(dO[i], t2(v2[i])); // [R, S]
          const dS = tf.mul(p, tf.sub(dP, tf.sum(tf.mul(dP, p), -1, true))); // [R, S]
          dq.push(tf.mul(mm(dS, k2[i]), scale)); // [R, hd]
          dk.push(tf.mul(mm(t2(dS), q2[i]), scale)); // [S, hd]
        }
        return [
          tf.reshape(tf.stack(dq), [B, H, R, hd]),
          tf.reshape(tf.stack(dk), [B, H, S, hd]),
          tf.reshape(tf.stack(dv), [B, H, S, hd]),
        ];
      },
    };
  });
  return f(q, k, v);
}
