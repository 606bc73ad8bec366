/**
 * `blocklab export-run MODEL --to llamafactory --out DIR`: a training run handed to LLaMA-Factory
 * (Hugging Face Trainer + DeepSpeed) for a GPU cluster. DIR gets
 *
 *   model/               the checkpoint to train, HF layout (the expanded model, for blocks)
 *   data/corpus.jsonl    the corpus, one {"text": ...} per document (LLaMA-Factory's pretraining format)
 *   data/dataset_info.json   its registration: {"blocklab_corpus": {"file_name": ..., "columns": {"prompt": "text"}}}
 *   ds_z2_config.json    DeepSpeed ZeRO-2 (LLaMA-Factory's examples/deepspeed/ds_z2_config.json)
 *   train.yaml           for `llamafactory-cli train` (stage pt), every setting mapped to its name there
 *   README.md            the single-node and multi-node command lines
 *   blocklab-export.json what was exported and the fingerprint the import matches lineage by
 *
 * The heart is the trainable set: LLaMA-Factory's rule (src/shared/llamafactory.ts) is applied
 * to the YAML as written and read back, and must give exactly the layers Blocklab's trainer
 * would train — else nothing is written and the refusal names what would have trained.
 * Paths in train.yaml are relative: run the commands from DIR.
 */
