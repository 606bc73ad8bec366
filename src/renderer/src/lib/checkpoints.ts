/**
 * Checkpoint facts the views share: `checkpoints.inspect` reads only headers, but several cells
 * ask about the same folder (the Expansion cell's diagram on every keystroke), so answers are
 * kept per path. A Model cell's explicit run refreshes the entry.
 */
import type { InspectInfo } from '../../../shared/api';
import { api } from './api';

const cache = new Map<string, Promise<InspectInfo>>();

export function inspectCheckpoint(path: string, fresh = false): Promise<InspectInfo> {
  let p = fresh ? undefined : cache.get(path);
  if (!p) {
    p = api('checkpoints.inspect', { path });
    cache.set(path, p);
    p.catch(() => cache.delete(path)); // a folder that fails now may be fixed later
  }
  return p;
}

/** The typed fields of an inspect answer the views show (the backend sends them as plain JSON). */
export interface CheckpointFacts {
  architecture?: string;
  layers?: number;
  hidden_size?: number;
  intermediate_size?: number;
  attention_heads?: number;
  kv_heads?: number;
  attention?: string;
  head_dim?: number;
  vocab_size?: number;
  max_position_embeddings?: number;
  rope_theta?: number;
  tie_word_embeddings?: boolean;
  parameters?: number;
  dtype?: string;
  bytes?: number;
  tokenizer?: { kind?: string; vocabSize?: number; bos?: string | null; eos?: string[]; hasChatTemplate?: boolean } | null;
  expansion?: { placement?: string; original_layers?: number; new_layers?: number[]; sources?: number[]; base_model?: string; identity_max_abs_logit_diff?: number } | null;
}

export function checkpointFacts(info: InspectInfo): CheckpointFacts {
  return info.info as CheckpointFacts;
}
