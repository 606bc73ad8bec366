#!/usr/bin/env python3
"""Independent float32 PyTorch reference for Hugging Face LLaMA-family causal LMs.

This file is a transcription (not a paraphrase) of the Hugging Face `transformers`
forward pass for LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM with
eager attention, kept with the same function/class names so it can be diffed
against upstream. It needs only torch + numpy (no transformers, no safetensors).

Where each part comes from (huggingface/transformers, 4.4x/4.5x era, all
transcribed from the upstream source text):

  src/transformers/modeling_rope_utils.py
      _compute_default_rope_parameters      (head_dim = getattr(config, "head_dim") or hidden // heads)
      _compute_linear_scaling_rope_parameters
      _compute_llama3_parameters            (wavelen bands, smooth_factor, is_medium_freq)
      ROPE_INIT_FUNCTIONS                   (subset: default, linear, llama3)
  src/transformers/models/llama/modeling_llama.py
      LlamaRMSNorm                          (float32 variance, `weight * hidden.to(input_dtype)`)
      LlamaRotaryEmbedding.forward          (inv_freq @ position_ids in float32, cat(freqs, freqs), cos/sin * attention_scaling)
      rotate_half, apply_rotary_pos_emb
      LlamaMLP                              (down(act(gate(x)) * up(x)), bias=config.mlp_bias)
      repeat_kv
      eager_attention_forward               (matmul * scaling, + additive mask, softmax(dtype=float32).to(query.dtype))
      LlamaAttention                        (head_dim, scaling = head_dim**-0.5, bias=config.attention_bias on q,k,v,o)
      LlamaDecoderLayer, LlamaModel.forward, LlamaForCausalLM.forward (logits = lm_head(norm(h)))
      LlamaModel._prepare_4d_causal_attention_mask_with_cache_position
  src/transformers/models/llama/configuration_llama.py   (defaults; head_dim fallback; BC "type" -> "rope_type")
  src/transformers/models/mistral/modeling_mistral.py
      MistralAttention                      (no biases; sliding_window passed to the attention interface)
      MistralModel._prepare_4d_causal_attention_mask_with_cache_position
          (sliding_attend_mask = arange(target_length) <= cache_position - sliding_window, i.e. a key
           is masked when q_idx - kv_idx >= sliding_window; same as masking_utils.sliding_window_overlay:
           allowed iff kv_idx > q_idx - sliding_window)
  src/transformers/models/mistral/configuration_mistral.py (sliding_window default 4096, may be null)
  src/transformers/models/qwen2/modeling_qwen2.py
      Qwen2Attention                        (q/k/v bias=True, o_proj bias=False; per-layer sliding window)
  src/transformers/models/qwen2/configuration_qwen2.py
      sliding_window = sliding_window if use_sliding_window else None;
      layer_types = "sliding_attention" if sliding_window is not None and i >= max_window_layers else "full_attention"
  src/transformers/loss/loss_utils.py ForCausalLMLoss
      (logits.float(); token i predicts label i+1; cross_entropy == -log_softmax gathered)
  PreTrainedModel.tie_weights / _tie_or_clone_weights
      (tie_word_embeddings -> lm_head.weight IS model.embed_tokens.weight; a stored lm_head.weight is ignored)

All weights are upcast to float32 at load (HF default torch_dtype=float32), and the
whole forward runs in float32 on CPU.

Safetensors support is a small pure-Python reader/writer (struct + json + numpy):
8-byte little-endian header length, JSON header {"__metadata__": {...}, name:
{"dtype", "shape", "data_offsets": [begin, end]}}, then the raw little-endian byte
buffer. Dtypes F32, F16, BF16 (BF16 read as uint16 << 16 viewed as float32).

CLI:
  python3 hf_reference.py nll    MODEL_DIR IDS_JSON  -> {"ids":[...],"nll":[...],"mean_nll":x}
  python3 hf_reference.py logits MODEL_DIR IDS_JSON  -> {"ids":[...],"last_logits":[...]}
IDS_JSON is either a path to a JSON file or an inline JSON string; it may be a list
of ints or an object with an "ids" list.
"""

import json
import math
import os
import struct
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

# ---------------------------------------------------------------------------------------------
# Safetensors (pure Python)
# ---------------------------------------------------------------------------------------------

