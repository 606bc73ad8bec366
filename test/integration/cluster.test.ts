/**
 * The round trip to a cluster: export-run writes a LLaMA-Factory run whose trainable set is
 * exactly the new blocks (or refuses, writing nothing), and import-run brings a LLaMA-Factory
 * output folder back as a run with lineage by fingerprint. The output folder is written by
 * test/helpers/llamafactory-output.ts in the shapes transformers' Trainer and LLaMA-Factory's
 * pt workflow write (see that file for the sources).
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parquetWriteFile } from 'hyparquet-writer';
import { beforeAll, describe, expect, it } from 'vitest';
import { expandModel, makeTinyCheckpoint } from '../../src/main/engine/index.js';
import { exportRunLlamaFactory, recordExportRun, DS_Z2_CONFIG } from '../../src/main/interop/llamafactory.js';
import { importRun } from '../../src/main/interop/import-run.js';
import { weightsFingerprint } from '../../src/main/engine/eval.js';
import { ExperimentStore } from '../../src/main/store/index.js';
import { DEFAULT_ADAMW, TRAIN_DEFAULTS, type TrainJob } from '../../src/shared/jobs.js';
import { oneJson, runCli } from '../helpers/cli-runner.js';
import { writeLlamaFactoryOutput } from '../helpers/llamafactory-output.js';
import { testDir } from '../helpers/tmp.js';

let root: string;
let base: string;
let interleaved: string;
let top: string;
let positions: string;
let corpus: string;
let storePath: string;

function job(model: string, method: TrainJob['method'], extra: Partial<TrainJob> = {}): TrainJob {
  return {
    model,
    data: { paths: [corpus] },
    out: join(root, 'unused'),
    method,
    ...TRAIN_DEFAULTS,
    steps: 20,
    evalEvery: 5,
    adamw: { ...DEFAULT_ADAMW },
    cacheDir: join(root, 'cache'),
    resume: false,
    ...extra,
  };
}

beforeAll(async () => {
  root = await testDir('cluster');
  base = join(root, 'base');
  await makeTinyCheckpoint(base, { layers: 4, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64 });
  interleaved = join(root, 'interleaved');
  await expandModel(base, { blocks: 2 }, { out: interleaved }); // 4 → 6, new layers 2 and 5
  top = join(root, 'top');
  await expandModel(base, { blocks: 2, placement: 'top' }, { out: top }); // new layers 4 and 5
  positions = join(root, 'positions');
  await expandModel(base, { positions: [{ position: 1 }, { position: 3 }] }, { out: positions }); // new layers 1 and 4
  corpus = join(root, 'corpus.jsonl');
  writeFileSync(corpus, ['def add(a, b):\n    return a + b', 'class A:\n    pass', '   ', 'import os'].map((text) => JSON.stringify({ text })).join('\n') + '\n');
  storePath = join(root, 'store.sqlite');
}, 60_000);

describe('export-run --to llamafactory', () => {
  it('an interleaved expansion becomes use_llama_pro with exactly the new layers, and every file LLaMA-Factory reads', async () => {
    const store = ExperimentStore.open(storePath);
    try {
      const out = join(root, 'export-interleaved');
      const j = job(interleaved, { kind: 'blocks' });
      const r = await recordExportRun(store, j, await exportRunLlamaFactory(j, { out }));
      expect(r.trainableLayers).toEqual([2, 5]);
      expect(r.expressedAs).toBe('use_llama_pro: true, freeze_trainable_layers: 2');
      const y = parseYaml(readFileSync(join(out, 'train.yaml'), 'utf8'), { version: '1.1' }) as Record<string, unknown>;
      expect(y).toMatchObject({
        model_name_or_path: 'model',
        stage: 'pt',
        do_train: true,
        finetuning_type: 'freeze',
        freeze_trainable_layers: 2,
        freeze_trainable_modules: 'all',
        use_llama_pro: true,
        deepspeed: 'ds_z2_config.json',
        dataset: 'blocklab_corpus',
        dataset_dir: 'data',
        cutoff_len: TRAIN_DEFAULTS.seq,
        per_device_train_batch_size: TRAIN_DEFAULTS.batch,
        gradient_accumulation_steps: TRAIN_DEFAULTS.gradAccum,
        learning_rate: TRAIN_DEFAULTS.lr,
        max_steps: 20,
        lr_scheduler_type: 'cosine_with_min_lr',
        lr_scheduler_kwargs: { min_lr_rate: TRAIN_DEFAULTS.minLrRatio },
        warmup_steps: TRAIN_DEFAULTS.warmup,
        adam_beta1: 0.9,
        adam_beta2: 0.95,
        adam_epsilon: 1e-8,
        max_grad_norm: 1,
        seed: 0,
        bf16: true,
        save_steps: 20,
        logging_steps: 1,
        report_to: 'none',
        val_size: 0.05,
        eval_strategy: 'steps',
        eval_steps: 5,
      });
      // the text itself: floats PyYAML reads as floats (1e-8 without a dot would be a string there)
      const text = readFileSync(join(out, 'train.yaml'), 'utf8');
      expect(text).toMatch(/^learning_rate: 2\.0e-4$/m);
      expect(text).toMatch(/^adam_epsilon: 1\.0e-8$/m);
      // LLaMA-Factory's examples/deepspeed/ds_z2_config.json, and its data/README.md pretraining registration
      expect(JSON.parse(readFileSync(join(out, 'ds_z2_config.json'), 'utf8'))).toEqual(DS_Z2_CONFIG);
      expect(JSON.parse(readFileSync(join(out, 'ds_z2_config.json'), 'utf8')).zero_optimization).toMatchObject({ stage: 2, allgather_bucket_size: 500000000, round_robin_gradients: true });
      expect(JSON.parse(readFileSync(join(out, 'data', 'dataset_info.json'), 'utf8'))).toEqual({ blocklab_corpus: { file_name: 'corpus.jsonl', columns: { prompt: 'text' } } });
      const lines = readFileSync(join(out, 'data', 'corpus.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
      expect(lines).toEqual([{ text: 'def add(a, b):\n    return a + b' }, { text: 'class A:\n    pass' }, { text: 'import os' }]); // the blank document left out
      // the model: the expanded checkpoint, with its record, in the HF layout
      const config = JSON.parse(readFileSync(join(out, 'model', 'config.json'), 'utf8'));
      expect(config.num_hidden_layers).toBe(6);
      expect(config.blocklab_expansion.new_layers).toEqual([2, 5]);
      expect(readdirSync(join(out, 'model')).sort()).toEqual(expect.arrayContaining(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']));
      const readme = readFileSync(join(out, 'README.md'), 'utf8');
      expect(readme).toContain('FORCE_TORCHRUN=1 llamafactory-cli train train.yaml');
      expect(readme).toContain('FORCE_TORCHRUN=1 NNODES=2 NODE_RANK=1 MASTER_ADDR=');
      // the store: an export run and the exported model, child of the source, with its fingerprint
      const ck = store.getCheckpoint(r.checkpointId!)!;
      expect(ck.madeBy).toBe('export');
      expect(ck.info?.fingerprint).toBe(await weightsFingerprint(join(out, 'model')));
      expect(store.getCheckpoint(ck.parentId!)!.path).toBe(interleaved);
      expect(store.getRun(r.runId!)!.kind).toBe('export');
    } finally {
      store.close();
    }
  }, 60_000);

  it('top is +n, bottom is -n; full and LoRA map to their finetuning_type', async () => {
    const t = await exportRunLlamaFactory(job(top, { kind: 'blocks' }), { out: join(root, 'export-top') });
    expect(t.yaml).toMatchObject({ finetuning_type: 'freeze', freeze_trainable_layers: 2 });
    expect(t.yaml).not.toHaveProperty('use_llama_pro');
    expect(t.trainableLayers).toEqual([4, 5]);
    const bottom = join(root, 'bottom');
    await expandModel(base, { blocks: 2, placement: 'bottom' }, { out: bottom });
    const b = await exportRunLlamaFactory(job(bottom, { kind: 'blocks' }, { evalEvery: 0 }), { out: join(root, 'export-bottom') });
    expect(b.yaml).toMatchObject({ freeze_trainable_layers: -2 });
    expect(b.trainableLayers).toEqual([0, 1]);
    expect(b.yaml).not.toHaveProperty('val_size'); // no evaluation asked for
    const l = await exportRunLlamaFactory(job(interleaved, { kind: 'lora', rank: 4, alpha: 8, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] }), { out: join(root, 'export-lora') });
    expect(l.yaml).toMatchObject({ finetuning_type: 'lora', lora_rank: 4, lora_alpha: 8, lora_target: 'q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj' });
  }, 60_000);

  it('refuses a layout LLaMA-Factory cannot express, naming what would have trained, and writes nothing', async () => {
    const out = join(root, 'export-positions');
    await expect(exportRunLlamaFactory(job(positions, { kind: 'blocks' }), { out })).rejects.toThrow(
      /cannot train exactly layers 1, 4 of 6: use_llama_pro: true, freeze_trainable_layers: 2 would train layers 2, 5; freeze_trainable_layers: 2 \(the last 2\) would train layers 4, 5; freeze_trainable_layers: -2 \(the first 2\) would train layers 0, 1/,
    );
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(root).filter((n) => n.includes('export-positions'))).toEqual([]); // no temporary folder left either
  }, 60_000);

  it('never writes into a non-empty folder it did not create; replaces its own only with overwrite', async () => {
    const foreign = join(root, 'someone-elses');
    mkdirSync(foreign);
    writeFileSync(join(foreign, 'notes.txt'), 'mine');
    await expect(exportRunLlamaFactory(job(interleaved, { kind: 'blocks' }), { out: foreign, overwrite: true })).rejects.toThrow(/is not empty and is not a folder Blocklab wrote/);
    expect(readdirSync(foreign)).toEqual(['notes.txt']);
    const own = join(root, 'export-interleaved');
    await expect(exportRunLlamaFactory(job(interleaved, { kind: 'blocks' }), { out: own })).rejects.toThrow(/pass --overwrite/);
    const again = await exportRunLlamaFactory(job(interleaved, { kind: 'blocks' }, { steps: 30 }), { out: own, overwrite: true });
    expect(again.yaml.max_steps).toBe(30);
    // once LLaMA-Factory has trained into it (output/), the folder holds the user's results: never replaced
    mkdirSync(join(own, 'output'));
    writeFileSync(join(own, 'output', 'model.safetensors'), 'trained weights');
    await expect(exportRunLlamaFactory(job(interleaved, { kind: 'blocks' }), { out: own, overwrite: true })).rejects.toThrow(/also files it did not write \(output\)/);
    expect(readFileSync(join(own, 'output', 'model.safetensors'), 'utf8')).toBe('trained weights');
  }, 60_000);

  it('reads a Parquet corpus row group by row group, from the column --text-column names', async () => {
    const pq = join(root, 'shard-00000.parquet');
    const texts = Array.from({ length: 30 }, (_, i) => `document ${i}: ${'x'.repeat(i)}`);
    parquetWriteFile({ filename: pq, columnData: [{ name: 'id', data: texts.map((_, i) => i), type: 'INT32' }, { name: 'content', data: texts, type: 'STRING' }], rowGroupSize: 7 });
    const r = await exportRunLlamaFactory(job(interleaved, { kind: 'blocks' }, { data: { paths: [pq], textColumn: 'content' } }), { out: join(root, 'export-parquet') });
    expect(r.corpus.documents).toBe(30);
    const lines = readFileSync(join(root, 'export-parquet', 'data', 'corpus.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l).text);
    expect(lines).toEqual(texts);
    await expect(exportRunLlamaFactory(job(interleaved, { kind: 'blocks' }, { data: { paths: [pq] } }), { out: join(root, 'export-parquet-2') })).rejects.toThrow(
      /has no column "text"; its columns are "id", "content"/,
    );
    await expect(exportRunLlamaFactory(job(interleaved, { kind: 'blocks' }, { data: { paths: [pq], textColumn: 'id' } }), { out: join(root, 'export-parquet-3') })).rejects.toThrow(
      /column "id" does not hold strings; its string columns are "content"/,
    );
  }, 60_000);

  it('the command prints trainable_layers with --json, and refuses with one line', async () => {
    const out = join(root, 'export-cli');
    const r = await runCli(['--store', storePath, 'export-run', interleaved, '--to', 'llamafactory', '--out', out, '--data', corpus, '--steps', '12', '--json'], { timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    const doc = oneJson<{ trainable_layers: number[]; finetuning_type: string; train_yaml: Record<string, unknown>; commands: { single_node: string } }>(r);
    expect(doc.trainable_layers).toEqual([2, 5]);
    expect(doc.finetuning_type).toBe('freeze');
    expect(doc.train_yaml.max_steps).toBe(12);
    const bad = await runCli(['--store', storePath, 'export-run', positions, '--to', 'llamafactory', '--out', join(root, 'export-cli-bad'), '--data', corpus], { timeoutMs: 120_000 });
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/cannot train exactly layers 1, 4 of 6/);
  }, 90_000);
});

describe('import-run', () => {
  it('records a LLaMA-Factory output folder as a run with its metrics, checkpoints and lineage by fingerprint; twice is once', async () => {
    const exportDir = join(root, 'export-interleaved');
    // the cluster's output, copied back into the export folder (train.yaml says output_dir: output)
    writeLlamaFactoryOutput(join(exportDir, 'output'), {
      steps: 30,
      saveSteps: 10,
      evalSteps: 10,
      loss: (s) => 5 - s / 10,
      lr: (s) => 2e-4 * (1 - s / 30),
      evalLoss: (s) => 4.5 - s / 20,
      weightsFrom: join(exportDir, 'model'),
      deepspeed: true,
    });
    const store = ExperimentStore.open(storePath);
    try {
      const exported = store.listCheckpoints().find((c) => c.path === join(exportDir, 'model'))!;
      const before = store.listRuns({ kind: 'train' }).length;
      const r = await importRun(store, exportDir);
      expect(r.created).toBe(true);
      expect(r.trainer).toBe('llamafactory');
      expect(r.method).toBe('blocks');
      expect(r.steps).toBe(30);
      expect(r.metrics).toEqual({ loss: 30, val_loss: 3, lr: 30, grad_norm: 30, epoch: 30 });
      expect(r.firstLoss).toBeCloseTo(4.9, 12);
      expect(r.lastLoss).toBeCloseTo(2, 12);
      expect(r.baseCheckpointId).toBe(exported.id);
      expect(r.baseMatchedBy).toBe('fingerprint');
      expect(r.checkpoints.map((c) => c.step)).toEqual([10, 20, 30, 30]);
      for (const c of r.checkpoints) expect(store.getCheckpoint(c.checkpointId)!.parentId).toBe(exported.id);
      const run = store.getRun(r.runId)!;
      expect(run).toMatchObject({ kind: 'train', status: 'completed', lastStep: 30, totalSteps: 30, baseCheckpointId: exported.id, resultCheckpointId: r.checkpoints[3].checkpointId });
      expect((run.summary as Record<string, unknown>).seconds).toBe(42.5);
      expect(store.getMetrics(r.runId, ['val_loss']).map((m) => [m.step, m.value])).toEqual([
        [10, 4],
        [20, 3.5],
        [30, 3],
      ]);
      const again = await importRun(store, join(exportDir, 'output')); // the output folder itself: the same run
      expect(again.runId).toBe(r.runId);
      expect(again.created).toBe(false);
      expect(store.listRuns({ kind: 'train' }).length).toBe(before + 1);
      expect(store.getMetrics(r.runId, ['loss'])).toHaveLength(30);
    } finally {
      store.close();
    }
    const show = await runCli(['--store', storePath, 'runs', 'show', String((await runCli(['--store', storePath, 'import-run', exportDir, '--json'], { timeoutMs: 120_000 }).then((x) => oneJson<{ run_id: number }>(x))).run_id)]);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toMatch(/imported from\s+.*export-interleaved\/output \(llamafactory\)/);
    expect(show.stdout).toMatch(/^loss\s+30 points, first 4\.900, last 2\.000/m);
    expect(show.stdout).toMatch(/^val_loss\s+3 points/m);
  }, 90_000);

  it('a LoRA run: each checkpoint and the final output are PEFT adapters, registered as such', async () => {
    const out = join(root, 'lora-output');
    writeLlamaFactoryOutput(out, { steps: 4, saveSteps: 2, evalSteps: 2, loss: (s) => 3 - s / 10, lr: () => 1e-4, evalLoss: () => 3 });
    // PEFT's save_pretrained: adapter_config.json (LoraConfig) + adapter_model.safetensors, no config.json
    const adapterConfig = { base_model_name_or_path: 'model', peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 8, lora_alpha: 16, lora_dropout: 0.0, target_modules: ['q_proj', 'v_proj'], bias: 'none', inference_mode: true };
    const emptySafetensors = Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{}')]);
    for (const d of [out, join(out, 'checkpoint-2'), join(out, 'checkpoint-4')]) {
      writeFileSync(join(d, 'adapter_config.json'), JSON.stringify(adapterConfig, null, 2));
      writeFileSync(join(d, 'adapter_model.safetensors'), emptySafetensors);
    }
    // LLaMA Board saves the settings as training_args.yaml in the output folder (webui/common.py save_args)
    writeFileSync(join(out, 'training_args.yaml'), 'model_name_or_path: /cluster/models/tiny\nstage: pt\nfinetuning_type: lora\nlora_rank: 8\nlora_target: q_proj,v_proj\n');
    const store = ExperimentStore.open(storePath);
    try {
      const r = await importRun(store, out);
      expect([r.trainer, r.method, r.baseCheckpointId]).toEqual(['llamafactory', 'lora', null]); // the base is not on this machine: no lineage claimed
      expect(r.notes.join(' ')).toMatch(/starting checkpoint is unknown/);
      expect(r.checkpoints.map((c) => [c.step, c.kind])).toEqual([
        [2, 'adapter'],
        [4, 'adapter'],
        [4, 'adapter'],
      ]);
      expect(store.getCheckpoint(r.checkpoints[2].checkpointId)!.info).toMatchObject({ adapter: true });
    } finally {
      store.close();
    }
  }, 60_000);

  it('an unfinished run imports as interrupted from its newest checkpoint; what cannot be read is refused', async () => {
    const out = join(root, 'plain-output');
    writeLlamaFactoryOutput(out, { steps: 20, saveSteps: 10, evalSteps: 10, loss: () => 3, lr: () => 1e-4, evalLoss: () => 3, weightsFrom: base, unfinished: true });
    const store = ExperimentStore.open(storePath);
    try {
      const r = await importRun(store, out);
      expect(r.trainer).toBe('hf-trainer');
      expect(store.getRun(r.runId)!.status).toBe('interrupted');
      expect(r.steps).toBe(10);
      expect(r.notes.join(' ')).toMatch(/no final trainer_state.json/);
      await expect(importRun(store, join(root, 'no-such-folder'))).rejects.toThrow(/no such folder/);
      await expect(importRun(store, base)).rejects.toThrow(/no trainer_state.json/);
      const broken = join(root, 'broken-output');
      mkdirSync(broken);
      writeFileSync(join(broken, 'trainer_state.json'), '{"global_step": 3, "log_history": [');
      await expect(importRun(store, broken)).rejects.toThrow(/broken-output\/trainer_state.json: is not valid JSON/);
      writeFileSync(join(broken, 'trainer_state.json'), '{"global_step": "three", "log_history": []}');
      await expect(importRun(store, broken)).rejects.toThrow(/is not a Trainer state: global_step/);
    } finally {
      store.close();
    }
  }, 60_000);
});
