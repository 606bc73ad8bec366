/**
 * The `blocklab` command (DESIGN.md §4). Every command takes --json and then prints exactly
 * one JSON document on stdout; progress and human-readable text go to stderr (or stdout
 * without --json). Errors print one line saying what was wrong and what to do, and exit 1;
 * --debug adds the stack trace.
 */
import { readFile } from 'node:fs/promises';
import { Command, CommanderError, Option } from 'commander';
import {
  BlocklabError,
  backendReport,
  expandModel,
  exportGguf,
  exportModel,
  generateText,
  initBackend,
  inspectCheckpoint,
  loadModel,
  explainOutOfMemory,
  generateTask,
  makeTinyCheckpoint,
  parseDtypeOption,
  parseGgufDtype,
  scoreIds,
  scoreTask,
  scoreText,
  type BackendName,
} from '../engine/index.js';
import { ExpansionRequestError, parsePositions, PlacementSchema, type ExpansionRequest } from '../../shared/expansion.js';
import type { Architecture } from '../engine/config.js';
import { gpuMemory } from '../engine/gpu-memory.js';
import { formatBytes, formatCount, table } from './format.js';
import { formatPlanBytes, gpuMemoryWords } from '../../shared/memory-plan.js';
import { ProgressPrinter, formatDuration } from './progress.js';
// demo, report and eval load their modules (ECharts, the evaluator) only when used: --help and
// the quick commands stay fast.
const DEMO_STEPS_DEFAULT = 80; // DEMO_DEFAULTS.steps in src/main/demo/run-demo.ts
import { ExperimentStore, defaultStorePath, type RunRow } from '../store/index.js';
import { startJob, type JobOutcome } from '../jobs/supervisor.js';
import { parseMethod } from '../engine/trainable.js';
import { TRAIN_DEFAULTS } from '../engine/trainer.js';
import { resumableTrainJob } from '../jobs/resume.js';
import { DEFAULT_ADAMW } from '../engine/optimizer.js';
import type { TrainJob } from '../../shared/jobs.js';
import { buildTrainJob, TrainSpecSchema, trainSpecProblem } from '../../shared/train-spec.js';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { jsonSyntaxProblem } from '../../shared/json-error.js';

// Anything a library prints with console.log must not corrupt the one JSON document on stdout.
const writeStdout = (text: string) => process.stdout.write(text);
console.log = (...args: unknown[]) => console.error(...args);
console.info = (...args: unknown[]) => console.error(...args);

interface GlobalOptions {
  json?: boolean;
  debug?: boolean;
  backend?: BackendName | 'auto';
  store?: string;
}

function openStore(cmd: Command): ExperimentStore {
  const path = globals(cmd).store ?? defaultStorePath();
  const store = ExperimentStore.open(path);
  return store;
}

function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals() as GlobalOptions;
}

/** Prints the command's result: the JSON document with --json, else the human text. */
function emit(cmd: Command, doc: unknown, human: () => string): void {
  if (globals(cmd).json) writeStdout(JSON.stringify(doc) + '\n');
  else writeStdout(human() + '\n');
}

function progress(cmd: Command, line: string): void {
  if (!globals(cmd).json || process.stderr.isTTY) process.stderr.write(line + '\n');
}

function intOption(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n)) throw new BlocklabError(`${name} must be a whole number (got "${value}")`);
    return n;
  };
}

function floatOption(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n)) throw new BlocklabError(`${name} must be a number (got "${value}")`);
    return n;
  };
}

const backendOption = new Option('--backend <name>', 'tfjs backend to use (webgpu: forces a software adapter too)').choices(['auto', 'tensorflow-gpu', 'webgpu', 'tensorflow-cpu', 'wasm', 'cpu']).default('auto');

const program = new Command('blocklab')
  .description('Block expansion (LLaMA Pro) for LLaMA-family checkpoints: inspect, expand, train, score, generate, export.')
  .option('--json', 'print exactly one JSON document on stdout')
  .option('--debug', 'print stack traces on errors')
  .addOption(backendOption)
  .option('--store <path>', 'experiment store (SQLite) that records runs; default $BLOCKLAB_STORE or the user-data folder')
  // usage errors are printed by main() as one line (and as the JSON document with --json)
  .configureOutput({ outputError: () => undefined })
  .exitOverride();

// ---------------------------------------------------------------------------- inspect
program
  .command('inspect')
  .description('architecture, sizes, parameters, dtype, tokenizer and expansion record of a checkpoint folder')
  .argument('<model>', 'Hugging Face checkpoint folder')
  .option('--json', 'print JSON')
  .action(async (dir: string, _o, cmd: Command) => {
    const info = await inspectCheckpoint(dir);
    const g = globals(cmd);
    const backend = g.backend && g.backend !== 'auto' ? await initBackend(g.backend) : null;
    emit(cmd, backend ? { ...info, backend } : info, () => {
      const rows: [string, string][] = [
        ['architecture', info.architecture],
        ['layers', String(info.layers)],
        ['hidden / intermediate', `${info.hidden_size} / ${info.intermediate_size}`],
        ['attention', `${info.attention_heads} heads, ${info.kv_heads} kv heads, head_dim ${info.head_dim} — ${info.attention}`],
        ['vocab', String(info.vocab_size)],
        ['context', String(info.max_position_embeddings)],
        ['rope', `theta ${info.rope_theta}${info.rope_scaling ? `, ${info.rope_scaling.type} scaling ×${info.rope_scaling.factor}` : ''}`],
        ['tied embeddings', info.tie_word_embeddings ? 'yes' : 'no'],
        ['biases', [info.biases.qkv && 'q/k/v', info.biases.o && 'o', info.biases.mlp && 'mlp'].filter(Boolean).join(', ') || 'none'],
        ['parameters', formatCount(info.parameters)],
        ['weights', `${info.dtype}, ${formatBytes(info.bytes)} in ${info.files.length} file(s)`],
        ['tokenizer', info.tokenizer ? `${info.tokenizer.kind}, ${info.tokenizer.vocabSize} tokens, chat template: ${info.tokenizer.hasChatTemplate ? 'yes' : 'no'}` : 'none (tokenizer.json missing)'],
      ];
      if (info.sliding_window !== null) rows.push(['sliding window', String(info.sliding_window)]);
      if (info.expansion) {
        rows.push(['expansion', `${info.expansion.placement}: ${info.expansion.original_layers} → ${info.expansion.original_index.length} layers`]);
        rows.push(['new layers', info.expansion.new_layers.map((l, i) => `${l}←${info.expansion!.sources[i]}`).join(', ')]);
      }
      const mp = info.memory_plan;
      const fit = (p: typeof mp.inference) =>
        `${p.fits ? 'fits' : 'does not fit'}${p.fits ? ` (${p.residency.mode}, ${p.device.name} ${formatPlanBytes(p.device.need)}, RAM ${formatPlanBytes(p.ram.need)})` : ''}`;
      rows.push([`memory (${mp.backend})`, `chat ${fit(mp.inference)}${mp.training ? `; block-only tuning ${fit(mp.training)}` : ''} — blocklab plan for details`]);
      return table(rows);
    });
  });