import { mkdir, open, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import { parse as parseYaml, stringify as yamlString } from 'yaml';
import { openCheckpoint, type Checkpoint } from '../engine/checkpoint.js';
import { BlocklabError } from '../engine/errors.js';
import { exportHf } from '../engine/export.js';
import { checkWritableTarget, writeFolderAtomically } from '../engine/atomic.js';
import { corpusDocuments } from '../engine/data.js';
import { trainableLayers } from '../engine/trainable.js';
import { weightsFingerprint } from '../engine/eval.js';
import { llamaFactoryFreezeLayers, llamaFactoryFreezeParams, planLlamaFactoryMethod, type MethodFields } from '../../shared/llamafactory.js';
import type { TrainJob } from '../../shared/jobs.js';
import type { ExperimentStore } from '../store/index.js';
import { registerCheckpointDir } from '../jobs/supervisor.js';

/** The marker that says a folder was written by export-run (so --overwrite may replace it). */
export const EXPORT_MANIFEST = 'blocklab-export.json';
export const EXPORT_FORMAT = 'blocklab-llamafactory-export';
export const DATASET_NAME = 'blocklab_corpus';

/** LLaMA-Factory's examples/deepspeed/ds_z2_config.json, key for key. */
export const DS_Z2_CONFIG = {
  train_batch_size: 'auto',
  train_micro_batch_size_per_gpu: 'auto',
  gradient_accumulation_steps: 'auto',
  gradient_clipping: 'auto',
  zero_allow_untested_optimizer: true,
  fp16: { enabled: 'auto', loss_scale: 0, loss_scale_window: 1000, initial_scale_power: 16, hysteresis: 2, min_loss_scale: 1 },
  bf16: { enabled: 'auto' },
  zero_optimization: {
    stage: 2,
    allgather_partitions: true,
    allgather_bucket_size: 5e8,
    overlap_comm: false,
    reduce_scatter: true,
    reduce_bucket_size: 5e8,
    contiguous_gradients: true,
    round_robin_gradients: true,
  },
} as const;

export interface ExportRunOptions {
  /** DIR */
  out: string;
  /** replace DIR, but only when an earlier export-run wrote it */
  overwrite?: boolean;
  /** for the multi-node command line (default 2) */
  nodes?: number;
  /** node 0's address for the multi-node command line (default: a shell check that asks for it) */
  masterAddr?: string;
  masterPort?: number;
  log?: (line: string) => void;
}

export interface ExportRunResult {
  out: string;
  method: string;
  finetuningType: MethodFields['finetuning_type'];
  /** the layers every weight of which trains, by LLaMA-Factory's rule applied to train.yaml */
  trainableLayers: number[];
  expressedAs: string;
  /** train.yaml, parsed back */
  yaml: Record<string, unknown>;
  files: string[];
  corpus: { documents: number; bytes: number; skipped: { path: string; reason: string }[] };
  baseFingerprint: string;
  commands: { singleNode: string; multiNode: string[] };
  runId: number | null;
  checkpointId: number | null;
}

// ------------------------------------------------------------------------------- YAML text

/**
 * A number as PyYAML (YAML 1.1, which LLaMA-Factory's yaml.safe_load uses) reads it back as a
 * number: floats need a dot and a signed exponent (`1e-8` would be the *string* "1e-8", which
 * the Trainer then rejects), so 2e-4 is written 2.0e-4, as LLaMA-Factory's examples do.
 */
export function yamlNumber(x: number, asFloat = !Number.isInteger(x)): string {
  if (!Number.isFinite(x)) throw new Error(`cannot write ${x} to YAML`);
  if (!asFloat) return String(x);
  if (Number.isInteger(x) && Math.abs(x) < 1e15) return `${x}.0`;
  const a = Math.abs(x);
  if (a >= 1e-3 && a < 1e15) {
    const s = String(x);
    return s.includes('.') || s.includes('e') ? s : `${s}.0`;
  }
  const [mant, exp] = x.toExponential().split('e');
  const m = mant.includes('.') ? mant : `${mant}.0`;
  return `${m}e${exp.startsWith('-') || exp.startsWith('+') ? exp : `+${exp}`}`;
}

/** PyYAML's (YAML 1.1) float pattern: what a float must look like to be read as one. */
export const PYYAML_FLOAT = /^[-+]?(?:[0-9][0-9_]*)?\.[0-9.]*(?:[eE][-+][0-9]+)?$/;

type YamlValue = string | number | boolean | null | { float: number } | Record<string, string | number | boolean | { float: number }>;

function scalar(v: Exclude<YamlValue, Record<string, unknown>> | { float: number }): string {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return yamlNumber(v, false);
  if (typeof v === 'object') return yamlNumber(v.float, true);
  return yamlString(v).trimEnd(); // quotes only when needed
}

/** YAML in LLaMA-Factory's example layout: `### section` headers, one key a line. */
export function renderYaml(sections: [string, [string, YamlValue][]][]): string {
  const lines: string[] = [];
  for (const [title, entries] of sections) {
    if (entries.length === 0) continue;
    if (lines.length) lines.push('');
    lines.push(`### ${title}`);
    for (const [k, v] of entries) {
      if (v !== null && typeof v === 'object' && !('float' in v)) {
        lines.push(`${k}:`);
        for (const [k2, v2] of Object.entries(v)) lines.push(`  ${k2}: ${scalar(v2 as never)}`);
      } else lines.push(`${k}: ${scalar(v as never)}`);
    }
  }
  return lines.join('\n') + '\n';
}

/** train.yaml's sections for a training job and its method fields. */
export function trainYamlSections(job: TrainJob, fields: MethodFields): [string, [string, YamlValue][]][] {
  const f = (x: number) => ({ float: x });
  const evaluate = job.evalEvery > 0 && job.valFraction > 0;
  const method: [string, YamlValue][] = [['stage', 'pt'], ['do_train', true]];
  for (const [k, v] of Object.entries(fields)) method.push([k, v as YamlValue]);
  method.push(['deepspeed', 'ds_z2_config.json']);
  return [
    ['model', [['model_name_or_path', 'model'], ['trust_remote_code', false]]],
    ['method', method],
    [
      'dataset',
      [
        ['dataset', DATASET_NAME],
        ['dataset_dir', 'data'],
        ['cutoff_len', job.seq],
        ['overwrite_cache', true],
        ['preprocessing_num_workers', 16],
        ['dataloader_num_workers', 4],
      ],
    ],
    [
      'output',
      [
        ['output_dir', 'output'],
        ['logging_steps', 1],
        ['save_steps', job.saveEvery > 0 ? job.saveEvery : job.steps],
        ...(job.keepCheckpoints > 0 ? ([['save_total_limit', job.keepCheckpoints]] as [string, YamlValue][]) : []),
        ['plot_loss', true],
        ['overwrite_output_dir', false],
        ['save_only_model', false],
        ['report_to', 'none'],
      ],
    ],
    [
      'train',
      [
        ['per_device_train_batch_size', job.batch],
        ['gradient_accumulation_steps', job.gradAccum],
        ['learning_rate', f(job.lr)],
        ['max_steps', job.steps],
        ['lr_scheduler_type', 'cosine_with_min_lr'],
        ['lr_scheduler_kwargs', { min_lr_rate: f(job.minLrRatio) }],
        ['warmup_steps', job.warmup],
        ['weight_decay', f(job.adamw.weightDecay)],
        ['adam_beta1', f(job.adamw.beta1)],
        ['adam_beta2', f(job.adamw.beta2)],
        ['adam_epsilon', f(job.adamw.eps)],
        ['max_grad_norm', f(job.clip)],
        ['seed', job.seed],
        ['bf16', true],
        ['ddp_timeout', 180000000],
      ],
    ],
    [
      'eval',
      evaluate
        ? [
            ['val_size', f(job.valFraction)],
            ['per_device_eval_batch_size', job.batch],
            ['eval_strategy', 'steps'],
            ['eval_steps', job.evalEvery],
          ]
        : [],
    ],
  ];
}

// ------------------------------------------------------------------------------- the check

/** The parameters of `ckpt` that train by LLaMA-Factory's rule applied to a parsed train.yaml (null: every one, or LoRA). */
export function llamaFactoryTrainableFromYaml(y: Record<string, unknown>, ckpt: Checkpoint): { layers: number[]; params: string[] | null } {
  const L = ckpt.config.numLayers;
  const type = y.finetuning_type;
  if (type === 'full') return { layers: Array.from({ length: L }, (_, i) => i), params: null };
  if (type === 'lora') return { layers: [], params: null };
  if (type !== 'freeze') throw new BlocklabError(`train.yaml has finetuning_type ${JSON.stringify(type)}, which export-run never writes`);
  const n = y.freeze_trainable_layers;
  if (typeof n !== 'number') throw new BlocklabError(`train.yaml's freeze_trainable_layers reads back as ${JSON.stringify(n)}, not a number`);
  const r = llamaFactoryFreezeLayers({ numLayers: L, freeze_trainable_layers: n, use_llama_pro: y.use_llama_pro === true });
  if ('error' in r) throw new BlocklabError(r.error);
  const modules = String(y.freeze_trainable_modules ?? 'all').split(',').map((s) => s.trim());
  return { layers: r.layers, params: llamaFactoryFreezeParams([...ckpt.tensors.keys()], r.layers, modules) };
}

// ------------------------------------------------------------------------------- the folder

function commandLines(o: ExportRunOptions): { singleNode: string; multiNode: string[] } {
  const nodes = o.nodes ?? 2;
  const addr = o.masterAddr ?? '"${MASTER_ADDR:?set MASTER_ADDR to node 0\'s address}"';
  const port = o.masterPort ?? 29500;
  return {
    // deepspeed in train.yaml needs a torchrun launch even on one node (LLaMA-Factory's parser says so)
    singleNode: 'FORCE_TORCHRUN=1 llamafactory-cli train train.yaml',
    multiNode: Array.from({ length: nodes }, (_, r) => `FORCE_TORCHRUN=1 NNODES=${nodes} NODE_RANK=${r} MASTER_ADDR=${addr} MASTER_PORT=${port} llamafactory-cli train train.yaml`),
  };
}

function readme(job: TrainJob, r: { expressedAs: string; trainableLayers: number[]; numLayers: number; finetuningType: string; commands: ReturnType<typeof commandLines>; documents: number }): string {
  const layers = r.finetuningType === 'freeze' ? `layers ${r.trainableLayers.join(', ')} of ${r.numLayers} (${r.expressedAs}); every other weight is frozen` : r.expressedAs;
  return `# A Blocklab run for LLaMA-Factory

Exported by \`blocklab export-run\` from \`${job.model}\`: ${job.steps} steps of ${r.finetuningType} tuning on ${r.documents} documents.
Trains: ${layers}.

Run every command from this folder (train.yaml's paths are relative to it), with LLaMA-Factory and DeepSpeed installed.

## One node (all its GPUs)

\`\`\`sh
${r.commands.singleNode}
\`\`\`

## Several nodes

On each node, with this folder at the same path (a shared file system, or a copy on each):

\`\`\`sh
${r.commands.multiNode.join('\n')}
\`\`\`

## What maps to what

- \`per_device_train_batch_size: ${job.batch}\` × \`gradient_accumulation_steps: ${job.gradAccum}\` is Blocklab's batch; the global batch is that × the number of GPUs.
- \`cutoff_len: ${job.seq}\`: documents are joined with EOS and cut into blocks of ${job.seq} tokens (stage pt packs by default).
- \`lr_scheduler_type: cosine_with_min_lr\` with \`min_lr_rate\`: Blocklab's warmup + cosine to \`--min-lr-ratio\` × lr (the Trainer's warmup starts at step 0, one step earlier than Blocklab's).
- \`bf16: true\`: the cluster computes in bfloat16; Blocklab trains in float32.
- The checkpoints land in \`output/\` (\`checkpoint-N/\`, then the final model). Bring the folder back and run \`blocklab import-run ${'<this folder>'}\`:
  the run, its loss curves and its checkpoints appear in the store beside local runs, linked to \`model/\` by its fingerprint.
`;
}

/**
 * Exports a training job as a LLaMA-Factory run. Everything is checked before anything is
 * written; DIR appears complete or not at all.
 */
export async function exportRunLlamaFactory(job: TrainJob, o: ExportRunOptions): Promise<ExportRunResult> {
  const log = o.log ?? (() => undefined);
  const out = resolve(o.out);
  const ckpt = await openCheckpoint(job.model);
  const L = ckpt.config.numLayers;

  // 1. what Blocklab would train, and how LLaMA-Factory says it
  const ours = job.method.kind === 'lora' ? [] : trainableLayers(job.method, ckpt);
  const planned = planLlamaFactoryMethod(job.method, L, ours);
  if (!planned.ok) throw new BlocklabError(planned.reason, { file: job.model });
  const plan = planned.plan;

  // 2. the YAML as written, read back, under LLaMA-Factory's rule
  const yamlText = renderYaml(trainYamlSections(job, plan.fields));
  const parsed = parseYaml(yamlText, { version: '1.1' }) as Record<string, unknown>;
  for (const line of yamlText.split('\n')) {
    const m = /^\s*[a-z_]+: (\S+)$/.exec(line);
    if (m && /[.eE]/.test(m[1]) && /^[-+0-9.]/.test(m[1]) && !PYYAML_FLOAT.test(m[1])) throw new Error(`train.yaml: ${m[1]} would not read back as a float in PyYAML`);
  }
  const theirs = llamaFactoryTrainableFromYaml(parsed, ckpt);
  if (job.method.kind === 'blocks' || job.method.kind === 'last') {
    const wantParams = [...ckpt.tensors.keys()].filter((n) => ours.some((l) => n.startsWith(`model.layers.${l}.`))).sort();
    const got = [...(theirs.params ?? [])].sort();
    if (got.length !== wantParams.length || got.some((n, i) => n !== wantParams[i])) {
      const extra = got.filter((n) => !wantParams.includes(n));
      const missing = wantParams.filter((n) => !got.includes(n));
      throw new BlocklabError(
        `LLaMA-Factory would train layers ${theirs.layers.join(', ')} from this train.yaml, not exactly Blocklab's ${ours.join(', ')}` +
          `${extra.length ? `; it would also train ${extra.slice(0, 4).join(', ')}${extra.length > 4 ? ', …' : ''}` : ''}${missing.length ? `; it would leave out ${missing.slice(0, 4).join(', ')}` : ''}; nothing was written`,
        { file: job.model },
      );
    }
  }
  if (!(await hasTokenizer(ckpt.dir))) {
    throw new BlocklabError('has no tokenizer.json; LLaMA-Factory loads the tokenizer from the model folder, so add the tokenizer files first', { file: ckpt.dir });
  }

  // 3. the folder: only a missing or empty one, or one an earlier export-run wrote holding only
  // what it wrote (with --overwrite): LLaMA-Factory's output/ inside it makes it the user's
  await checkWritableTarget(out, o.overwrite === true, 'cluster');

  const commands = commandLines(o);
  const skipped: { path: string; reason: string }[] = [];
  let documents = 0;
  let corpusBytes = 0;
  let baseFingerprint = '';
  const files: string[] = [];
  await writeFolderAtomically(out, o.overwrite === true, async (tmp) => {
    log(`writing the model (${ckpt.dtype}, ${L} layers) …`);
    const written = await exportHf(ckpt, { out: join(tmp, 'model') });
    files.push(...written.files.map((f) => `model/${f}`));
    baseFingerprint = await weightsFingerprint(join(tmp, 'model'));

    log('writing the corpus as JSONL …');
    await mkdir(join(tmp, 'data'));
    const stream = createWriteStream(join(tmp, 'data', 'corpus.jsonl'));
    const closed = once(stream, 'close');
    try {
      for await (const d of corpusDocuments(job.data, { cacheDir: job.cacheDir, skipped })) {
        const line = JSON.stringify({ text: d.text }) + '\n';
        corpusBytes += Buffer.byteLength(line);
        documents++;
        if (!stream.write(line)) await once(stream, 'drain');
      }
    } finally {
      stream.end();
      await closed;
    }
    if (documents === 0) throw new BlocklabError('the corpus is empty (no document has any text); add text files or check the paths and globs', { file: job.data.paths.join(', ') });
    await writeFile(join(tmp, 'data', 'dataset_info.json'), JSON.stringify({ [DATASET_NAME]: { file_name: 'corpus.jsonl', columns: { prompt: 'text' } } }, null, 2) + '\n');
    await writeFile(join(tmp, 'ds_z2_config.json'), JSON.stringify(DS_Z2_CONFIG, null, 2) + '\n');
    await writeFile(join(tmp, 'train.yaml'), yamlText);
    await writeFile(
      join(tmp, 'README.md'),
      readme(job, { expressedAs: plan.expressedAs, trainableLayers: theirs.layers, numLayers: L, finetuningType: plan.fields.finetuning_type, commands, documents }),
    );
    await writeFile(
      join(tmp, EXPORT_MANIFEST),
      JSON.stringify(
        {
          format: EXPORT_FORMAT,
          version: 1,
          to: 'llamafactory',
          created_at: new Date().toISOString(),
          source_model: resolve(job.model),
          base_fingerprint: baseFingerprint,
          method: job.method,
          trainable_layers: theirs.layers,
          expressed_as: plan.expressedAs,
          expansion: ckpt.expansion,
          corpus: { paths: job.data.paths.map((p) => resolve(p)), text_column: job.data.textColumn ?? 'text', documents, bytes: corpusBytes },
          train: { steps: job.steps, lr: job.lr, batch: job.batch, seq: job.seq, grad_accum: job.gradAccum, warmup: job.warmup, min_lr_ratio: job.minLrRatio, seed: job.seed },
        },
        null,
        2,
      ) + '\n',
    );
    files.push('data/corpus.jsonl', 'data/dataset_info.json', 'ds_z2_config.json', 'train.yaml', 'README.md', EXPORT_MANIFEST);
    await fsyncFolder(join(tmp, 'data')); // the top-level files are fsynced by writeFolderAtomically
  }, 'cluster');

  return {
    out,
    method: job.method.kind === 'last' ? `last:${job.method.k}` : job.method.kind,
    finetuningType: plan.fields.finetuning_type,
    trainableLayers: theirs.layers,
    expressedAs: plan.expressedAs,
    yaml: parsed,
    files,
    corpus: { documents, bytes: corpusBytes, skipped },
    baseFingerprint,
    commands,
    runId: null,
    checkpointId: null,
  };
}

/**
 * Records an export in the store: the exported model as a checkpoint (its parent: the source,
 * its fingerprint: what import-run matches lineage by) and a run of kind 'export'. Sets
 * `r.runId` and `r.checkpointId`.
 */
export async function recordExportRun(store: ExperimentStore, job: TrainJob, r: ExportRunResult, name?: string): Promise<ExportRunResult> {
  const sourceId = await registerCheckpointDir(store, job.model, 'import');
  const runId = store.createRun({
    kind: 'export',
    method: r.method,
    config: { to: 'llamafactory', out: r.out, job, yaml: r.yaml, trainable_layers: r.trainableLayers, base_fingerprint: r.baseFingerprint },
    seed: job.seed,
    baseCheckpointId: sourceId,
    outDir: r.out,
    name: name ?? null,
  });
  const checkpointId = await registerCheckpointDir(store, join(r.out, 'model'), 'export', { parentId: sourceId, runId, info: { fingerprint: r.baseFingerprint, exported_for: 'llamafactory' } });
  store.finishRun(runId, { status: 'completed', resultCheckpointId: checkpointId, summary: { documents: r.corpus.documents, corpus_bytes: r.corpus.bytes, trainable_layers: r.trainableLayers } });
  r.runId = runId;
  r.checkpointId = checkpointId;
  return r;
}

async function hasTokenizer(dir: string): Promise<boolean> {
  try {
    await stat(join(dir, 'tokenizer.json'));
    return true;
  } catch {
    return false;
  }
}

async function fsyncFolder(dir: string): Promise<void> {
  for (const f of await readdir(dir)) {
    const fh = await open(join(dir, f), 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}
