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
  exportModel,
  generateText,
  initBackend,
  inspectCheckpoint,
  loadModel,
  makeTinyCheckpoint,
  parseDtypeOption,
  scoreIds,
  scoreText,
  type BackendName,
} from '../engine/index.js';
import { ExpansionRequestError, parsePositions, PlacementSchema, type ExpansionRequest } from '../../shared/expansion.js';
import type { Architecture } from '../engine/config.js';
import { formatBytes, formatCount, table } from './format.js';

// Anything a library prints with console.log must not corrupt the one JSON document on stdout.
const writeStdout = (text: string) => process.stdout.write(text);
console.log = (...args: unknown[]) => console.error(...args);
console.info = (...args: unknown[]) => console.error(...args);

interface GlobalOptions {
  json?: boolean;
  debug?: boolean;
  backend?: BackendName | 'auto';
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

const backendOption = new Option('--backend <name>', 'tfjs backend to use').choices(['auto', 'tensorflow-gpu', 'tensorflow-cpu', 'wasm', 'cpu']).default('auto');

const program = new Command('blocklab')
  .description('Block expansion (LLaMA Pro) for LLaMA-family checkpoints: inspect, expand, score, generate, export.')
  .option('--json', 'print exactly one JSON document on stdout')
  .option('--debug', 'print stack traces on errors')
  .addOption(backendOption)
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
      return table(rows);
    });
  });

// ---------------------------------------------------------------------------- doctor
program
  .command('doctor')
  .description('which compute backend is active, and why the others are not')
  .option('--json', 'print JSON')
  .action(async (_o, cmd: Command) => {
    const report = await initBackend(globals(cmd).backend);
    const doc = { ...report, node: process.version, platform: `${process.platform}-${process.arch}` };
    emit(cmd, doc, () => {
      const lines = [`active backend: ${report.active} (tfjs "${report.tfjsBackend}")`, ''];
      for (const c of report.candidates) {
        lines.push(`${c.name === report.active ? '*' : c.available ? '+' : '-'} ${c.name.padEnd(15)} ${c.note}`);
        if (!c.available && c.install) lines.push(`  ${''.padEnd(15)} to get it: ${c.install}`);
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
    const loaded = await loadModel(dir, globals(cmd).backend);
    try {
      if (ids) checkIds(ids, loaded.checkpoint.config.vocabSize, o.idsFile!);
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
  .requiredOption('--prompt <text>', 'the prompt')
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
  .action(async (dir: string, o: { prompt: string; maxTokens: number; temperature: number; topP: number; topK: number; repetitionPenalty: number; stop?: string[]; seed: number; chat?: boolean; system?: string }, cmd: Command) => {
    const json = globals(cmd).json;
    const loaded = await loadModel(dir, globals(cmd).backend);
    try {
      const r = await generateText(loaded, {
        prompt: o.prompt,
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

// ---------------------------------------------------------------------------- export
program
  .command('export')
  .description('write a checkpoint in another format (hf: the Hugging Face layout transformers loads)')
  .argument('<model>', 'Hugging Face checkpoint folder')
  .addOption(new Option('--format <format>', 'output format').choices(['hf', 'gguf']).makeOptionMandatory())
  .requiredOption('--out <path>', 'output folder')
  .option('--dtype <dtype>', 'f32, f16 or bf16 (default: the source dtype, copied bit for bit)')
  .option('--max-shard-size <bytes>', 'largest safetensors shard', intOption('--max-shard-size'))
  .option('--overwrite', 'replace --out if it exists')
  .option('--json', 'print JSON')
  .action(async (dir: string, o: { format: string; out: string; dtype?: string; maxShardSize?: number; overwrite?: boolean }, cmd: Command) => {
    if (o.format === 'gguf') {
      throw new BlocklabError('GGUF export is not available yet (it is planned with llama.cpp verification); use --format hf');
    }
    const dtype = o.dtype === undefined ? undefined : parseDtypeOption(o.dtype);
    if (dtype === null) throw new BlocklabError(`--dtype ${o.dtype} is not supported; use f32, f16 or bf16`);
    const r = await exportModel(dir, { out: o.out, dtype, overwrite: o.overwrite, maxShardBytes: o.maxShardSize });
    emit(cmd, { out: r.dir, format: 'hf', dtype: r.dtype, files: r.files, bytes: r.bytes }, () => `wrote ${r.dir} (${r.dtype}, ${formatBytes(r.bytes)}): ${r.files.join(', ')}`);
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

async function readIdsFile(file: string): Promise<number[]> {
  const text = await readTextFile(file);
  let ids: unknown;
  try {
    ids = JSON.parse(text);
  } catch (e) {
    throw new BlocklabError(`is not valid JSON (${(e as Error).message}); expected an array of token ids like [1, 2, 3]`, { file });
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