// ---------------------------------------------------------------------------- plan
program
  .command('plan')
  .description('memory plan before loading: weights by dtype, trainable parameters, AdamW state, activations, KV cache, against each backend\'s limit; fits or why not')
  .argument('<model>', 'Hugging Face checkpoint folder')
  .option('--method <m>', 'training to plan: blocks | full | last:K | lora (default: blocks when the checkpoint has new blocks)')
  .option('--batch <b>', 'sequences per micro-batch', intOption('--batch'), TRAIN_DEFAULTS.batch)
  .option('--seq <t>', 'tokens per sequence', intOption('--seq'), TRAIN_DEFAULTS.seq)
  .option('--trainable-layers <list>', 'with --method blocks: these layers instead of the expansion record\'s new ones')
  .option('--lora-rank <r>', 'LoRA rank', intOption('--lora-rank'), 8)
  .option('--lora-targets <list>', 'q,v or all', 'q,v')
  .option('--json', 'print JSON')
  .action(async (dir: string, o: { method?: string; batch: number; seq: number; trainableLayers?: string; loraRank: number; loraTargets: string }, cmd: Command) => {
    const { openCheckpoint, planSummary, describePlan } = await import('../engine/index.js');
    if (o.batch < 1 || o.seq < 2) throw new BlocklabError('--batch must be ≥ 1 and --seq ≥ 2');
    const report = await initBackend(globals(cmd).backend);
    const ckpt = await openCheckpoint(dir);
    const layers = o.trainableLayers ? parseLayerList(o.trainableLayers) : undefined;
    const method = o.method ? parseMethod(o.method, { loraRank: o.loraRank, loraTargets: o.loraTargets, trainableLayers: layers }) : undefined;
    const summary = planSummary(ckpt, { backend: report.active, method, batch: o.batch, seq: o.seq });
    emit(cmd, summary, () => {
      const c = ckpt.config;
      const lines = [`${dir}: ${c.numLayers} blocks, hidden ${c.hiddenSize}, MLP ${c.intermediateSize}, ${c.numHeads}/${c.numKvHeads} heads, vocab ${c.vocabSize}, context ${c.maxPositionEmbeddings}`];
      const section = (title: string, p: NonNullable<typeof summary.training>) => {
        lines.push('', `${title} — ${p.fits ? 'fits' : 'does not fit'}`);
        for (const l of describePlan(p)) lines.push(`  ${l}`);
        for (const b of p.backends.slice(1)) {
          lines.push(`  on ${b.backend}: ${b.fits ? 'fits' : 'does not fit'} (${b.residency}; ${b.device_limit !== null ? `${b.device_name} ${formatPlanBytes(b.device_bytes)} of ${formatPlanBytes(b.device_limit)}, ` : ''}RAM ${formatPlanBytes(b.ram_bytes)})`);
        }
        for (const problem of p.problems) lines.push(`  ✗ ${problem}`);
        for (const a of p.advice) lines.push(`  → ${a}`);
      };
      const inf = summary.inference;
      section(`chat (prompt up to ${inf.task.kind === 'infer' ? inf.task.tokens : 0} tokens, KV cache at the model's context of ${inf.kv_cache.context})`, inf);
      const sc = summary.scoring;
      section(`score (${sc.task.kind === 'infer' ? sc.task.tokens : 0} tokens at a time, no KV cache; eval batches as many sequences as this leaves room for)`, sc);
      if (summary.training?.task.kind === 'train') {
        const t = summary.training.task;
        section(`training ${t.method}${t.trainableLayers.length && t.method !== 'full' ? ` (layers ${t.trainableLayers.join(', ')})` : ''}, batch ${t.batch} × seq ${t.seq}`, summary.training);
      } else lines.push('', 'training: give --method (blocks needs an expanded checkpoint or --trainable-layers)');
      return lines.join('\n');
    });
  });

// ---------------------------------------------------------------------------- doctor
program
  .command('doctor')
  .description('which compute backend is active, and why the others are not')
  .option('--json', 'print JSON')
  .action(async (_o, cmd: Command) => {
    const report = await initBackend(globals(cmd).backend, { diagnose: true });
    const gpuMem = report.webgpuAdapter && !report.webgpuAdapter.software ? gpuMemory(report.webgpuAdapter) : null;
    const doc = { ...report, gpuMemory: gpuMem, node: process.version, platform: `${process.platform}-${process.arch}` };
    emit(cmd, doc, () => {
      const lines = [`active backend: ${report.active} (tfjs "${report.tfjsBackend}")`, ''];
      for (const c of report.candidates) {
        lines.push(`${c.name === report.active ? '*' : c.available ? '+' : '-'} ${c.name.padEnd(15)} ${c.note}`);
        if (!c.available && c.install) lines.push(`  ${''.padEnd(15)} to get it: ${c.install}`);
      }
      const a = report.webgpuAdapter;
      if (a) {
        lines.push('', 'WebGPU adapter');
        lines.push(
          table([
            ['device', [a.vendor, a.architecture, a.device].filter((x) => x).join(' ') || '(not reported)'],
            ['driver', a.description || '(not reported)'],
            ['api', `${a.route}${a.featureLevel === 'compatibility' ? ' (compatibility mode)' : ''}`],
            ['maxBufferSize', formatBytes(a.maxBufferSize)],
            ['maxStorageBufferBindingSize', formatBytes(a.maxStorageBufferBindingSize)],
            ['shader-f16', a.shaderF16 ? 'yes' : 'no'],
            ['kind', a.software ? `software: ${a.software} (never picked automatically)` : 'GPU'],
            ['memory', gpuMemoryWords(a.software !== null, gpuMem)],
            ['16-bit weights', "frozen BF16/F16 blocks, embedding and head can stay packed at stored precision on the GPU (widened by Blocklab's own shaders, no shader-f16 needed; decoding reads them as they are)"],
          ]),
        );
      }
      lines.push('', `node ${process.version}, ${doc.platform}`);
      return lines.join('\n');
    });
  });

// ---------------------------------------------------------------------------- expand
program
  .command('expand')
  .description('insert identity blocks (copies with o_proj and down_proj zeroed); checks the logits are unchanged')
  .argument('<model>', 'Hugging Face checkpoint folder')
  .requiredOption('--out <dir>', 'folder to write the expanded checkpoint to')
  .option('--blocks <P>', 'number of new blocks', intOption('--blocks'))
  .addOption(new Option('--placement <where>', 'where the new blocks go').choices(PlacementSchema.options).default('interleave'))
  .option('--positions <list>', 'explicit gaps, e.g. 4,8 or 4:3,8:7 (gap:source block); gap i is below original block i')
  .option('--overwrite', 'replace --out if it exists')
  .option('--json', 'print JSON')
  .action(async (dir: string, o: { out: string; blocks?: number; placement: ExpansionRequest['placement']; positions?: string; overwrite?: boolean }, cmd: Command) => {
    let request: ExpansionRequest;
    try {
      request = { blocks: o.blocks, placement: o.placement, positions: o.positions ? parsePositions(o.positions) : undefined };
    } catch (e) {
      if (e instanceof ExpansionRequestError) throw new BlocklabError(e.message);
      throw e;
    }
    progress(cmd, `expanding ${dir} → ${o.out} …`);
    const r = await expandModel(dir, request, { out: o.out, overwrite: o.overwrite, backend: globals(cmd).backend });
    emit(
      cmd,
      {
        out: r.out,
        placement: r.placement,
        original_layers: r.originalLayers,
        total_layers: r.totalLayers,
        new_layers: r.newLayers,
        sources: r.sources,
        identity_check: {
          max_abs_logit_diff: r.identity.maxAbsLogitDiff,
          max_abs_logit: r.identity.maxAbsLogit,
          tolerance: r.identity.tolerance,
          probe_tokens: r.identity.probeTokens,
          passed: true,
        },
        bytes: r.bytes,
      },
      () =>
        [
          `wrote ${r.out}: ${r.originalLayers} → ${r.totalLayers} layers (${r.placement})`,
          `new layers (← copied from): ${r.newLayers.map((l, i) => `${l}←${r.sources[i]}`).join(', ')}`,
          `identity check: max |Δlogit| = ${r.identity.maxAbsLogitDiff} over ${r.identity.probeTokens} probe tokens (tolerance ${r.identity.tolerance.toExponential(1)}) — passed`,
        ].join('\n'),
    );
  });

// ---------------------------------------------------------------------------- score
program
  .command('score')
  .description('per-token NLL: {"ids","nll","mean_nll"} with nll[i] = -log p(ids[i+1] | ids[..i])')
  .argument('<model>', 'Hugging Face checkpoint folder')
  .option('--text-file <file>', 'text to tokenize and score')
  .option('--ids-file <file>', 'JSON array of token ids to score')
  .option('--no-special-tokens', 'do not add BOS/EOS when tokenizing --text-file')
  .option('--json', 'print JSON (the default output is already the JSON document)')
  .action(async (dir: string, o: { textFile?: string; idsFile?: string; specialTokens: boolean }, cmd: Command) => {
    if (!!o.textFile === !!o.idsFile) throw new BlocklabError('give exactly one of --text-file FILE or --ids-file FILE.json');
    let ids: number[] | null = null;
    let text: string | null = null;
    if (o.idsFile) ids = await readIdsFile(o.idsFile);
    else text = await readTextFile(o.textFile!);
    // tokenized before loading, so the memory plan knows the length (and refuses what does not fit)
    const loaded = await loadModel(dir, globals(cmd).backend, {
      task: (ckpt, tok) => {
        if (ids) checkIds(ids, ckpt.config.vocabSize, o.idsFile!);
        else if (tok) ids = tok.encode(text!, { addSpecialTokens: o.specialTokens });
        return scoreTask(Math.min(ids?.length ?? 2, ckpt.config.maxPositionEmbeddings));
      },
    });
    try {
      let r;
      try {
        r = ids ? await scoreIds(loaded, ids) : await scoreText(loaded, text!, { addSpecialTokens: o.specialTokens });
      } catch (e) {
        // a problem with the input (too long, too short) names the file it came from
        if (e instanceof BlocklabError && !e.file) throw new BlocklabError(e.message, { file: o.idsFile ?? o.textFile, cause: e });
        throw e;
      }
      if (!globals(cmd).json) {
        process.stderr.write(`${r.nll.length} predicted tokens, mean NLL ${r.mean_nll.toFixed(4)} nats, perplexity ${Math.exp(r.mean_nll).toFixed(3)}\n`);
      }
      writeStdout(JSON.stringify(r) + '\n');
    } finally {
      loaded.dispose();
    }
  });

