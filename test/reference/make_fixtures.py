#!/usr/bin/env python3
"""Builds tiny random-weight checkpoints in the exact Hugging Face on-disk layout and their
expected outputs, computed by hf_reference.py (a float32 PyTorch transcription of transformers).

Usage:  /usr/bin/python3 test/reference/make_fixtures.py [--check]

Writes test/fixtures/hf-reference/<name>/{config.json, model.safetensors | model-0000k-of-0000n.safetensors +
model.safetensors.index.json, expected.json}. Deterministic: numpy weights from a fixed seed per fixture,
ids from the same generator. With --check, nothing is written; the expected values are recomputed from the
files on disk and compared with the stored expected.json.
"""

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep test/reference free of __pycache__
sys.path.insert(0, HERE)
import hf_reference as ref  # noqa: E402

OUT_ROOT = os.path.normpath(os.path.join(HERE, "..", "fixtures", "hf-reference"))
TRANSFORMERS_VERSION = "4.46.3"
N_GREEDY = 8
# Greedy continuations stop before a step whose top1-top2 logit margin is below this.
MIN_GREEDY_MARGIN = 0.01

_TORCH_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}

FIXTURES = [
    dict(
        name="llama-gqa-tied-f32",
        seed=1001,
        arch="LlamaForCausalLM",
        model_type="llama",
        vocab_size=128,
        hidden_size=32,
        intermediate_size=88,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=None,  # omitted from config.json (older Llama-2 style): head_dim = 32 / 4 = 8
        tie_word_embeddings=True,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        max_position_embeddings=512,
        dtype="F32",
        # hundreds of positions: RoPE angles reach 384 * inv_freq, so rope_theta * 1.001 turns the slow
        # frequencies by ~1e-2 rad and moves the NLL by far more than the test's tolerance
        n_ids=384,
    ),
    dict(
        name="llama3-ropescaling-bf16",
        seed=1002,
        arch="LlamaForCausalLM",
        model_type="llama",
        vocab_size=192,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,  # explicit, != 48 / 4 = 12: q_proj is [64, 48], o_proj is [48, 64]
        tie_word_embeddings=False,
        rope_theta=500000.0,
        rope_scaling={
            "factor": 8.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 16,
            "rope_type": "llama3",
        },
        rms_norm_eps=1e-5,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        dtype="BF16",
        n_ids=64,
    ),
    dict(
        name="llama3-rope-allbands-f32",
        seed=1006,
        arch="LlamaForCausalLM",
        model_type="llama",
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,  # explicit and equal to 32 / 2
        tie_word_embeddings=False,
        rope_theta=500000.0,
        # original_max_position_embeddings=64 -> high_freq_wavelen 16, low_freq_wavelen 64: with head_dim 16 the
        # wavelengths are 6.28 (kept), 32.3 (medium band, smoothed) and >= 167 (divided by factor).
        rope_scaling={
            "factor": 8.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 64,
            "rope_type": "llama3",
        },
        rms_norm_eps=1e-5,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=[2, 3, 4],  # list form, as in Llama 3.1 configs
        dtype="F32",
        n_ids=256,  # 4x original_max_position_embeddings: the positions llama3 scaling exists for
    ),
    dict(
        name="mistral-mha-f16-sharded",
        seed=1003,
        arch="MistralForCausalLM",
        model_type="mistral",
        vocab_size=160,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=12,
        tie_word_embeddings=False,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        max_position_embeddings=1024,
        sliding_window=24,
        dtype="F16",
        n_ids=56,
        shards=2,
    ),
    dict(
        name="qwen2-bias-gqa-f32",
        seed=1004,
        arch="Qwen2ForCausalLM",
        model_type="qwen2",
        vocab_size=160,
        hidden_size=48,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,  # groups of 3 query heads per kv head
        head_dim=None,  # Qwen2 configs carry no head_dim: 48 / 6 = 8
        tie_word_embeddings=True,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        max_position_embeddings=32768,
        # As in real Qwen2/2.5 checkpoints: a sliding_window value is present but use_sliding_window is false,
        # and the value is >= any sequence length, so it has no effect under any transformers version.
        use_sliding_window=False,
        sliding_window=32768,
        max_window_layers=2,
        bos_token_id=159,  # Qwen2 uses the same id for bos and eos
        eos_token_id=159,
        dtype="F32",
        n_ids=52,
    ),
    dict(
        name="llama-attnbias-mlpbias-f16",
        seed=1005,
        arch="LlamaForCausalLM",
        model_type="llama",
        vocab_size=144,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,  # MQA
        head_dim=8,
        tie_word_embeddings=False,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        max_position_embeddings=256,
        attention_bias=True,
        mlp_bias=True,
        dtype="F16",
        n_ids=44,
    ),
    dict(
        name="llama-small-activations-f32",
        seed=1007,
        arch="LlamaForCausalLM",
        model_type="llama",
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=None,
        tie_word_embeddings=False,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        max_position_embeddings=128,
        dtype="F32",
        n_ids=48,
        # Embeddings of std 2e-3 (mean square 4e-6) and o_proj/down_proj scaled by 5e-3, so the residual
        # stream stays at a mean square of order eps: every RMSNorm, the final one included, divides by
        # sqrt(mean(x^2) + eps) with eps a large part of it, and an engine using another eps is far off.
        embed_std=0.002,
        residual_scale=0.005,
    ),
]


