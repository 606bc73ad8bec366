#!/usr/bin/env python3
"""PyTorch side of `blocklab bench --vs-torch`: the same LLaMA training step on the same shape,
batch, sequence length and token ids as the tfjs bench, block-only (only the new blocks have
requires_grad) and full fine-tuning, AdamW in float32 with global-norm clipping, at each thread
count asked for. Prints one JSON document on stdout.

Run it with Debian's /usr/bin/python3 (python3-torch). Without libopenblas0-pthread, Debian's
torch falls back to the reference BLAS and runs ~30x slower: the script says which BLAS it
found and measures a 512x512 matmul so that an unfair baseline does not go unnoticed.

    /usr/bin/python3 scripts/bench_torch.py --config CONFIG.json [--threads 1,2]

`--device cuda` runs the same step in float32 eager on the GPU instead (scripts/gpu-measure.ts:
the PyTorch side of the WebGPU measurement), with the peak of torch.cuda.max_memory_allocated.
"""
import argparse
import ctypes
import json
import math
import statistics
import sys
import time


def mapped_blas_libs():
    try:
        with open('/proc/self/maps') as f:
            return sorted({line.split()[-1] for line in f if any(k in line.lower() for k in ('blas', 'mkl', 'lapack'))})
    except OSError:
        return []


def set_threads(torch, n):
    """torch.set_num_threads sets OpenMP's pool, not OpenBLAS's own pthreads (Debian's torch
    calls into libopenblas0-pthread): left alone, OpenBLAS runs every matmul on all cores on
    top of torch's threads. Set both."""
    torch.set_num_threads(n)
    for lib in mapped_blas_libs():
        try:
            ctypes.CDLL(lib).openblas_set_num_threads(n)
            return True
        except (OSError, AttributeError):
            continue
    return False


def blas_check(torch):
    """Which BLAS the process mapped, and a 512x512 float32 matmul's GFLOP/s on one thread."""
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    a @ b  # loads the BLAS
    set_threads(torch, 1)
    for _ in range(3):
        a @ b
    n, t0 = 20, time.perf_counter()
    for _ in range(n):
        a @ b
    gflops = 2 * 512**3 * n / (time.perf_counter() - t0) / 1e9
    libs = mapped_blas_libs()
    config = torch.__config__.show()
    library = next((l for l in libs if 'openblas' in l.lower()), None) or next((l for l in libs if 'mkl' in l.lower()), None) or (libs[0] if libs else None)
    openblas = any('openblas' in l.lower() for l in libs) or 'openblas' in config.lower()
    warning = None
    if gflops < 50:
        warning = (f'a 512x512 matmul runs at {gflops:.0f} GFLOP/s on one thread (< 50): '
                   + ('OpenBLAS is loaded, so the machine is probably busy' if openblas
                      else 'this looks like the reference BLAS; install libopenblas0-pthread for a fair comparison'))
    return {'library': library, 'openblas': openblas, 'gflops_512': gflops, 'warning': warning}


def build(torch, cfg):
    nn, F = torch.nn, torch.nn.functional
    D, L, nh, nkv, hd, Fd, V = (cfg[k] for k in ('hidden', 'layers', 'heads', 'kv_heads', 'head_dim', 'intermediate', 'vocab'))
    eps, theta, tied = cfg['rms_norm_eps'], cfg['rope_theta'], cfg['tied']

    class RMSNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(D))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * self.weight

    def rotate_half(x):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_layernorm, self.post_attention_layernorm = RMSNorm(), RMSNorm()
            self.q_proj, self.k_proj = nn.Linear(D, nh * hd, bias=False), nn.Linear(D, nkv * hd, bias=False)
            self.v_proj, self.o_proj = nn.Linear(D, nkv * hd, bias=False), nn.Linear(nh * hd, D, bias=False)
            self.gate_proj, self.up_proj = nn.Linear(D, Fd, bias=False), nn.Linear(D, Fd, bias=False)
            self.down_proj = nn.Linear(Fd, D, bias=False)

        def forward(self, x, cos, sin, mask):
            B, T, _ = x.shape
            n = self.input_layernorm(x)
            q = self.q_proj(n).view(B, T, nh, hd).transpose(1, 2)  # (B, nh, T, hd)
            k = self.k_proj(n).view(B, T, nkv, hd).transpose(1, 2)  # (B, nkv, T, hd)
            v = self.v_proj(n).view(B, T, nkv, hd).transpose(1, 2)
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
            k, v = k.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)  # HF repeat_kv
            att = (q @ k.transpose(-2, -1)) / math.sqrt(hd) + mask  # (B, nh, T, T)
            y = att.softmax(-1) @ v  # (B, nh, T, hd)
            h = x + self.o_proj(y.transpose(1, 2).reshape(B, T, nh * hd))
            m = self.post_attention_layernorm(h)
            return h + self.down_proj(F.silu(self.gate_proj(m)) * self.up_proj(m))

    class Llama(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(V, D)
            self.layers = nn.ModuleList(Block() for _ in range(L))
            self.norm = RMSNorm()
            self.lm_head = nn.Linear(D, V, bias=False)
            if tied:
                self.lm_head.weight = self.embed_tokens.weight
            inv = 1.0 / theta ** (torch.arange(0, hd, 2).float() / hd)
            self.inv_freq = inv

        def forward(self, ids):
            B, T = ids.shape
            freqs = torch.outer(torch.arange(T, device=ids.device).float(), self.inv_freq.to(ids.device))
            emb = torch.cat((freqs, freqs), dim=-1)
            cos, sin = emb.cos(), emb.sin()
            mask = torch.full((T, T), float('-inf'), device=ids.device).triu(1)
            x = self.embed_tokens(ids)
            for block in self.layers:
                x = block(x, cos, sin, mask)
            return self.lm_head(self.norm(x))

    torch.manual_seed(0)
    model = Llama()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 1 / math.sqrt(p.shape[1]))
    return model