// ---------------------------------------------------------------------------- generate
program
  .command('generate')
  .description('generate text with a KV cache, streaming to stdout')
  .argument('<model>', 'Hugging Face checkpoint folder')
  .option('--prompt <text>', 'the text to continue (or, with --chat, the user turn)')
  .option('--messages <json>', 'a conversation instead of --prompt: a JSON array of {"role": "user"|"assistant", "content"} ending with the user turn (as a Chat cell sends it); with --chat in the chat template, else as plain text turns')
  .option('--max-tokens <n>', 'most tokens to generate', intOption('--max-tokens'), 128)
  .option('--temperature <t>', '0 = greedy', floatOption('--temperature'), 0.7)
  .option('--top-p <p>', 'nucleus sampling', floatOption('--top-p'), 0.9)
  .option('--top-k <k>', '0 = off', intOption('--top-k'), 0)
  .option('--repetition-penalty <r>', '1 = off', floatOption('--repetition-penalty'), 1)
  .option('--stop <s...>', 'stop strings')
  .option('--seed <s>', 'sampling seed', intOption('--seed'), 0)
  .option('--chat', "format the prompt with the tokenizer's chat template")
  .option('--system <text>', 'system prompt (with --chat)')
  .option('--json', 'print one JSON document at the end instead of streaming')
  .action(async (dir: string, o: { prompt?: string; messages?: string; maxTokens: number; temperature: number; topP: number; topK: number; repetitionPenalty: number; stop?: string[]; seed: number; chat?: boolean; system?: string }, cmd: Command) => {
    const json = globals(cmd).json;
    if ((o.prompt === undefined) === (o.messages === undefined)) throw new BlocklabError('give exactly one of --prompt TEXT or --messages JSON');
    const messages = o.messages === undefined ? undefined : parseMessagesOption(o.messages);
    const text = messages ? [o.system ?? '', ...messages.map((m) => m.content)].join('\n') : (o.prompt ?? '');
    const templated = o.chat === true;
    const loaded = await loadModel(dir, globals(cmd).backend, {
      // the prompt's length (a chat template adds a few tokens a turn) and the KV cache it grows to
      task: (ckpt, tok) => generateTask((tok?.encode(text).length ?? text.length) + (templated ? 64 * (messages?.length ?? 1) : 0), o.maxTokens, ckpt.config.maxPositionEmbeddings),
    });
    try {
      const r = await generateText(loaded, {
        prompt: o.prompt ?? '',
        ...(messages ? { messages, useTemplate: o.chat === true } : {}),
        chat: o.chat,
        system: o.system,
        maxTokens: o.maxTokens,
        temperature: o.temperature,
        topP: o.topP,
        topK: o.topK,
        repetitionPenalty: o.repetitionPenalty,
        stop: o.stop,
        seed: o.seed,
        onText: json ? undefined : (delta) => writeStdout(delta),
      });
      if (json) {
        writeStdout(
          JSON.stringify({
            text: r.text,
            ids: r.ids,
            finish_reason: r.finishReason,
            prompt_tokens: r.promptTokens,
            generated_tokens: r.generatedTokens,
            prefill_tokens_per_second: r.prefillTokensPerSecond,
            decode_tokens_per_second: r.decodeTokensPerSecond,
            backend: backendReport()?.active,
          }) + '\n',
        );
      } else {
        writeStdout('\n');
        process.stderr.write(
          `[${r.generatedTokens} tokens, ${r.finishReason}; prefill ${r.prefillTokensPerSecond.toFixed(0)} tok/s, decode ${r.decodeTokensPerSecond.toFixed(1)} tok/s on ${backendReport()?.active}]\n`,
        );
      }
    } finally {
      loaded.dispose();
    }
  });

/** --messages: a JSON array of chat turns, checked before a model loads. */
function parseMessagesOption(text: string): { role: 'user' | 'assistant'; content: string }[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new BlocklabError(`--messages is not valid JSON (${(e as Error).message}); give e.g. '[{"role":"user","content":"Hello"}]'`);
  }
  const ok =
    Array.isArray(raw) &&
    raw.length > 0 &&
    raw.every((m) => typeof m === 'object' && m !== null && (m.role === 'user' || m.role === 'assistant') && typeof m.content === 'string');
  if (!ok) throw new BlocklabError('--messages must be a non-empty JSON array of {"role": "user" or "assistant", "content": "…"}; put a system prompt in --system');
  return raw as { role: 'user' | 'assistant'; content: string }[];
}

// ---------------------------------------------------------------------------- export
program
  .command('export')
  .description(
    'write a checkpoint in another format (hf: the Hugging Face layout transformers loads; gguf: one file for llama.cpp / Ollama)',
  )
  .argument('<model>', 'Hugging Face checkpoint folder')
  .addOption(new Option('--format <format>', 'output format').choices(['hf', 'gguf']).makeOptionMandatory())
  .requiredOption('--out <path>', 'output folder (hf) or file, e.g. model.gguf (gguf)')
  .option(
    '--dtype <dtype>',
    'hf: f32, f16 or bf16 (default: the source dtype, copied bit for bit); ' +
      'gguf: f32, f16, q8_0, q4_0 or q4_k_m (default: f32 for an F32 checkpoint, exact; f16 for F16 and BF16 ones; norms and biases stay f32)',
  )
  .option('--nll-text <file>', 'gguf: the text on which to measure the NLL change of the export (default: the bundled demo\'s held-out text)')
  .option('--no-nll', 'gguf: do not measure the NLL change (it loads the model twice)')
  .option('--max-shard-size <bytes>', 'largest safetensors shard (hf)', intOption('--max-shard-size'))
  .option('--overwrite', 'replace --out if it exists')
  .option('--json', 'print JSON')
  .action(async (dir: string, o: { format: string; out: string; dtype?: string; nll: boolean; nllText?: string; maxShardSize?: number; overwrite?: boolean }, cmd: Command) => {
    if (o.format === 'gguf') {
      const dtype = o.dtype === undefined ? undefined : parseGgufDtype(o.dtype);
      if (dtype === null) throw new BlocklabError(`--dtype ${o.dtype} is not supported for GGUF; use f32, f16, q8_0, q4_0 or q4_k_m`);
      if (o.maxShardSize !== undefined) throw new BlocklabError('--max-shard-size applies to --format hf only; a GGUF export is one file');
      if (!o.nll && o.nllText !== undefined) throw new BlocklabError('--nll-text and --no-nll contradict each other; drop one');
      const r = await exportGguf(dir, {
        out: o.out,
        dtype,
        overwrite: o.overwrite,
        nll: o.nll ? undefined : false,
        nllText: o.nllText,
        onTensor: (i, n, name) => {
          if (i % 16 === 0 || i === n - 1) progress(cmd, `[${i + 1}/${n}] ${name}`);
        },
        onPhase: (message) => progress(cmd, message),
      });
      for (const w of r.warnings) process.stderr.write(`warning: ${w}\n`);
      const { nll } = r;
      emit(
        cmd,
        {
          out: r.out, format: 'gguf', dtype: r.dtype, bytes: r.bytes, tensors: r.tensors, tensorTypes: r.tensorTypes,
          architecture: r.architecture, tokenizer: r.tokenizer, nll, warnings: r.warnings,
        },
        () =>
          `wrote ${r.out} (GGUF ${r.architecture}, ${r.dtype}, ${r.tensors} tensors, ${formatBytes(r.bytes)}; tokenizer ${r.tokenizer.model}/${r.tokenizer.pre})` +
          (nll
            ? `\nNLL on ${nll.tokens} tokens of ${nll.text}: ${nll.checkpoint.toFixed(4)} with the checkpoint's weights, ${nll.gguf.toFixed(4)} with the file's (${nll.delta >= 0 ? '+' : ''}${nll.delta.toFixed(4)} nats/token)`
            : ''),
      );
      return;
    }
    if (o.nllText !== undefined || !o.nll) throw new BlocklabError('--nll-text and --no-nll apply to --format gguf only');
    const dtype = o.dtype === undefined ? undefined : parseDtypeOption(o.dtype);
    if (dtype === null && parseGgufDtype(o.dtype!)) throw new BlocklabError(`--dtype ${o.dtype} is a GGUF type: use --format gguf, or f32, f16 or bf16 for --format hf`);
    if (dtype === null) throw new BlocklabError(`--dtype ${o.dtype} is not supported; use f32, f16 or bf16`);
    const r = await exportModel(dir, { out: o.out, dtype, overwrite: o.overwrite, maxShardBytes: o.maxShardSize });
    emit(cmd, { out: r.dir, format: 'hf', dtype: r.dtype, files: r.files, bytes: r.bytes }, () => `wrote ${r.dir} (${r.dtype}, ${formatBytes(r.bytes)}): ${r.files.join(', ')}`);
  });

