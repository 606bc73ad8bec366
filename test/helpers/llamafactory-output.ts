/**
 * Writes an output folder shaped exactly as a LLaMA-Factory `stage: pt` run writes it
 * (hiyouga/LLaMA-Factory src/llamafactory/train/pt/workflow.py: trainer.save_model(),
 * save_metrics("train"), save_state(), plot_loss; LogCallback's trainer_log.jsonl), with the
 * files the Hugging Face Trainer writes:
 *   - trainer_state.json: transformers src/transformers/trainer_callback.py, TrainerState.save_to_json
 *     = json.dumps(dataclasses.asdict(state), indent=2, sort_keys=True) + "\n", the fields of a
 *     recent TrainerState (best_global_step, eval_steps, num_input_tokens_seen, stateful_callbacks…);
 *     log_history entries as Trainer.log writes them ({epoch, grad_norm, learning_rate, loss, step},
 *     {epoch, eval_loss, eval_runtime, …, step}, the final {train_loss, train_runtime, …});
 *   - all_results.json / train_results.json / eval_results.json: Trainer.save_metrics,
 *     json.dump(metrics, f, indent=4, sort_keys=True);
 *   - checkpoint-N/: the weights, trainer_state.json, and what the Trainer pickles
 *     (training_args.bin, optimizer.pt, scheduler.pt, rng_state.pth), and with DeepSpeed a
 *     global_stepN/ folder and a `latest` file.
 * The pickles hold random bytes here: Blocklab must never open them.
 */
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Python's json.dumps(obj, indent=n, sort_keys=True) for the JSON values used here. */
export function pyJson(v: unknown, indent: number, level = 0): string {
  const pad = ' '.repeat(indent * (level + 1));
  const end = ' '.repeat(indent * level);
  if (v === null) return 'null';
  if (typeof v === 'number') return String(v); // (Python writes a whole float as 1.0; JSON readers see the same number)
  if (typeof v === 'string' || typeof v === 'boolean') return JSON.stringify(v);
  if (Array.isArray(v)) return v.length === 0 ? '[]' : `[\n${v.map((x) => pad + pyJson(x, indent, level + 1)).join(',\n')}\n${end}]`;
  const keys = Object.keys(v as object).sort();
  if (keys.length === 0) return '{}';
  return `{\n${keys.map((k) => `${pad}${JSON.stringify(k)}: ${pyJson((v as Record<string, unknown>)[k], indent, level + 1)}`).join(',\n')}\n${end}}`;
}

export interface FakeRun {
  steps: number;
  saveSteps: number;
  evalSteps: number;
  /** loss at each step 1..steps */
  loss: (step: number) => number;
  lr: (step: number) => number;
  evalLoss: (step: number) => number;
  /** the folder whose weights play the trained model (copied); none for a LoRA run (the caller writes the adapters) */
  weightsFrom?: string;
  deepspeed?: boolean;
  /** leave out the final model and trainer_state.json (a run that stopped) */
  unfinished?: boolean;
}

function trainerState(r: FakeRun, upTo: number, bestCkpt: string | null): Record<string, unknown> {
  const log: Record<string, unknown>[] = [];
  for (let s = 1; s <= upTo; s++) {
    log.push({ epoch: s / r.steps, grad_norm: 1 + 1 / s, learning_rate: r.lr(s), loss: r.loss(s), step: s });
    if (s % r.evalSteps === 0) log.push({ epoch: s / r.steps, eval_loss: r.evalLoss(s), eval_runtime: 0.5, eval_samples_per_second: 40.0, eval_steps_per_second: 10.0, step: s });
  }
  if (upTo === r.steps) {
    log.push({ epoch: 1.0, step: r.steps, total_flos: 1.5e12, train_loss: 2.5, train_runtime: 42.5, train_samples_per_second: 3.765, train_steps_per_second: 0.235 });
  }
  return {
    best_global_step: null,
    best_metric: null,
    best_model_checkpoint: bestCkpt,
    epoch: upTo / r.steps,
    eval_steps: r.evalSteps,
    global_step: upTo,
    is_hyper_param_search: false,
    is_local_process_zero: true,
    is_world_process_zero: true,
    log_history: log,
    logging_steps: 1,
    max_steps: r.steps,
    num_input_tokens_seen: 0,
    num_train_epochs: 1,
    save_steps: r.saveSteps,
    stateful_callbacks: {
      TrainerControl: { args: { should_epoch_stop: false, should_evaluate: false, should_log: false, should_save: true, should_training_stop: upTo === r.steps }, attributes: {} },
    },
    total_flos: 1.5e12 * (upTo / r.steps),
    train_batch_size: 4,
    trial_name: null,
    trial_params: null,
  };
}

