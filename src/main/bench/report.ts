/** The bench's JSON document (`blocklab bench --json`): every figure, and what it was measured on. */
import type { ResidencyMode } from '../../shared/memory-plan.js';
import type { BackendInfo } from './infer.js';

export interface Timing {
  /** seconds per item: median, mean, fastest, slowest over the timed repetitions */
  median: number;
  mean: number;
  min: number;
  max: number;
  samples: number;
}

export interface TrainFigures {
  method: 'blocks' | 'full';
  /** batch·seq / median step time */
  tokens_per_second: number;
  step_seconds: Timing;
  warmup_steps: number;
  trainable_params: number;
  total_params: number;
  frozen_params: number;
  /** AdamW's two float32 moments for the trainable parameters */
  optimizer_state_bytes: number;
  /** 2 moments × 4 bytes × frozen parameters: what freezing saves */
  optimizer_bytes_saved_by_freezing: number;
  /** process RSS high-water mark of the worker process that ran only this method */
  peak_rss_bytes: number;
  /** tfjs tensor bytes at the peak of one profiled step (tf.profile) */
  peak_tensor_bytes: number;
  first_loss: number;
  last_loss: number;
  /** where the frozen weights lived (the memory plan's choice): resident float32, or streamed */
  residency: ResidencyMode;
  /** the wasm heap's high-water mark (0 on other backends) */
  wasm_heap_bytes: number;
}

export interface InferenceFigures {
  load: { bytes: number; seconds: Timing; mb_per_second: number };
  prefill: { tokens: number; seconds: Timing; tokens_per_second: number };
  decode: { prompt_tokens: number; tokens: number; seconds: number; tokens_per_second: number };
  peak_rss_bytes: number;
  residency: ResidencyMode;
  wasm_heap_bytes: number;
}

export interface ProfileCategory {
  name: string;
  ms: number;
  share: number;
  /** for matmul routes: achieved GFLOP/s */
  gflops?: number;
}

export interface ProfileKernel {
  kernel: string;
  shapes: string;
  route?: string;
  calls: number;
  ms: number;
  gflops?: number;
}

export interface StepProfile {
  method: 'blocks' | 'full';
  /** medians of separately timed phases, milliseconds */
  phases_ms: { forward: number; forward_backward: number; backward: number; clip: number; optimizer: number; step: number };
  /** one step under tf.profile: kernel time by category (the profiler's own overhead is excluded) */
  profiled_step_ms: number;
  categories: ProfileCategory[];
  top_kernels: ProfileKernel[];
  /** why there are no per-kernel times (a backend whose kernels run asynchronously: webgpu) */
  kernel_times_note?: string;
}

export interface TorchMethod {
  tokens_per_second: number;
  step_seconds: Timing;
  trainable_params: number;
}

export interface TorchFigures {
  available: boolean;
  /** why it was skipped, when it was */
  reason?: string;
  python?: string;
  torch_version?: string;
  blas?: { library: string | null; openblas: boolean; gflops_512: number; warning: string | null };
  /** tokens/s for every thread count tried */
  by_threads?: Record<string, { blocks?: TorchMethod; full?: TorchMethod }>;
  best?: {
    blocks: { threads: number; tokens_per_second: number };
    full: { threads: number; tokens_per_second: number };
    blocks_to_full_step_time_ratio: number;
  };
  /** tfjs tokens/s ÷ PyTorch's best tokens/s */
  tfjs_over_torch?: { blocks: number; full: number };
}

export interface ShapeReport {
  name: string;
  about: string;
  shape: string;
  model: {
    architecture: string;
    base_layers: number;
    layers: number;
    new_layers: number[];
    hidden: number;
    heads: number;
    kv_heads: number;
    head_dim: number;
    intermediate: number;
    vocab: number;
    tied: boolean;
    params: number;
    bytes: number;
  };
  batch: number;
  seq: number;
  training: {
    blocks: TrainFigures;
    /** null when the memory plan refuses full fine-tuning on this backend (full_skipped says why) */
    full: TrainFigures | null;
    full_skipped?: string;
    /** median step time blocks ÷ full (the target: ≤ 0.7) */
    blocks_to_full_step_time_ratio: number | null;
    target_ratio: number;
    meets_target: boolean | null;
  };
  inference: InferenceFigures;
  profile?: StepProfile;
  torch?: TorchFigures;
}

export interface BenchReport {
  benchmark: 'blocklab bench';
  version: string;
  started_at: string;
  seconds: number;
  quick: boolean;
  note: string;
  backend: BackendInfo;
  node: string;
  platform: string;
  cpu: { model: string; cores: number; load_average_1m_at_start: number };
  training_step: string;
  shapes: ShapeReport[];
  torch: { requested: boolean; available: boolean | null; reason?: string; python?: string; torch_version?: string; blas?: TorchFigures['blas'] };
}