// ---------------------------------------------------------------------------- train
interface TrainCliOptions {
  data: string[];
  out: string;
  method: string;
  steps: number;
  lr: number;
  batch: number;
  seq: number;
  gradAccum: number;
  warmup?: number;
  minLrRatio: number;
  seed: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  clip: number;
  saveEvery: number;
  evalEvery: number;
  evalBatches: number;
  valFraction: number;
  keepCheckpoints: number;
  include?: string[];
  exclude?: string[];
  textColumn?: string;
  trainableLayers?: string;
  loraRank: number;
  loraAlpha?: number;
  loraTargets: string;
  resume?: boolean;
  stopAfter?: number;
  name?: string;
}

/** The options as a TrainSpec (the schema the app's Train cell validates against), then the one job builder. */
function trainJobFrom(model: string, o: TrainCliOptions, cmd: Command, storePath: string): TrainJob {
  const layers = o.trainableLayers ? parseLayerList(o.trainableLayers) : undefined;
  const spec = {
    model,
    data: o.data,
    include: o.include,
    exclude: o.exclude,
    ...(o.textColumn && o.textColumn !== 'text' ? { textColumn: o.textColumn } : {}),
    out: o.out,
    method: parseMethod(o.method, { loraRank: o.loraRank, loraAlpha: o.loraAlpha, loraTargets: o.loraTargets, trainableLayers: layers }),
    steps: o.steps,
    lr: o.lr,
    batch: o.batch,
    seq: o.seq,
    gradAccum: o.gradAccum,
    warmup: o.warmup,
    minLrRatio: o.minLrRatio,
    seed: o.seed,
    weightDecay: o.weightDecay,
    beta1: o.beta1,
    beta2: o.beta2,
    clip: o.clip,
    saveEvery: o.saveEvery,
    evalEvery: o.evalEvery,
    evalBatches: o.evalBatches,
    valFraction: o.valFraction,
    keepCheckpoints: o.keepCheckpoints,
    name: o.name,
  };
  const parsed = TrainSpecSchema.safeParse(spec);
  if (!parsed.success) throw new BlocklabError(trainSpecProblem(spec) ?? parsed.error.issues[0]?.message ?? 'invalid training options');
  return buildTrainJob(parsed.data, {
    out: o.out,
    cacheDir: join(dirname(storePath), 'cache'),
    resume: o.resume ?? false,
    backend: globals(cmd).backend,
    stopAfter: o.stopAfter,
  });
}

/** Runs a training job in an engine process with a progress bar; Ctrl-C stops it with a checkpoint. */
async function runTraining(cmd: Command, job: TrainJob, store: ExperimentStore, resumeRunId?: number, name?: string): Promise<void> {
  const json = globals(cmd).json;
  const progress = new ProgressPrinter();
  const handle = startJob({ kind: 'train', train: job }, {
    store,
    resumeRunId,
    name,
    events: {
      onLog: (m) => progress.break() ?? process.stderr.write(`${m}\n`),
      onStarted: (info) => {
        const i = info as { method: string; trainableParams: number; totalParams: number; trainableLayers: number[]; backend: string; startStep: number; corpus: { tokens: number; trainSequences: number; valSequences: number } };
        process.stderr.write(
          `run ${handle.runId}: ${i.method}, ${formatCount(i.trainableParams)} of ${formatCount(i.totalParams)} parameters train` +
            (i.trainableLayers.length ? ` (layers ${i.trainableLayers.join(', ')})` : '') +
            `; ${i.corpus.tokens.toLocaleString('en-US')} tokens → ${i.corpus.trainSequences} train / ${i.corpus.valSequences} val sequences; ${i.backend}` +
            (i.startStep ? `; resuming at step ${i.startStep}` : '') + '\n',
        );
      },
      onStep: (m) => progress.step(m),
      onEval: (_s, v) => progress.eval(v),
      onCheckpoint: (step, dir) => {
        progress.break();
        process.stderr.write(`checkpoint at step ${step}: ${dir}\n`);
      },
    },
  });
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts === 1) {
      progress.break();
      process.stderr.write('stopping after this step and writing a checkpoint (Ctrl-C again to kill)…\n');
      handle.cancel();
    } else handle.kill('SIGKILL');
  };
  process.on('SIGINT', onSigint);
  let outcome: JobOutcome;
  try {
    outcome = await handle.done;
  } finally {
    process.off('SIGINT', onSigint);
  }
  if (!('result' in outcome)) {
    const where = outcome.runId !== null ? ` (run ${outcome.runId})` : '';
    throw outcome.userError ? new BlocklabError(outcome.error) : new BlocklabError(`training failed${where}: ${outcome.error}`);
  }
  const r = outcome.result as Record<string, number | string | null>;
  const doc = {
    run_id: outcome.runId,
    status: outcome.status,
    method: r.method,
    steps: r.steps,
    first_loss: r.firstLoss,
    last_loss: r.lastLoss,
    val_loss: r.valLoss,
    tokens_per_second: r.tokensPerSecond,
    trainable_params: r.trainableParams,
    total_params: r.totalParams,
    peak_memory_bytes: r.peakMemoryBytes,
    peak_tensor_bytes: r.peakTensorBytes,
    optimizer_state_bytes: r.optimizerStateBytes,
    out: r.out,
    model: r.model,
    adapter: r.adapter,
    last_checkpoint: r.lastCheckpoint,
    backend: r.backend,
    seconds: r.seconds,
  };
  emit(cmd, doc, () => {
    const rows: [string, string][] = [
      ['run', `${outcome.runId} (${outcome.status})`],
      ['method', String(r.method)],
      ['steps', String(r.steps)],
      ['loss', `${Number(r.firstLoss).toFixed(4)} → ${Number(r.lastLoss).toFixed(4)}`],
      ['validation loss', r.valLoss === null ? '—' : Number(r.valLoss).toFixed(4)],
      ['tokens/s', Math.round(Number(r.tokensPerSecond)).toLocaleString('en-US')],
      ['trainable', `${formatCount(Number(r.trainableParams))} of ${formatCount(Number(r.totalParams))} parameters`],
      ['peak memory', formatBytes(Number(r.peakMemoryBytes))],
      ['time', formatDuration(Number(r.seconds))],
    ];
    if (r.model) rows.push(['model', String(r.model)]);
    if (r.adapter) rows.push(['adapter (PEFT)', String(r.adapter)]);
    if (outcome.status !== 'completed') rows.push(['resume with', `blocklab train ... --out ${r.out} --resume   (or: blocklab runs resume ${outcome.runId})`]);
    return table(rows);
  });
  if (json) return;
}