function copyWeights(from: string | undefined, to: string): void {
  mkdirSync(to, { recursive: true });
  if (from === undefined) return;
  for (const f of readdirSync(from)) if (f.endsWith('.json') || f.endsWith('.safetensors')) copyFileSync(join(from, f), join(to, f));
}

const pickle = () => Buffer.from([0x80, 0x04, 0x95, 0x01, 0x02, 0x03]); // a pickle header, never to be loaded

/** Writes the output folder of `r` at `dir`. */
export function writeLlamaFactoryOutput(dir: string, r: FakeRun): void {
  mkdirSync(dir, { recursive: true });
  const last = r.unfinished ? r.saveSteps : r.steps; // an unfinished run stopped after its first save
  for (let s = r.saveSteps; s <= last; s += r.saveSteps) {
    const c = join(dir, `checkpoint-${s}`);
    copyWeights(r.weightsFrom, c);
    writeFileSync(join(c, 'trainer_state.json'), pyJson(trainerState(r, s, null), 2) + '\n');
    for (const f of ['training_args.bin', 'rng_state.pth', 'scheduler.pt', ...(r.deepspeed ? [] : ['optimizer.pt'])]) writeFileSync(join(c, f), pickle());
    if (r.deepspeed) {
      mkdirSync(join(c, `global_step${s}`));
      writeFileSync(join(c, `global_step${s}`, 'bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt'), pickle());
      writeFileSync(join(c, 'latest'), `global_step${s}`);
    }
  }
  const log = [];
  for (let s = 1; s <= (r.unfinished ? r.saveSteps : r.steps); s++) {
    log.push(JSON.stringify({ current_steps: s, total_steps: r.steps, loss: r.loss(s), lr: r.lr(s), epoch: s / r.steps, percentage: Math.round((s / r.steps) * 10000) / 100, elapsed_time: '0:00:01', remaining_time: '0:00:09' }));
  }
  writeFileSync(join(dir, 'trainer_log.jsonl'), log.join('\n') + '\n');
  if (r.unfinished) return;
  copyWeights(r.weightsFrom, dir);
  writeFileSync(join(dir, 'training_args.bin'), pickle());
  writeFileSync(join(dir, 'trainer_state.json'), pyJson(trainerState(r, r.steps, null), 2) + '\n');
  const train = { epoch: 1.0, total_flos: 1.5e12, train_loss: 2.5, train_runtime: 42.5, train_samples_per_second: 3.765, train_steps_per_second: 0.235 };
  const evalM = { epoch: 1.0, eval_loss: r.evalLoss(r.steps), eval_perplexity: Math.exp(r.evalLoss(r.steps)), eval_runtime: 0.5, eval_samples_per_second: 40.0, eval_steps_per_second: 10.0 };
  writeFileSync(join(dir, 'train_results.json'), pyJson(train, 4) + '\n');
  writeFileSync(join(dir, 'eval_results.json'), pyJson(evalM, 4) + '\n');
  writeFileSync(join(dir, 'all_results.json'), pyJson({ ...train, ...evalM }, 4) + '\n');
  writeFileSync(join(dir, 'README.md'), '---\nlibrary_name: transformers\ntags:\n- llama-factory\n- freeze\n- generated_from_trainer\n---\n');
}