_ST_DTYPES = {
    # safetensors dtype string -> (numpy storage dtype, itemsize)
    "F32": (np.dtype("<f4"), 4),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),
    "F64": (np.dtype("<f8"), 8),
    "I64": (np.dtype("<i8"), 8),
    "I32": (np.dtype("<i4"), 4),
}


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 bit patterns -> float32 (exact)."""
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def float32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> uint16 bfloat16 bit patterns, round-to-nearest-even (what torch .to(bfloat16) does).
    NaN is not expected here (fixtures are finite) but is kept a quiet NaN."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    rounding_bias = ((u >> np.uint64(16)) & np.uint64(1)) + np.uint64(0x7FFF)
    out = ((u + rounding_bias) >> np.uint64(16)).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = np.uint16(0x7FC0)
    return out


def read_safetensors(path: str) -> Tuple[Dict[str, np.ndarray], Dict[str, str], Dict[str, str]]:
    """Returns (tensors as float32 numpy arrays, metadata, original dtype per tensor)."""
    with open(path, "rb") as f:
        buf = f.read()
    (header_len,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8 : 8 + header_len].decode("utf-8"))
    data_start = 8 + header_len
    data_len = len(buf) - data_start
    metadata = header.pop("__metadata__", {}) or {}
    tensors: Dict[str, np.ndarray] = {}
    dtypes: Dict[str, str] = {}
    for name, info in header.items():
        dtype = info["dtype"]
        shape = [int(s) for s in info["shape"]]
        begin, end = (int(v) for v in info["data_offsets"])
        if dtype not in _ST_DTYPES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dtype}")
        np_dtype, itemsize = _ST_DTYPES[dtype]
        count = int(np.prod(shape)) if shape else 1
        if end - begin != count * itemsize or end > data_len or begin < 0:
            raise ValueError(f"{path}: tensor {name}: bad data_offsets {begin},{end} for shape {shape} {dtype}")
        raw = np.frombuffer(buf, dtype=np_dtype, count=count, offset=data_start + begin)
        if dtype == "BF16":
            arr = bf16_bits_to_float32(raw)
        else:
            arr = raw.astype(np.float32) if dtype in ("F32", "F16", "F64") else raw.copy()
        tensors[name] = arr.reshape(shape)
        dtypes[name] = dtype
    return tensors, metadata, dtypes


def write_safetensors(path: str, tensors: Dict[str, Tuple[str, np.ndarray]], metadata: Optional[Dict[str, str]] = None):
    """tensors: name -> (dtype string "F32"|"F16"|"BF16", array). For "BF16" the array may be float32
    (converted with round-to-nearest-even) or already uint16 bit patterns.
    Layout follows the reference implementation: tensors sorted by (dtype size desc, name), compact JSON
    header padded with spaces to a multiple of 8 bytes."""
    entries = []
    for name, (dtype, arr) in tensors.items():
        if dtype == "F32":
            data = np.ascontiguousarray(arr, dtype="<f4")
        elif dtype == "F16":
            data = np.ascontiguousarray(np.asarray(arr, dtype=np.float32).astype("<f2"))
        elif dtype == "BF16":
            a = np.asarray(arr)
            data = a.astype("<u2") if a.dtype == np.uint16 else float32_to_bf16_bits(a).astype("<u2")
        else:
            raise ValueError(f"unsupported dtype {dtype}")
        entries.append((name, dtype, list(np.asarray(arr).shape), data.tobytes()))
    entries.sort(key=lambda e: (-_ST_DTYPES[e[1]][1], e[0]))
    header: Dict[str, object] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for _, _, _, raw in entries:
            f.write(raw)
    return offset  # total tensor bytes


def load_state_dict(model_dir: str) -> Dict[str, np.ndarray]:
    """Loads `model.safetensors`, or the shards listed in `model.safetensors.index.json`."""
    single = os.path.join(model_dir, "model.safetensors")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    state: Dict[str, np.ndarray] = {}
    if os.path.exists(index):
        with open(index, "r") as f:
            weight_map = json.load(f)["weight_map"]
        for shard in sorted(set(weight_map.values())):
            tensors, _, _ = read_safetensors(os.path.join(model_dir, shard))
            for name, arr in tensors.items():
                if weight_map.get(name) != shard:
                    raise ValueError(f"{shard}: tensor {name} not mapped to this shard in the index")
                state[name] = arr
        missing = set(weight_map) - set(state)
        if missing:
            raise ValueError(f"index lists tensors missing from shards: {sorted(missing)}")
    elif os.path.exists(single):
        state, _, _ = read_safetensors(single)
    else:
        raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {model_dir}")
    return state


# ---------------------------------------------------------------------------------------------
# Config (the parts of LlamaConfig / MistralConfig / Qwen2Config.__init__ that affect the forward)
# ---------------------------------------------------------------------------------------------


class Config:
    def __init__(self, d: dict):
        self.__dict__.update(d)


def load_config(model_dir: str) -> Config:
    with open(os.path.join(model_dir, "config.json"), "r") as f:
        raw = json.load(f)
    model_type = raw.get("model_type")
    if model_type not in ("llama", "mistral", "qwen2"):
        raise ValueError(f"unsupported model_type {model_type!r}")
    # Defaults of the respective *Config.__init__ signatures.
    defaults = {
        "llama": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=None, hidden_act="silu",
                      max_position_embeddings=2048, rms_norm_eps=1e-6, tie_word_embeddings=False,
                      rope_theta=10000.0, rope_scaling=None, attention_bias=False, mlp_bias=False, head_dim=None),
        "mistral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                        num_attention_heads=32, num_key_value_heads=8, head_dim=None, hidden_act="silu",
                        max_position_embeddings=4096 * 32, rms_norm_eps=1e-6, tie_word_embeddings=False,
                        rope_theta=10000.0, sliding_window=4096),
        "qwen2": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, hidden_act="silu",
                      max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False,
                      rope_theta=10000.0, rope_scaling=None, use_sliding_window=False, sliding_window=4096,
                      max_window_layers=28, layer_types=None),
    }[model_type]
    d = dict(defaults)
    d.update(raw)
    # for backward compatibility (all three configs)
    if d.get("num_key_value_heads") is None:
        d["num_key_value_heads"] = d["num_attention_heads"]
    # LlamaConfig / MistralConfig: head_dim if head_dim is not None else hidden_size // num_attention_heads
    if d.get("head_dim") is None:
        d["head_dim"] = d["hidden_size"] // d["num_attention_heads"]
    # BC: if there is a 'type' field, copy it to 'rope_type'.
    if d.get("rope_scaling") is not None and "type" in d["rope_scaling"] and "rope_type" not in d["rope_scaling"]:
        d["rope_scaling"] = dict(d["rope_scaling"], rope_type=d["rope_scaling"]["type"])
    # Per-layer attention types.
    n = d["num_hidden_layers"]
    if model_type == "qwen2":
        d["sliding_window"] = d["sliding_window"] if d.get("use_sliding_window") else None
        if d.get("layer_types") is None:
            d["layer_types"] = [
                "sliding_attention" if d["sliding_window"] is not None and i >= d["max_window_layers"] else "full_attention"
                for i in range(n)
            ]
    elif model_type == "mistral":
        # MistralModel builds a single sliding-window mask for every layer when config.sliding_window is set.
        d["layer_types"] = ["sliding_attention" if d.get("sliding_window") is not None else "full_attention"] * n
    else:
        d["sliding_window"] = None
        d["layer_types"] = ["full_attention"] * n
    if d.get("hidden_act", "silu") != "silu":
        raise ValueError(f"unsupported hidden_act {d.get('hidden_act')!r}")
    # pretraining_tp > 1 only splits the matmuls into slices (same math), so it is not emulated.
    d["attention_bias"] = bool(d.get("attention_bias", False))
    d["mlp_bias"] = bool(d.get("mlp_bias", False))
    return Config(d)


# ---------------------------------------------------------------------------------------------
# modeling_rope_utils.py
# ---------------------------------------------------------------------------------------------


def _compute_default_rope_parameters(config, device=None, seq_len=None, **rope_kwargs):
    base = config.rope_theta
    partial_rotary_factor = config.partial_rotary_factor if hasattr(config, "partial_rotary_factor") else 1.0
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    dim = int(head_dim * partial_rotary_factor)

    attention_factor = 1.0  # Unused in this type of RoPE

    # Compute the inverse frequencies
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float().to(device) / dim))
    return inv_freq, attention_factor


def _compute_linear_scaling_rope_parameters(config, device=None, seq_len=None, **rope_kwargs):
    factor = config.rope_scaling["factor"]

    # Gets the default RoPE parameters
    inv_freq, attention_factor = _compute_default_rope_parameters(config, device, seq_len, **rope_kwargs)

    # Then applies linear scaling to the frequencies.
    inv_freq /= factor
    return inv_freq, attention_factor


def _compute_llama3_parameters(config, device=None, seq_len=None, **rope_kwargs):
    # Gets the default RoPE parameters
    inv_freq, attention_factor = _compute_default_rope_parameters(config, device, seq_len, **rope_kwargs)

    factor = config.rope_scaling["factor"]  # `8` in the original implementation
    low_freq_factor = config.rope_scaling["low_freq_factor"]  # `1` in the original implementation
    high_freq_factor = config.rope_scaling["high_freq_factor"]  # `4` in the original implementation
    old_context_len = config.rope_scaling["original_max_position_embeddings"]  # `8192` in the original implementation

    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor

    wavelen = 2 * math.pi / inv_freq
    # wavelen < high_freq_wavelen: do nothing
    # wavelen > low_freq_wavelen: divide by factor
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    # otherwise: interpolate between the two, using a smooth factor
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    inv_freq_llama = torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)

    return inv_freq_llama, attention_factor


ROPE_INIT_FUNCTIONS = {
    "default": _compute_default_rope_parameters,
    "linear": _compute_linear_scaling_rope_parameters,
    "llama3": _compute_llama3_parameters,
}


# ---------------------------------------------------------------------------------------------
# modeling_llama.py (shared by Mistral and Qwen2, which are generated from it via modular files)
# ---------------------------------------------------------------------------------------------


class LlamaRMSNorm(nn.Module):
    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class LlamaRotaryEmbedding(nn.Module):
    def __init__(self, config, device=None):
        super().__init__()
        # BC: "rope_type" was originally "type"
        if hasattr(config, "rope_scaling") and isinstance(config.rope_scaling, dict):
            self.rope_type = config.rope_scaling.get("rope_type", config.rope_scaling.get("type"))
        else:
            self.rope_type = "default"
        if self.rope_type not in ROPE_INIT_FUNCTIONS:
            raise NotImplementedError(f"rope_type {self.rope_type!r} is not transcribed in this reference")
        self.max_seq_len_cached = config.max_position_embeddings
        self.original_max_seq_len = config.max_position_embeddings

        self.config = config
        self.rope_init_fn = ROPE_INIT_FUNCTIONS[self.rope_type]

        inv_freq, self.attention_scaling = self.rope_init_fn(self.config, device)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.original_inv_freq = self.inv_freq

    @torch.no_grad()
    def forward(self, x, position_ids):
        # Core RoPE block
        inv_freq_expanded = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        position_ids_expanded = position_ids[:, None, :].float()
        # Force float32 (see https://github.com/huggingface/transformers/pull/29285)
        freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos()
        sin = emb.sin()

        # Advanced RoPE types (e.g. yarn) apply a post-processing scaling factor, equivalent to scaling attention
        cos = cos * self.attention_scaling
        sin = sin * self.attention_scaling

        return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


def rotate_half(x):
    """Rotates half the hidden dims of the input."""
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, position_ids=None, unsqueeze_dim=1):
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    q_embed = (q * cos) + (rotate_half(q) * sin)
    k_embed = (k * cos) + (rotate_half(k) * sin)
    return q_embed, k_embed


class LlamaMLP(nn.Module):
    def __init__(self, config, bias=None):
        super().__init__()
        self.config = config
        self.hidden_size = config.hidden_size
        self.intermediate_size = config.intermediate_size
        bias = config.mlp_bias if bias is None else bias
        self.gate_proj = nn.Linear(self.hidden_size, self.intermediate_size, bias=bias)
        self.up_proj = nn.Linear(self.hidden_size, self.intermediate_size, bias=bias)
        self.down_proj = nn.Linear(self.intermediate_size, self.hidden_size, bias=bias)
        self.act_fn = nn.functional.silu  # ACT2FN["silu"]

    def forward(self, x):
        down_proj = self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))
        return down_proj


def repeat_kv(hidden_states: torch.Tensor, n_rep: int) -> torch.Tensor:
    """
    This is the equivalent of torch.repeat_interleave(x, dim=1, repeats=n_rep). The hidden states go from (batch,
    num_key_value_heads, seqlen, head_dim) to (batch, num_attention_heads, seqlen, head_dim)
    """
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    key_states = repeat_kv(key, module.num_key_value_groups)
    value_states = repeat_kv(value, module.num_key_value_groups)

    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        causal_mask = attention_mask[:, :, :, : key_states.shape[-2]]
        attn_weights = attn_weights + causal_mask

    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    # dropout is a no-op in eval mode
    attn_output = torch.matmul(attn_weights, value_states)
    attn_output = attn_output.transpose(1, 2).contiguous()

    return attn_output, attn_weights


class LlamaAttention(nn.Module):
    """Multi-headed attention from 'Attention Is All You Need' paper"""

    # (q, k, v, o) bias flags; LlamaAttention uses config.attention_bias for all four.
    def _biases(self, config):
        b = config.attention_bias
        return b, b, b, b

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = True
        qb, kb, vb, ob = self._biases(config)
        self.q_proj = nn.Linear(config.hidden_size, config.num_attention_heads * self.head_dim, bias=qb)
        self.k_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=kb)
        self.v_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=vb)
        self.o_proj = nn.Linear(config.num_attention_heads * self.head_dim, config.hidden_size, bias=ob)
        self.sliding_window = config.sliding_window if config.layer_types[layer_idx] == "sliding_attention" else None

    def forward(self, hidden_states, position_embeddings, attention_mask):
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)

        query_states = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key_states = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value_states = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)

        cos, sin = position_embeddings
        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)

        attn_output, attn_weights = eager_attention_forward(
            self,
            query_states,
            key_states,
            value_states,
            attention_mask,
            dropout=0.0,
            scaling=self.scaling,
            sliding_window=self.sliding_window,  # eager ignores it: the window lives in the mask
        )

        attn_output = attn_output.reshape(*input_shape, -1).contiguous()
        attn_output = self.o_proj(attn_output)
        return attn_output, attn_weights


class MistralAttention(LlamaAttention):
    def _biases(self, config):
        return False, False, False, False


class Qwen2Attention(LlamaAttention):
    def _biases(self, config):
        return True, True, True, False


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config, layer_idx: int, attention_cls, mlp_bias):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.self_attn = attention_cls(config=config, layer_idx=layer_idx)
        self.mlp = LlamaMLP(config, bias=mlp_bias)
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.attention_type = config.layer_types[layer_idx]

    def forward(self, hidden_states, attention_mask, position_embeddings):
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)

        # Self Attention
        hidden_states, _ = self.self_attn(
            hidden_states=hidden_states,
            attention_mask=attention_mask,
            position_embeddings=position_embeddings,
        )
        hidden_states = residual + hidden_states

        # Fully Connected
        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = self.mlp(hidden_states)
        hidden_states = residual + hidden_states
        return hidden_states


def _prepare_4d_causal_attention_mask_with_cache_position(
    attention_mask, sequence_length, target_length, dtype, device, cache_position, batch_size, sliding_window=None
):
    """MistralModel._prepare_4d_causal_attention_mask_with_cache_position (no cache object: the
    `not isinstance(past_key_values, SlidingWindowCache)` branch). With sliding_window=None this is
    exactly LlamaModel's version (triu(diagonal=1) * (arange > cache_position) == arange > cache_position)."""
    if attention_mask is not None and attention_mask.dim() == 4:
        causal_mask = attention_mask
    else:
        min_dtype = torch.finfo(dtype).min
        causal_mask = torch.full((sequence_length, target_length), fill_value=min_dtype, dtype=dtype, device=device)
        diagonal_attend_mask = torch.arange(target_length, device=device) > cache_position.reshape(-1, 1)
        if sliding_window is not None:
            # if we have sliding window, we should not attend to tokens beyond sliding window length
            sliding_attend_mask = torch.arange(target_length, device=device) <= (
                cache_position.reshape(-1, 1) - sliding_window
            )
            diagonal_attend_mask.bitwise_or_(sliding_attend_mask)
        causal_mask *= diagonal_attend_mask
        causal_mask = causal_mask[None, None, :, :].expand(batch_size, 1, -1, -1)
        if attention_mask is not None:
            causal_mask = causal_mask.clone()
            if attention_mask.shape[-1] > target_length:
                attention_mask = attention_mask[:, :target_length]
            mask_length = attention_mask.shape[-1]
            padding_mask = causal_mask[:, :, :, :mask_length] + attention_mask[:, None, None, :]
            padding_mask = padding_mask == 0
            causal_mask[:, :, :, :mask_length] = causal_mask[:, :, :, :mask_length].masked_fill(padding_mask, min_dtype)
    return causal_mask