/** The options train and export-run share: data, method and every hyperparameter. */
function addTrainOptions(c: Command): Command {
  return c
    .requiredOption('--data <paths...>', '.txt, .jsonl ("text" field), .parquet ("text" column) files or folders')
    .option('--method <m>', 'blocks | full | last:K | lora', 'blocks')
    .option('--steps <n>', 'optimizer steps', intOption('--steps'), TRAIN_DEFAULTS.steps)
    .option('--lr <x>', 'peak learning rate', floatOption('--lr'), TRAIN_DEFAULTS.lr)
    .option('--batch <b>', 'sequences per micro-batch', intOption('--batch'), TRAIN_DEFAULTS.batch)
    .option('--seq <t>', 'tokens per sequence', intOption('--seq'), TRAIN_DEFAULTS.seq)
    .option('--grad-accum <a>', 'micro-batches per optimizer step', intOption('--grad-accum'), TRAIN_DEFAULTS.gradAccum)
    .option('--warmup <w>', `linear warmup steps, then cosine decay (default: ${TRAIN_DEFAULTS.warmup}, or a tenth of a shorter run)`, intOption('--warmup'))
    .option('--min-lr-ratio <r>', 'final learning rate as a fraction of --lr', floatOption('--min-lr-ratio'), TRAIN_DEFAULTS.minLrRatio)
    .option('--seed <s>', 'data order and LoRA init', intOption('--seed'), TRAIN_DEFAULTS.seed)
    .option('--weight-decay <wd>', 'AdamW decoupled weight decay (matrices only)', floatOption('--weight-decay'), DEFAULT_ADAMW.weightDecay)
    .option('--beta1 <b>', 'AdamW beta1', floatOption('--beta1'), DEFAULT_ADAMW.beta1)
    .option('--beta2 <b>', 'AdamW beta2', floatOption('--beta2'), DEFAULT_ADAMW.beta2)
    .option('--clip <n>', 'global gradient-norm clipping (0: off)', floatOption('--clip'), TRAIN_DEFAULTS.clip)
    .option('--save-every <n>', 'checkpoint every N steps (and at the end)', intOption('--save-every'), TRAIN_DEFAULTS.saveEvery)
    .option('--eval-every <n>', 'validation loss every N steps (and at the end)', intOption('--eval-every'), TRAIN_DEFAULTS.evalEvery)
    .option('--eval-batches <n>', 'validation batches per evaluation', intOption('--eval-batches'), TRAIN_DEFAULTS.evalBatches)
    .option('--val-fraction <f>', 'held-out share of the sequences', floatOption('--val-fraction'), TRAIN_DEFAULTS.valFraction)
    .option('--keep-checkpoints <n>', 'newest checkpoints kept (0: all)', intOption('--keep-checkpoints'), TRAIN_DEFAULTS.keepCheckpoints)
    .option('--include <globs...>', 'for folders: files to read, e.g. "**/*.py"')
    .option('--exclude <globs...>', 'for folders: files to leave out, e.g. "**/test_*"')
    .option('--text-column <name>', 'the .jsonl field / .parquet column that holds the text', 'text')
    .option('--trainable-layers <list>', 'with --method blocks: train these layers instead of the expansion record\'s new ones')
    .option('--lora-rank <r>', 'LoRA rank', intOption('--lora-rank'), 8)
    .option('--lora-alpha <a>', 'LoRA alpha (default 2 × rank)', floatOption('--lora-alpha'))
    .option('--lora-targets <list>', 'q,v or all (q,k,v,o,gate,up,down)', 'q,v')
    .option('--name <name>', 'a name for the run in the store');
}

addTrainOptions(
  program
    .command('train')
    .description('tune a checkpoint on a corpus: the new blocks only (LLaMA Pro), or a baseline (full, last:K, lora)')
    .argument('<model>', 'Hugging Face checkpoint folder (expanded, for --method blocks)'),
)
  .requiredOption('--out <dir>', 'run folder: checkpoint-N/ folders and the final model/')
  .option('--resume', 'continue the run in --out from its newest checkpoint')
  .option('--stop-after <n>', 'pause after step N with a checkpoint (resume later with --resume)', intOption('--stop-after'))
  .option('--dry-run', 'print the full training job these options make (every default filled in) and stop')
  .option('--json', 'print one JSON document at the end')
  .action(async (model: string, o: TrainCliOptions & { dryRun?: boolean }, cmd: Command) => {
    if (o.dryRun) {
      const job = trainJobFrom(model, o, cmd, resolvePath(globals(cmd).store ?? defaultStorePath()));
      emit(cmd, { job, name: o.name ?? null }, () => JSON.stringify(job, null, 2));
      return;
    }
    const store = openStore(cmd);
    try {
      const job = trainJobFrom(model, o, cmd, store.path);
      let resumeRunId: number | undefined;
      if (job.resume) {
        const previous = store.listRuns({ kind: 'train' }).find((r) => r.outDir === resolvePath(job.out));
        resumeRunId = previous?.id;
      }
      await runTraining(cmd, job, store, resumeRunId, o.name);
    } finally {
      store.close();
    }
  });

// ---------------------------------------------------------------------------- export-run
addTrainOptions(
  program
    .command('export-run')
    .description('hand a training run to LLaMA-Factory for a GPU cluster: the checkpoint, the corpus, train.yaml, a DeepSpeed config and the launch lines; the trainable set is checked against the expansion first')
    .argument('<model>', 'Hugging Face checkpoint folder (expanded, for --method blocks)'),
)
  .addOption(new Option('--to <trainer>', 'the trainer to export for').choices(['llamafactory']).makeOptionMandatory())
  .requiredOption('--out <dir>', 'a new (or empty) folder for the export')
  .option('--overwrite', 'replace --out when an earlier export-run wrote it (never any other folder)')
  .option('--nodes <n>', 'nodes in the multi-node launch lines', intOption('--nodes'), 2)
  .option('--master-addr <host>', "node 0's address for the multi-node launch lines")
  .option('--json', 'print JSON')
  .action(async (model: string, o: TrainCliOptions & { overwrite?: boolean; nodes: number; masterAddr?: string }, cmd: Command) => {
    const { exportRunLlamaFactory, recordExportRun } = await import('../interop/llamafactory.js');
    if (o.nodes < 1) throw new BlocklabError(`--nodes must be at least 1 (got ${o.nodes})`);
    const store = openStore(cmd);
    try {
      const job = trainJobFrom(model, o, cmd, store.path);
      const r = await recordExportRun(store, job, await exportRunLlamaFactory(job, { out: o.out, overwrite: o.overwrite, nodes: o.nodes, masterAddr: o.masterAddr, log: (l) => progress(cmd, l) }), o.name);
      for (const s of r.corpus.skipped) process.stderr.write(`skipped ${s.path}: ${s.reason}\n`);
      emit(
        cmd,
        {
          out: r.out,
          to: 'llamafactory',
          method: r.method,
          finetuning_type: r.finetuningType,
          trainable_layers: r.trainableLayers,
          expressed_as: r.expressedAs,
          train_yaml: r.yaml,
          files: r.files,
          corpus: r.corpus,
          base_fingerprint: r.baseFingerprint,
          commands: { single_node: r.commands.singleNode, multi_node: r.commands.multiNode },
          run_id: r.runId,
          checkpoint_id: r.checkpointId,
        },
        () =>
          [
            `wrote ${r.out} for LLaMA-Factory (${r.finetuningType}: ${r.expressedAs})`,
            r.finetuningType === 'freeze' ? `trainable layers (LLaMA-Factory's rule on train.yaml): ${r.trainableLayers.join(', ')}` : '',
            `corpus: ${r.corpus.documents} documents in data/corpus.jsonl`,
            '',
            `cd ${r.out}`,
            `one node:    ${r.commands.singleNode}`,
            `many nodes:  ${r.commands.multiNode.join('\n             ')}`,
            '',
            `afterwards: blocklab import-run ${r.out}`,
          ]
            .filter((l, i) => l !== '' || i > 1)
            .join('\n'),
      );
    } finally {
      store.close();
    }
  });

// ---------------------------------------------------------------------------- import-run
program
  .command('import-run')
  .description('record a LLaMA-Factory / Hugging Face Trainer output folder as a run: its loss curves, settings and checkpoints, linked by fingerprint to the checkpoint it started from')
  .argument('<dir>', 'the output_dir of the run, or the folder export-run wrote with output/ copied back into it')
  .option('--name <name>', 'a name for the run in the store')
  .option('--json', 'print JSON')
  .action(async (dir: string, o: { name?: string }, cmd: Command) => {
    const { importRun } = await import('../interop/import-run.js');
    const store = openStore(cmd);
    try {
      const r = await importRun(store, dir, { name: o.name, log: (l) => progress(cmd, l) });
      for (const n of r.notes) process.stderr.write(`note: ${n}\n`);
      emit(
        cmd,
        {
          run_id: r.runId,
          created: r.created,
          output_dir: r.outputDir,
          trainer: r.trainer,
          method: r.method,
          steps: r.steps,
          max_steps: r.maxSteps,
          metrics: r.metrics,
          first_loss: r.firstLoss,
          last_loss: r.lastLoss,
          val_loss: r.valLoss,
          base_checkpoint_id: r.baseCheckpointId,
          base_matched_by: r.baseMatchedBy,
          checkpoints: r.checkpoints.map((c) => ({ path: c.path, step: c.step, kind: c.kind, checkpoint_id: c.checkpointId })),
          notes: r.notes,
        },
        () =>
          [
            `${r.created ? 'imported' : 'updated'} run ${r.runId} (${r.method}, ${r.steps}${r.maxSteps ? ` of ${r.maxSteps}` : ''} steps) from ${r.outputDir}`,
            `loss ${r.firstLoss?.toFixed(4) ?? '—'} → ${r.lastLoss?.toFixed(4) ?? '—'}${r.valLoss !== null ? `, validation ${r.valLoss.toFixed(4)}` : ''}; metrics: ${Object.entries(r.metrics).map(([k, v]) => `${k} ×${v}`).join(', ')}`,
            `started from: ${r.baseCheckpointId !== null ? `checkpoint ${r.baseCheckpointId} (matched by fingerprint)` : 'unknown'}`,
            ...r.checkpoints.map((c) => `checkpoint ${c.checkpointId}: ${c.path}${c.kind === 'adapter' ? ' (PEFT adapter)' : ''}`),
            `see it with: blocklab runs show ${r.runId}`,
          ].join('\n'),
      );
    } finally {
      store.close();
    }
  });