def time_method(torch, cfg, method, batches, warmup, steps, device='cpu'):
    F = torch.nn.functional
    cuda = device != 'cpu'
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        torch.set_default_device(device)  # weights made (and initialised) on the GPU
    model = build(torch, cfg)
    if method == 'blocks':
        for p in model.parameters():
            p.requires_grad_(False)
        for i in cfg['new_layers']:
            for p in model.layers[i].parameters():
                p.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg['lr'], betas=(cfg['beta1'], cfg['beta2']), eps=cfg['eps'], weight_decay=cfg['weight_decay'])
    V = cfg['vocab']
    times = []
    for s in range(warmup + steps):
        ids = batches[s % len(batches)]
        t0 = time.perf_counter()
        logits = model(ids)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        loss.item()
        torch.nn.utils.clip_grad_norm_(params, cfg['clip']).item()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        if s >= warmup:
            times.append(time.perf_counter() - t0)
    srt = sorted(times)
    median = statistics.median(times)
    out = {
        'tokens_per_second': ids.numel() / median,
        'step_seconds': {'median': median, 'mean': sum(times) / len(times), 'min': srt[0], 'max': srt[-1], 'samples': len(times)},
        'trainable_params': sum(p.numel() for p in params),
    }
    if cuda:
        out['peak_memory_bytes'] = torch.cuda.max_memory_allocated()
        del model, opt, params
        torch.set_default_device('cpu')
        torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--config', required=True, help='JSON written by blocklab bench: shape, new layers, batches, step counts')
    ap.add_argument('--threads', default='1,2', help='thread counts to try (torch.set_num_threads)')
    ap.add_argument('--methods', default='blocks,full')
    ap.add_argument('--device', default='cpu', help='cpu, or cuda: float32 eager on the GPU (no thread counts)')
    args = ap.parse_args()
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure means "no torch here"
        print(json.dumps({'available': False, 'reason': f'python3-torch is not importable from {sys.executable} ({type(e).__name__}: {e})'}))
        return 0
    with open(args.config) as f:
        cfg = json.load(f)
    torch.set_grad_enabled(True)
    if args.device != 'cpu':
        if not torch.cuda.is_available():
            print(json.dumps({'available': False, 'reason': f'torch {torch.__version__} sees no CUDA device'}))
            return 0
        batches = [torch.tensor(b, dtype=torch.long, device=args.device).view(cfg['batch'], cfg['seq']) for b in cfg['batches']]
        methods = {m: time_method(torch, cfg, m, batches, cfg['warmup'], cfg['steps'], args.device) for m in args.methods.split(',')}
        print(json.dumps({
            'available': True,
            'python': sys.executable,
            'torch_version': torch.__version__,
            'device': torch.cuda.get_device_name(0),
            'methods': methods,
        }))
        return 0
    blas = blas_check(torch)
    batches = [torch.tensor(b, dtype=torch.long).view(cfg['batch'], cfg['seq']) for b in cfg['batches']]
    by_threads = {}
    for th in [int(t) for t in args.threads.split(',') if t.strip()]:
        set_threads(torch, th)
        by_threads[str(th)] = {m: time_method(torch, cfg, m, batches, cfg['warmup'], cfg['steps']) for m in args.methods.split(',')}
    best = {}
    for m in args.methods.split(','):
        th, r = max(((int(t), r[m]) for t, r in by_threads.items()), key=lambda x: x[1]['tokens_per_second'])
        best[m] = {'threads': th, 'tokens_per_second': r['tokens_per_second']}
    if 'blocks' in best and 'full' in best:
        best['blocks_to_full_step_time_ratio'] = best['full']['tokens_per_second'] / best['blocks']['tokens_per_second']
    print(json.dumps({
        'available': True,
        'python': sys.executable,
        'torch_version': torch.__version__,
        'blas': blas,
        'by_threads': by_threads,
        'best': best,
    }))
    return 0


if __name__ == '__main__':
    sys.exit(main())