_ARCH = {
    # architecture -> (attention class, mlp bias from config?)
    "llama": (LlamaAttention, None),  # None: use config.mlp_bias
    "mistral": (MistralAttention, False),
    "qwen2": (Qwen2Attention, False),
}


class LlamaModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        attention_cls, mlp_bias = _ARCH[config.model_type]
        self.padding_idx = getattr(config, "pad_token_id", None)
        self.vocab_size = config.vocab_size
        # padding_idx only affects init/gradients, not the lookup, so it is not passed here.
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            [LlamaDecoderLayer(config, i, attention_cls, mlp_bias) for i in range(config.num_hidden_layers)]
        )
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config=config)

    def forward(self, input_ids):
        inputs_embeds = self.embed_tokens(input_ids)
        past_seen_tokens = 0
        cache_position = torch.arange(past_seen_tokens, past_seen_tokens + inputs_embeds.shape[1])
        position_ids = cache_position.unsqueeze(0)

        sequence_length = inputs_embeds.shape[1]
        target_length = past_seen_tokens + sequence_length + 1  # no 2D attention_mask given
        mask_kwargs = dict(
            attention_mask=None,
            sequence_length=sequence_length,
            target_length=target_length,
            dtype=inputs_embeds.dtype,
            device=inputs_embeds.device,
            cache_position=cache_position,
            batch_size=inputs_embeds.shape[0],
        )
        causal_mask_mapping = {"full_attention": _prepare_4d_causal_attention_mask_with_cache_position(**mask_kwargs)}
        if "sliding_attention" in self.config.layer_types:
            causal_mask_mapping["sliding_attention"] = _prepare_4d_causal_attention_mask_with_cache_position(
                **mask_kwargs, sliding_window=self.config.sliding_window
            )

        hidden_states = inputs_embeds
        # create position embeddings to be shared across the decoder layers
        position_embeddings = self.rotary_emb(hidden_states, position_ids)

        for decoder_layer in self.layers[: self.config.num_hidden_layers]:
            hidden_states = decoder_layer(
                hidden_states,
                attention_mask=causal_mask_mapping[decoder_layer.attention_type],
                position_embeddings=position_embeddings,
            )

        hidden_states = self.norm(hidden_states)
        return hidden_states