// ---------------------------------------------------------------------------- runs
function runLine(r: RunRow): string[] {
  const summary = (r.summary ?? {}) as Record<string, unknown>;
  const loss = typeof summary.lastLoss === 'number' ? summary.lastLoss.toFixed(3) : '';
  const steps = r.totalSteps ? `${r.lastStep ?? 0}/${r.totalSteps}` : String(r.lastStep ?? '');
  return [String(r.id), r.kind, r.method ?? '', r.status, steps, loss, (r.startedAt ?? '').replace('T', ' ').slice(0, 19), r.name ?? r.outDir ?? ''];
}

function grid(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  return [fmt(header), ...rows.map(fmt)].join('\n');
}

const runs = program
  .command('runs')
  .description('runs in the experiment store; `runs show ID` for one with its metrics, `runs resume ID` to continue one')
  .option('--limit <n>', 'most runs to list', intOption('--limit'), 50)
  .option('--json', 'print JSON')
  .action((o: { limit: number }, cmd: Command) => {
    const store = openStore(cmd);
    try {
      const list = store.listRuns({ limit: o.limit });
      emit(cmd, { store: store.path, runs: list }, () =>
        list.length === 0 ? `no runs yet in ${store.path}` : grid(['id', 'kind', 'method', 'status', 'steps', 'loss', 'started (UTC)', 'name / out'], list.map(runLine)),
      );
    } finally {
      store.close();
    }
  });

runs
  .command('show')
  .description('one run: its configuration, outcome and metrics')
  .argument('<id>', 'run id', intOption('run id'))
  .option('--json', 'print JSON (with every metric row)')
  .action((id: number, _o, cmd: Command) => {
    const store = openStore(cmd);
    try {
      const run = store.getRun(id);
      if (!run) throw new BlocklabError(`there is no run ${id} in ${store.path}; list them with blocklab runs`);
      const metrics = store.getMetrics(id);
      emit(cmd, { run, metrics }, () => {
        const rows: [string, string][] = [
          ['run', `${run.id} ${run.kind} ${run.method ?? ''} — ${run.status}`],
          ['out', run.outDir ?? ''],
          ['started / ended', `${run.startedAt ?? ''} / ${run.endedAt ?? ''}`],
          ['steps', `${run.lastStep ?? 0}${run.totalSteps ? ` of ${run.totalSteps}` : ''}`],
          ['backend, seed', `${run.backend ?? '?'}, ${run.seed ?? '?'}`],
        ];
        const imported = (run.config as { imported?: { from?: string; trainer?: string } } | null)?.imported;
        if (imported?.from) rows.push(['imported from', `${imported.from} (${imported.trainer ?? 'trainer'})`]);
        if (run.error) rows.push(['error', run.error]);
        const byName = new Map<string, { step: number; value: number }[]>();
        for (const m of metrics) {
          if (!byName.has(m.name)) byName.set(m.name, []);
          byName.get(m.name)!.push({ step: m.step, value: m.value });
        }
        for (const [name, points] of byName) {
          const values = points.map((p) => p.value);
          rows.push([name, `${points.length} points, first ${values[0].toPrecision(4)}, last ${values[values.length - 1].toPrecision(4)}, min ${Math.min(...values).toPrecision(4)}`]);
        }
        return table(rows) + '\n\nconfig: ' + JSON.stringify(run.config);
      });
    } finally {
      store.close();
    }
  });

runs
  .command('resume')
  .description('continue a cancelled or interrupted training run from its newest checkpoint')
  .argument('<id>', 'run id', intOption('run id'))
  .option('--json', 'print one JSON document at the end')
  .action(async (id: number, _o, cmd: Command) => {
    const store = openStore(cmd);
    try {
      await runTraining(cmd, resumableTrainJob(store, id), store, id);
    } finally {
      store.close();
    }
  });

// ---------------------------------------------------------------------------- bench
program
  .command('bench')
  .description('the performance suite: training tokens/s (blocks vs full), prefill and decode tokens/s, checkpoint load MB/s, peak memory')
  .option('--shapes <list>', 'models to measure: demo, tinyllama, tinyllama-1b (the real 1.1 B config: minutes and 5 GB of disk; comma-separated)', 'demo,tinyllama')
  .option('--quick', 'a few steps only: a smoke run, not a measurement')
  .option('--vs-torch', 'run the same training step in PyTorch (/usr/bin/python3 with python3-torch, or $BLOCKLAB_BENCH_PYTHON) and print the ratios')
  .option('--profile', 'also show where the block-only step spends its time (phases and kernels)')
  .option('--json', 'print one JSON document with every figure')
  .action(async (o: { shapes: string; quick?: boolean; vsTorch?: boolean; profile?: boolean }, cmd: Command) => {
    const { runBench, parseShapes, formatBenchReport } = await import('../bench/index.js');
    const report = await runBench({
      shapes: parseShapes(o.shapes),
      quick: o.quick ?? false,
      vsTorch: o.vsTorch ?? false,
      profile: o.profile ?? false,
      backend: globals(cmd).backend,
      log: (line) => progress(cmd, line),
    });
    emit(cmd, report, () => formatBenchReport(report));
  });

// ---------------------------------------------------------------------------- eval, compare
interface EvalCliOptions {
  bench: string[];
  shots: number;
  limit?: number;
  batch: number;
  maxLength?: number;
  seed: number;
  force?: boolean;
  name?: string;
  outputPath?: string;
  logSamples?: boolean;
}