def make_config(spec: dict) -> dict:
    mt = spec["model_type"]
    cfg = {
        "architectures": [spec["arch"]],
        "attention_dropout": 0.0,
        "bos_token_id": spec.get("bos_token_id", 1),
        "eos_token_id": spec.get("eos_token_id", 2),
        "hidden_act": "silu",
        "hidden_size": spec["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": spec["intermediate_size"],
        "max_position_embeddings": spec["max_position_embeddings"],
        "model_type": mt,
        "num_attention_heads": spec["num_attention_heads"],
        "num_hidden_layers": spec["num_hidden_layers"],
        "num_key_value_heads": spec["num_key_value_heads"],
        "rms_norm_eps": spec["rms_norm_eps"],
        "rope_theta": spec["rope_theta"],
        "tie_word_embeddings": spec["tie_word_embeddings"],
        "torch_dtype": _TORCH_DTYPE[spec["dtype"]],
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": spec["vocab_size"],
    }
    if spec.get("head_dim") is not None:
        cfg["head_dim"] = spec["head_dim"]
    if mt == "llama":
        cfg["attention_bias"] = spec.get("attention_bias", False)
        cfg["mlp_bias"] = spec.get("mlp_bias", False)
        cfg["pretraining_tp"] = 1
        cfg["rope_scaling"] = spec.get("rope_scaling")
    elif mt == "mistral":
        cfg["sliding_window"] = spec["sliding_window"]
    elif mt == "qwen2":
        cfg["use_sliding_window"] = spec["use_sliding_window"]
        cfg["sliding_window"] = spec["sliding_window"]
        cfg["max_window_layers"] = spec["max_window_layers"]
        cfg["rope_scaling"] = None
    return cfg


def make_weights(spec: dict, rng: np.random.Generator) -> dict:
    """Returns name -> float32 array (weights [out, in]), in module order."""
    H = spec["hidden_size"]
    I = spec["intermediate_size"]
    V = spec["vocab_size"]
    nh = spec["num_attention_heads"]
    nkv = spec["num_key_value_heads"]
    hd = spec["head_dim"] or H // nh
    mt = spec["model_type"]
    attn_bias = mt == "llama" and spec.get("attention_bias", False)
    mlp_bias = mt == "llama" and spec.get("mlp_bias", False)
    qkv_bias = mt == "qwen2" or attn_bias
    o_bias = attn_bias

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def norm_weight():
        return (1.0 + rng.standard_normal(H) * 0.15).astype(np.float32)

    # q.k scores have std ~ std_qk^2 * H; aim for ~1.5 so softmax is neither flat nor one-hot.
    std_qk = float(np.sqrt(1.5 / H))
    w = {"model.embed_tokens.weight": normal((V, H), spec.get("embed_std", 0.4))}
    # scales the two branch outputs (o_proj, down_proj and their biases), i.e. what each block adds
    rs = spec.get("residual_scale", 1.0)
    for i in range(spec["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm_weight()
        w[p + "self_attn.q_proj.weight"] = normal((nh * hd, H), std_qk)
        w[p + "self_attn.k_proj.weight"] = normal((nkv * hd, H), std_qk)
        w[p + "self_attn.v_proj.weight"] = normal((nkv * hd, H), 0.2)
        w[p + "self_attn.o_proj.weight"] = normal((H, nh * hd), 0.15 * rs)
        if qkv_bias:
            w[p + "self_attn.q_proj.bias"] = normal((nh * hd,), 0.3)
            w[p + "self_attn.k_proj.bias"] = normal((nkv * hd,), 0.3)
            w[p + "self_attn.v_proj.bias"] = normal((nkv * hd,), 0.2)
        if o_bias:
            w[p + "self_attn.o_proj.bias"] = normal((H,), 0.2 * rs)
        w[p + "post_attention_layernorm.weight"] = norm_weight()
        w[p + "mlp.gate_proj.weight"] = normal((I, H), 0.2)
        w[p + "mlp.up_proj.weight"] = normal((I, H), 0.2)
        w[p + "mlp.down_proj.weight"] = normal((H, I), 0.15 * rs)
        if mlp_bias:
            w[p + "mlp.gate_proj.bias"] = normal((I,), 0.2)
            w[p + "mlp.up_proj.bias"] = normal((I,), 0.2)
            w[p + "mlp.down_proj.bias"] = normal((H,), 0.2 * rs)
    w["model.norm.weight"] = norm_weight()
    if not spec["tie_word_embeddings"]:
        w["lm_head.weight"] = normal((V, H), 0.35)
    return w


def stored_values(arr: np.ndarray, dtype: str) -> np.ndarray:
    """What a reader gets back after storing `arr` with `dtype` (used only for size bookkeeping)."""
    if dtype == "F16":
        return arr.astype(np.float16).astype(np.float32)
    if dtype == "BF16":
        return ref.bf16_bits_to_float32(ref.float32_to_bf16_bits(arr))
    return arr


def write_checkpoint(spec: dict, weights: dict, out_dir: str):
    dtype = spec["dtype"]
    metadata = {"format": "pt"}
    shards = spec.get("shards", 1)
    for fn in os.listdir(out_dir):
        if fn.endswith(".safetensors") or fn == "model.safetensors.index.json":
            os.remove(os.path.join(out_dir, fn))
    if shards == 1:
        ref.write_safetensors(os.path.join(out_dir, "model.safetensors"), {k: (dtype, v) for k, v in weights.items()}, metadata)
        return
    # Split like save_pretrained does: walk the state dict in module order and cut into `shards` pieces of
    # roughly equal byte size.
    names = list(weights.keys())
    sizes = [weights[n].size for n in names]
    total = sum(sizes)
    groups = [[] for _ in range(shards)]
    acc = 0
    for n, s in zip(names, sizes):
        k = min(shards - 1, int(acc * shards // total))
        groups[k].append(n)
        acc += s
    weight_map = {}
    total_size = 0
    for k, group in enumerate(groups):
        fn = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        total_size += ref.write_safetensors(os.path.join(out_dir, fn), {n: (dtype, weights[n]) for n in group}, metadata)
        for n in group:
            weight_map[n] = fn
    index = {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")


def compute_expected(out_dir: str, ids: list) -> dict:
    model = ref.load_model(out_dir)
    r = ref.score(model, ids)
    cont, margins = ref.greedy(model, ids, N_GREEDY, min_margin=MIN_GREEDY_MARGIN)
    return {
        "ids": r["ids"],
        "nll": r["nll"],
        "mean_nll": r["mean_nll"],
        "last_logits": r["last_logits"],
        "argmax": r["argmax"],
        "argmax_margin": r["argmax_margin"],
        "greedy_continuation": cont,
        "greedy_margin": margins,
    }


def main(argv):
    import torch

    torch.set_num_threads(1)
    check = "--check" in argv
    os.makedirs(OUT_ROOT, exist_ok=True)
    worst = 0.0
    for spec in FIXTURES:
        out_dir = os.path.join(OUT_ROOT, spec["name"])
        rng = np.random.default_rng(spec["seed"])
        weights = make_weights(spec, rng)
        ids = [int(x) for x in rng.integers(0, spec["vocab_size"], size=spec["n_ids"])]
        if check:
            exp = compute_expected(out_dir, ids)
            with open(os.path.join(out_dir, "expected.json")) as f:
                stored = json.load(f)
            assert stored["ids"] == exp["ids"], spec["name"]
            d = max(abs(a - b) for a, b in zip(stored["nll"] + stored["last_logits"], exp["nll"] + exp["last_logits"]))
            worst = max(worst, d)
            print(f"{spec['name']}: max |stored - recomputed| = {d:.3g}")
            continue
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            f.write(json.dumps(make_config(spec), indent=2, sort_keys=True) + "\n")
        write_checkpoint(spec, weights, out_dir)
        exp = compute_expected(out_dir, ids)
        with open(os.path.join(out_dir, "expected.json"), "w") as f:
            # one key per line, compact values
            f.write("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in exp.items()) + "\n}\n")
        size = sum(os.path.getsize(os.path.join(out_dir, fn)) for fn in os.listdir(out_dir))
        print(
            f"{spec['name']}: V={spec['vocab_size']} H={spec['hidden_size']} L={spec['num_hidden_layers']} "
            f"heads={spec['num_attention_heads']}/{spec['num_key_value_heads']} {spec['dtype']} "
            f"ids={len(ids)} mean_nll={exp['mean_nll']:.4f} (log V={np.log(spec['vocab_size']):.4f}) "
            f"folder={size / 1024:.0f} KiB"
        )
    if check and worst > 1e-5:
        print("MISMATCH")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