class LlamaForCausalLM(nn.Module):
    """Also used for MistralForCausalLM and Qwen2ForCausalLM (same module tree, differences come from
    the attention class, MLP bias and the per-layer mask type chosen from config.model_type)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            # PreTrainedModel._tie_or_clone_weights(output_embeddings, input_embeddings)
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids):
        hidden_states = self.model(input_ids)
        logits = self.lm_head(hidden_states)
        return logits


MistralForCausalLM = LlamaForCausalLM
Qwen2ForCausalLM = LlamaForCausalLM


def load_model(model_dir: str, config_overrides: Optional[dict] = None) -> LlamaForCausalLM:
    config = load_config(model_dir)
    if config_overrides:
        # re-run config post-processing with overrides applied to the raw dict
        with open(os.path.join(model_dir, "config.json"), "r") as f:
            raw = json.load(f)
        raw.update(config_overrides)
        config = _config_from_dict(raw)
    state = load_state_dict(model_dir)
    return build_model(config, state)


def _config_from_dict(raw: dict) -> Config:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(raw, f)
        return load_config(d)


def build_model(config: Config, state: Dict[str, np.ndarray]) -> LlamaForCausalLM:
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.eval()
    expected = {k for k in model.state_dict().keys()}
    if config.tie_word_embeddings:
        expected.discard("lm_head.weight")
    sd = {}
    for name in expected:
        if name not in state:
            raise KeyError(f"checkpoint is missing tensor {name}")
        sd[name] = torch.from_numpy(np.ascontiguousarray(state[name], dtype=np.float32))
    unexpected = set(state) - expected
    # HF ignores a stored lm_head.weight when the embeddings are tied; anything else is an error here.
    unexpected.discard("lm_head.weight")
    if unexpected:
        raise KeyError(f"checkpoint has unexpected tensors: {sorted(unexpected)}")
    current = model.state_dict()
    for name, t in sd.items():
        if tuple(current[name].shape) != tuple(t.shape):
            raise ValueError(f"{name}: checkpoint shape {tuple(t.shape)} != model shape {tuple(current[name].shape)}")
    model.load_state_dict(sd, strict=False)
    if config.tie_word_embeddings:
        assert model.lm_head.weight is model.model.embed_tokens.weight
    return model


# ---------------------------------------------------------------------------------------------
# Scoring helpers
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def forward_logits(model: LlamaForCausalLM, ids: List[int]) -> torch.Tensor:
    input_ids = torch.tensor([ids], dtype=torch.long)
    return model(input_ids)[0].float()  # [T, V]


@torch.no_grad()
def score(model: LlamaForCausalLM, ids: List[int]) -> dict:
    """nll[i] = -log p(ids[i+1] | ids[0..i]) = ForCausalLMLoss per token (logits upcast to float32)."""
    logits = forward_logits(model, ids)
    logp = torch.log_softmax(logits, dim=-1)
    labels = torch.tensor(ids[1:], dtype=torch.long)
    nll = -logp[:-1].gather(-1, labels[:, None])[:, 0]
    return {
        "ids": list(ids),
        "nll": [float(x) for x in nll],
        "mean_nll": float(nll.mean()),
        "last_logits": [float(x) for x in logits[-1]],
        "argmax": [int(x) for x in logits.argmax(-1)],
        "argmax_margin": [float(x) for x in top2_margin(logits)],
    }


def top2_margin(logits: torch.Tensor) -> torch.Tensor:
    """top1 - top2 logit per position (how robust the argmax is to small numerical differences)."""
    top = torch.topk(logits, 2, dim=-1).values
    return top[..., 0] - top[..., 1]


@torch.no_grad()
def greedy(model: LlamaForCausalLM, ids: List[int], n: int, min_margin: float = 0.0) -> Tuple[List[int], List[float]]:
    """Greedy decoding by full re-forward (no cache). Stops early before a step whose top1-top2 logit
    margin is below min_margin, so that stored continuations are not decided by near-ties."""
    out = list(ids)
    margins: List[float] = []
    for _ in range(n):
        last = forward_logits(model, out)[-1]
        m = float(top2_margin(last))
        if m < min_margin:
            break
        out.append(int(last.argmax()))
        margins.append(m)
    return out[len(ids) :], margins


def _read_ids(arg: str) -> List[int]:
    if os.path.exists(arg):
        with open(arg, "r") as f:
            obj = json.load(f)
    else:
        obj = json.loads(arg)
    if isinstance(obj, dict):
        obj = obj["ids"]
    return [int(x) for x in obj]


def main(argv: List[str]) -> int:
    torch.set_num_threads(1)  # deterministic reduction order
    if len(argv) != 4 or argv[1] not in ("nll", "logits"):
        sys.stderr.write("usage: hf_reference.py {nll|logits} MODEL_DIR IDS_JSON\n")
        return 2
    cmd, model_dir, ids_arg = argv[1], argv[2], argv[3]
    ids = _read_ids(ids_arg)
    model = load_model(model_dir)
    if any(i < 0 or i >= model.config.vocab_size for i in ids):
        sys.stderr.write("ids out of range\n")
        return 2
    if cmd == "nll":
        r = score(model, ids)
        print(json.dumps({"ids": r["ids"], "nll": r["nll"], "mean_nll": r["mean_nll"]}))
    else:
        logits = forward_logits(model, ids)
        print(json.dumps({"ids": ids, "last_logits": [float(x) for x in logits[-1]]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