/** Options shared by eval and compare; Ctrl-C cancels between batches and marks the run cancelled. */
async function withEvalOptions<T>(cmd: Command, o: EvalCliOptions, body: (opts: import('../engine/eval.js').CompareOptions) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  const onSigint = () => {
    process.stderr.write('cancelling after this batch (Ctrl-C again to kill)…\n');
    abort.abort();
  };
  process.once('SIGINT', onSigint);
  try {
    return await body({
      shots: o.shots,
      limit: o.limit ?? null,
      batch: o.batch,
      maxLength: o.maxLength ?? null,
      seed: o.seed,
      force: o.force ?? false,
      name: o.name,
      ...(o.outputPath ? { output: { dir: o.outputPath, logSamples: o.logSamples ?? false } } : {}),
      backend: globals(cmd).backend,
      signal: abort.signal,
      onProgress: evalProgressPrinter((line) => progress(cmd, line)),
      log: (line) => progress(cmd, line),
    });
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/** At most one progress line a second, and the last one of each benchmark. */
function evalProgressPrinter(write: (line: string) => void) {
  let last = 0;
  return (p: { checkpoint: string; benchmark: string; done: number; total: number; unit: string; elapsedSeconds: number; etaSeconds: number | null }) => {
    const now = performance.now();
    if (p.done < p.total && now - last < 1000) return;
    last = now;
    const tail = p.done < p.total ? `ETA ${p.etaSeconds === null ? '?' : formatDuration(p.etaSeconds)}` : `${p.elapsedSeconds.toFixed(1)} s`;
    write(`${p.checkpoint} × ${p.benchmark}: ${p.done}/${p.total} ${p.unit}, ${tail}`);
  };
}

function addEvalOptions(c: Command): Command {
  return c
    .requiredOption('--bench <paths...>', 'benchmark task files (JSONL) or builtin:NAME (put it after the checkpoints)')
    .option('--shots <k>', 'few-shot examples before each item', intOption('--shots'), 0)
    .option('--limit <n>', 'only the first N items of each benchmark', intOption('--limit'))
    .option('--batch <b>', 'sequences per forward pass', intOption('--batch'), 8)
    .option('--max-length <n>', "longest model input and perplexity window (default: the model's max_position_embeddings)", intOption('--max-length'))
    .option('--seed <s>', 'few-shot sampling seed', intOption('--seed'), 1234)
    .option('--force', 'recompute results the store already holds')
    .option('--name <name>', 'a name for the run in the store')
    .option('--output-path <dir>', "also write lm-evaluation-harness's results file per checkpoint (DIR/<model>/results_<date>.json)")
    .option('--log-samples', 'with --output-path: per-document samples_<task>_<date>.jsonl as the harness writes them (recomputes instead of reusing)')
    .option('--json', 'print one JSON document at the end');
}

addEvalOptions(
  program
    .command('eval')
    .description('score checkpoints on benchmarks as lm-evaluation-harness does (acc/acc_norm, perplexities, exact match); results are stored and reused')
    .argument('<models...>', 'Hugging Face checkpoint folders'),
).action(async (models: string[], o: EvalCliOptions, cmd: Command) => {
  const { runEval, formatEvalTable } = await import('../engine/eval.js');
  if (o.logSamples && !o.outputPath) throw new BlocklabError('--log-samples needs --output-path DIR (where the samples files go)');
  const store = openStore(cmd);
  try {
    const report = await withEvalOptions(cmd, o, (opts) => runEval(store, { ...opts, models, benchmarks: o.bench }));
    emit(cmd, report, () => formatEvalTable(report));
  } finally {
    store.close();
  }
});

addEvalOptions(
  program
    .command('compare')
    .description('forgetting (old-domain benchmarks) and gain (new-domain ones) of checkpoints against a base, per benchmark')
    .requiredOption('--base <model>', 'the base checkpoint')
    .argument('<models...>', 'checkpoints to compare with the base'),
).action(async (models: string[], o: EvalCliOptions & { base: string }, cmd: Command) => {
  const { compareForgetting, formatCompareTable } = await import('../engine/eval.js');
  const store = openStore(cmd);
  try {
    const report = await withEvalOptions(cmd, o, (opts) => compareForgetting(store, o.base, models, o.bench, opts));
    emit(cmd, report, () => formatCompareTable(report));
  } finally {
    store.close();
  }
});

// ---------------------------------------------------------------------------- import-eval
program
  .command('import-eval')
  .description("lm-evaluation-harness results (the results_<date>.json of lm_eval --output_path) into the store as a checkpoint's results; compare them with --bench lm-eval:TASK")
  .argument('<results>', 'the results JSON file')
  .requiredOption('--model <dir>', 'the checkpoint folder those results are of')
  .option('--new <tasks...>', 'tasks of the new domain (their rise is gain); the others are old-domain (their drop is forgetting)')
  .option('--domain <name>', 'domain tag of the --new tasks', 'new')
  .option('--name <name>', 'a name for the run in the store')
  .option('--json', 'print JSON')
  .action(async (file: string, o: { model: string; new?: string[]; domain: string; name?: string }, cmd: Command) => {
    const { importHarnessResults } = await import('../interop/lm-eval.js');
    const store = openStore(cmd);
    try {
      const r = await importHarnessResults(store, file, { model: o.model, newTasks: o.new, domain: o.domain, name: o.name });
      for (const s of r.skipped) process.stderr.write(`skipped ${s.task}: ${s.reason}\n`);
      emit(cmd, { run_id: r.runId, checkpoint_id: r.checkpointId, tasks: r.tasks, skipped: r.skipped }, () =>
        [
          `run ${r.runId}: ${r.tasks.length} task(s) of ${o.model} imported`,
          ...r.tasks.map(
            (t) =>
              `  ${t.task} (${t.kind}, ${t.role}, n=${t.n}): ` +
              Object.entries(t.metrics)
                .map(([k, v]) => `${k} ${v.value ?? '—'}${v.stderr !== null ? ` ± ${v.stderr.toPrecision(3)}` : ''}`)
                .join(', '),
          ),
          `compare with: blocklab compare --base BASE ${o.model} --bench ${r.tasks.map((t) => `lm-eval:${t.task}`).join(' ')}`,
        ].join('\n'),
      );
    } finally {
      store.close();
    }
  });

// ---------------------------------------------------------------------------- serve
program
  .command('serve')
  .description('the notebook app in a browser: serves the built UI and its API on 127.0.0.1, guarded by a token in the printed URL (for a GPU box over an SSH tunnel)')
  .option('--port <n>', 'port on 127.0.0.1 (0 picks a free one)', intOption('--port'), 7860)
  .option('--ui <dir>', 'the built renderer (default: out/renderer; build it with npm run build)')
  .option('--json', 'print {"url", "port", "store"} instead of the bare URL')
  .action(async (o: { port: number; ui?: string }, cmd: Command) => {
    const { serve } = await import('../server/index.js');
    const storePath = resolvePath(globals(cmd).store ?? defaultStorePath());
    const store = openStore(cmd);
    let server;
    try {
      server = await serve({ store, storePath, userDataDir: dirname(storePath), port: o.port, rendererDir: o.ui });
    } catch (e) {
      store.close();
      throw e;
    }
    // A promise nobody awaited that failed is a bug; it must not take the server and every
    // running job down with it. It is reported (and the fuzz tests look for this line).
    process.on('unhandledRejection', (e) => process.stderr.write(`blocklab serve: internal error (please report it): ${(e as Error)?.stack ?? String(e)}\n`));
    // the URL alone on stdout (scripts read it); with --json, one document with it
    writeStdout(globals(cmd).json ? `${JSON.stringify({ url: server.url, port: server.port, store: storePath })}\n` : `${server.url}\n`);
    process.stderr.write(`Blocklab is serving ${storePath}; open the URL above (through an SSH tunnel: ssh -L ${server.port}:127.0.0.1:${server.port} HOST). Ctrl-C stops it.\n`);
    await new Promise<void>((done) => {
      const stop = () => done();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    process.stderr.write('stopping: running jobs write a checkpoint first…\n');
    await server.close();
    // let training jobs reach their checkpoint and record how they ended
    const deadline = Date.now() + 30_000;
    while (server.api.jobs.list().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    store.close();
  });

// ---------------------------------------------------------------------------- demo
program
  .command('demo')
  .description('the LLaMA Pro experiment in miniature on the bundled model and data: expand, tune 4 ways, measure forgetting, write a report')
  .option('--out <dir>', 'where the checkpoints, runs and report go', 'blocklab-demo')
  .option('--steps <n>', 'optimizer steps per method (same token budget for all)', intOption('--steps'), DEMO_STEPS_DEFAULT)
  .option('--limit <n>', 'at most N items per benchmark (quicker, noisier)', intOption('--limit'))
  .option('--no-pdf', 'skip the PDF (HTML and Markdown only)')
  .option('--overwrite', 'replace an earlier demo in --out')
  .option('--json', 'print one JSON document at the end')
  .action(async (o: { out: string; steps: number; limit?: number; pdf: boolean; overwrite?: boolean }, cmd: Command) => {
    const { runDemo } = await import('../demo/run-demo.js');
    const { formatCompareTable } = await import('../engine/eval.js');
    const store = openStore(cmd);
    const progress = new ProgressPrinter();
    const controller = new AbortController();
    const onSigint = () => {
      progress.break();
      process.stderr.write('stopping the demo…\n');
      controller.abort();
    };
    process.on('SIGINT', onSigint);
    try {
      const r = await runDemo({
        out: o.out,
        store,
        steps: o.steps,
        limit: o.limit,
        pdf: o.pdf,
        overwrite: o.overwrite,
        signal: controller.signal,
        log: (line) => {
          progress.break();
          process.stderr.write(line + '\n');
        },
        events: { onStep: (m) => progress.step(m), onEval: (_s, v) => progress.eval(v) },
      });
      emit(
        cmd,
        {
          out: r.out,
          tokens_per_method: r.tokensPerMethod,
          runs: r.runs,
          compare: r.compare,
          report: { html: r.report.html, markdown: r.report.markdown, pdf: r.report.pdf, pdf_error: r.report.pdfError ?? null },
          seconds: r.seconds,
        },
        () =>
          [
            '',
            formatCompareTable(r.compare),
            '',
            table(r.runs.map((x) => [x.name, `loss ${Number(x.firstLoss).toFixed(3)} → ${Number(x.lastLoss).toFixed(3)}, val ${Number(x.valLoss).toFixed(3)}, ${formatCount(Number(x.trainableParams))} trainable, ${Math.round(Number(x.tokensPerSecond))} tok/s`] as [string, string])),
            '',
            `report: ${r.report.html}`,
            `        ${r.report.markdown}`,
            `        ${r.report.pdf ?? `(no PDF: ${r.report.pdfError ?? 'skipped'})`}`,
            `${r.tokensPerMethod.toLocaleString('en-US')} training tokens per method; ${formatDuration(r.seconds)} in all`,
          ].join('\n'),
      );
    } finally {
      process.off('SIGINT', onSigint);
      store.close();
    }
  });

// ---------------------------------------------------------------------------- report
program
  .command('report')
  .description('write a report (HTML with charts, Markdown, PDF) of training runs and/or a forgetting comparison')
  .argument('[runs...]', 'training run ids (see blocklab runs)')
  .option('--base <model>', 'compare against this checkpoint (with --checkpoints and --bench)')
  .option('--checkpoints <dirs...>', 'checkpoints to compare with --base')
  .option('--bench <specs...>', 'benchmarks for the comparison (files or builtin:NAME)')
  .option('--out <dir>', 'folder for report.html, report.md, report.pdf', 'blocklab-report')
  .option('--title <text>', 'report title')
  .option('--no-pdf', 'skip the PDF')
  .option('--overwrite', 'replace a report Blocklab wrote earlier in --out')
  .option('--json', 'print JSON')
  .action(async (runIdsText: string[], o: { base?: string; checkpoints?: string[]; bench?: string[]; out: string; title?: string; pdf: boolean; overwrite?: boolean }, cmd: Command) => {
    const runIds = runIdsText.map((x) => {
      const n = Number(x);
      if (!Number.isInteger(n) || n <= 0) throw new BlocklabError(`"${x}" is not a run id; list runs with blocklab runs`);
      return n;
    });
    if (o.base && (!o.checkpoints?.length || !o.bench?.length)) throw new BlocklabError('--base needs --checkpoints DIR.. and --bench FILE|builtin:NAME..');
    if (!o.base && runIds.length === 0) throw new BlocklabError('give training run ids, or --base with --checkpoints and --bench for a forgetting comparison');
    const { buildRunReport, checkpointLabel, forgettingFromCompare, writeReport } = await import('../report/index.js');
    const { compareForgetting } = await import('../engine/eval.js');
    const store = openStore(cmd);
    try {
      let forgetting = null;
      if (o.base) {
        const c = await compareForgetting(store, o.base, o.checkpoints!, o.bench!, { log: (l) => process.stderr.write(l + '\n') });
        forgetting = forgettingFromCompare(c, checkpointLabel);
      }
      const data = buildRunReport(store, runIds, { title: o.title, forgetting });
      const r = await writeReport(data, o.out, { pdf: o.pdf, overwrite: o.overwrite });
      emit(cmd, { html: r.html, markdown: r.markdown, pdf: r.pdf, pdf_error: r.pdfError ?? null }, () =>
        [`wrote ${r.html}`, `      ${r.markdown}`, r.pdf ? `      ${r.pdf}` : `      (no PDF: ${r.pdfError ?? 'skipped'})`].join('\n'),
      );
    } finally {
      store.close();
    }
  });

// ---------------------------------------------------------------------------- make-tiny
program
  .command('make-tiny')
  .description('write a tiny random checkpoint in the Hugging Face layout (for trying the commands and for tests)')
  .requiredOption('--out <dir>', 'output folder')
  .addOption(new Option('--arch <arch>', 'architecture').choices(['llama', 'mistral', 'qwen2']).default('llama'))
  .option('--layers <n>', 'decoder blocks', intOption('--layers'), 4)
  .option('--hidden <n>', 'hidden size', intOption('--hidden'), 64)
  .option('--heads <n>', 'attention heads', intOption('--heads'), 4)
  .option('--kv-heads <n>', 'key/value heads (fewer than --heads: grouped-query attention)', intOption('--kv-heads'), 2)
  .option('--intermediate <n>', 'MLP width', intOption('--intermediate'), 176)
  .option('--dtype <dtype>', 'f32, f16 or bf16', 'f32')
  .option('--untied', 'separate lm_head instead of tied embeddings')
  .option('--seed <s>', 'random seed', intOption('--seed'), 0)
  .option('--overwrite', 'replace --out if it exists')
  .option('--json', 'print JSON')
  .action(async (o: { out: string; arch: string; layers: number; hidden: number; heads: number; kvHeads: number; intermediate: number; dtype: string; untied?: boolean; seed: number; overwrite?: boolean }, cmd: Command) => {
    const dtype = parseDtypeOption(o.dtype);
    if (!dtype) throw new BlocklabError(`--dtype ${o.dtype} is not supported; use f32, f16 or bf16`);
    const architecture = ({ llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' } as const)[o.arch as 'llama'] as Architecture;
    for (const [name, v] of [['--layers', o.layers], ['--hidden', o.hidden], ['--heads', o.heads], ['--kv-heads', o.kvHeads], ['--intermediate', o.intermediate]] as const) {
      if (v <= 0) throw new BlocklabError(`${name} must be positive (got ${v})`);
    }
    const config = await makeTinyCheckpoint(o.out, {
      architecture,
      layers: o.layers,
      hidden: o.hidden,
      heads: o.heads,
      kvHeads: o.kvHeads,
      intermediate: o.intermediate,
      dtype,
      tie: !o.untied,
      seed: o.seed,
      overwrite: o.overwrite,
    });
    emit(cmd, { out: o.out, config }, () => `wrote a random ${o.layers}-layer ${architecture} to ${o.out} (try: blocklab inspect ${o.out})`);
  });

// ----------------------------------------------------------------------------

async function readTextFile(file: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (e) {
    throw new BlocklabError(`cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { file });
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new BlocklabError('is not valid UTF-8 text; convert it to UTF-8 first', { file });
  }
}

/** "4,9" → [4, 9] (--trainable-layers) */
function parseLayerList(text: string): number[] {
  return text.split(',').map((x) => {
    const n = Number(x.trim());
    if (!Number.isInteger(n)) throw new BlocklabError(`--trainable-layers: "${x}" is not a layer index; give e.g. 4,9`);
    return n;
  });
}

async function readIdsFile(file: string): Promise<number[]> {
  const text = await readTextFile(file);
  let ids: unknown;
  try {
    ids = JSON.parse(text);
  } catch (e) {
    throw new BlocklabError(`is not valid JSON (${jsonSyntaxProblem(e)}); expected an array of token ids like [1, 2, 3]`, { file });
  }
  if (!Array.isArray(ids) || !ids.every((x) => Number.isInteger(x) && x >= 0)) {
    throw new BlocklabError('must be a JSON array of non-negative integer token ids, like [1, 2, 3]', { file });
  }
  return ids as number[];
}

/** Ids from --ids-file must be scoreable by this model; the message names the file. */
function checkIds(ids: number[], vocabSize: number, file: string): void {
  if (ids.length < 2) {
    throw new BlocklabError(`holds ${ids.length} token id(s); scoring needs at least two (a context and a next token)`, { file });
  }
  const bad = ids.findIndex((id) => id >= vocabSize);
  if (bad >= 0) {
    throw new BlocklabError(
      `token id ${ids[bad]} (at index ${bad}) is outside the model's vocabulary (ids 0..${vocabSize - 1}); use ids from this model's tokenizer`,
      { file },
    );
  }
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

async function main(argv: string[]): Promise<number> {
  const debug = argv.includes('--debug');
  const json = argv.includes('--json');
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError && (e.exitCode === 0 || e.code === 'commander.help')) {
      // --help and --version end here too, with exit code 0; help shown for a missing command has printed itself
      return e.exitCode;
    }
    let message: string;
    e = explainOutOfMemory(e); // a backend out of memory is said as that, with the plan's advice
    if (e instanceof CommanderError) {
      // a usage error (unknown option, missing argument, invalid choice): one line that says where help is
      const sub = program.commands.find((c) => argv.slice(2).includes(c.name()));
      message = `${e.message.replace(/^error: /, '').replace(/\.$/, '')}; see blocklab ${sub ? `${sub.name()} ` : ''}--help`;
    } else {
      message = e instanceof BlocklabError ? e.message : `internal error: ${(e as Error)?.message ?? String(e)}`;
    }
    if (json) writeStdout(JSON.stringify({ error: oneLine(message) }) + '\n');
    process.stderr.write(`blocklab: ${oneLine(message)}\n`);
    if (debug && e instanceof Error && e.stack) process.stderr.write(e.stack + '\n');
    else if (!(e instanceof BlocklabError) && !(e instanceof CommanderError)) process.stderr.write('(this looks like a bug; run again with --debug for the stack trace)\n');
    return e instanceof CommanderError ? e.exitCode : 1;
  }
}

process.exitCode = await main(process.argv);
