/**
 * Hugging Face fast tokenizers (tokenizer.json) for Blocklab, on top of @huggingface/tokenizers
 * and @huggingface/jinja, behaving like transformers' AutoTokenizer for LLaMA-family checkpoints:
 *
 * - encode() adds BOS/EOS the way the post-processor in tokenizer.json does, corrected by the
 *   `add_bos_token` / `add_eos_token` flags of tokenizer_config.json when they are given (as
 *   transformers' LlamaTokenizerFast does when it rebuilds the post-processor). Two defaults
 *   when the flags are absent: tokenizer_class LlamaTokenizer(Fast) adds BOS (transformers'
 *   default add_bos_token=True), and a `<|begin_of_text|>` BOS with a post-processor that adds
 *   nothing (the first Llama 3 uploads, before Meta added a TemplateProcessing to tokenizer.json)
 *   adds BOS, as the fixed files and Meta's reference code do.
 * - decode() honours tokenizer_config's clean_up_tokenization_spaces (false when absent, the
 *   current transformers default; the JS library on its own would default to true).
 * - applyChatTemplate() renders the Jinja chat template with messages, add_generation_prompt and
 *   the special-token strings, like transformers' apply_chat_template(tokenize=False). Its output
 *   already holds any BOS the template writes: encode it with { addSpecialTokens: false }.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { BlocklabError } from './errors.js';
import { renderTemplateSandboxed } from './template-sandbox.js';
import { jsonSyntaxProblem } from '../../shared/json-error.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

type Json = Record<string, unknown>;

/** Extra files that only contribute EOS ids. */
interface ModelFiles {
  generationConfig?: Json;
  modelConfig?: Json;
  /** a chat template kept outside tokenizer_config.json (chat_template.jinja / chat_template.json) */
  chatTemplate?: { template: string; file: string };
}

const SPECIAL_TOKEN_KEYS = [
  'bos_token',
  'eos_token',
  'unk_token',
  'sep_token',
  'pad_token',
  'cls_token',
  'mask_token',
] as const;

const CONVERT_HINT =
  'Blocklab needs the fast-tokenizer file tokenizer.json; create it with python -c "from transformers import AutoTokenizer; AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)"';

export class HfTokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: number[];
  readonly chatTemplate: string | null;

  private readonly tok: Tokenizer;
  private readonly modelType: string;
  private readonly bosToken: string | null;
  private readonly specialTokenStrings: Record<string, string>;
  /** ids put before / after the text by encode() with special tokens */
  private readonly prefixIds: number[];
  private readonly suffixIds: number[];
  private readonly cleanUpSpaces: boolean;
  private readonly tokenizerFile: string;
  private readonly templateFile: string;

  private constructor(tokenizerJson: Json, tokenizerConfig: Json, dir: string | undefined, files: ModelFiles) {
    this.tokenizerFile = dir ? join(dir, 'tokenizer.json') : 'tokenizer.json';
    const configFile = dir ? join(dir, 'tokenizer_config.json') : 'tokenizer_config.json';

    // special tokens may be strings or AddedToken objects ({content: ...}); the library wants strings
    const special: Record<string, string> = {};
    for (const key of SPECIAL_TOKEN_KEYS) {
      const s = tokenString(tokenizerConfig[key]);
      if (s !== null) special[key] = s;
    }
    const additional = Array.isArray(tokenizerConfig.additional_special_tokens)
      ? tokenizerConfig.additional_special_tokens.map(tokenString).filter((s): s is string => s !== null)
      : [];
    this.specialTokenStrings = special;
    this.cleanUpSpaces = tokenizerConfig.clean_up_tokenization_spaces === true;

    const libConfig: Json = {
      ...tokenizerConfig,
      ...special,
      // also lists bos/eos/pad/... so that decode(skipSpecialTokens) drops them as transformers does
      additional_special_tokens: [...new Set([...additional, ...Object.values(special)])],
      clean_up_tokenization_spaces: this.cleanUpSpaces,
    };
    for (const key of SPECIAL_TOKEN_KEYS) if (!(key in special)) delete libConfig[key];

    try {
      this.tok = new Tokenizer(tokenizerJson, libConfig);
    } catch (err) {
      throw new BlocklabError(
        `@huggingface/tokenizers cannot load this tokenizer (${oneLine(err)}); re-save it with a current transformers (AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR))`,
        { file: this.tokenizerFile, cause: err },
      );
    }

    const model = (tokenizerJson.model ?? {}) as Json;
    this.modelType = typeof model.type === 'string' ? model.type : inferModelType(model);

    let maxId = -1;
    for (const id of this.tok.get_vocab(true).values()) if (id > maxId) maxId = id;
    this.vocabSize = maxId + 1;

    const idOf = (key: 'bos_token' | 'eos_token'): number | null => {
      const s = special[key];
      if (s === undefined) return null;
      const id = this.tok.token_to_id(s);
      if (id === undefined) {
        throw new BlocklabError(
          `${key} ${JSON.stringify(s)} is not a token of tokenizer.json; set ${key} to one of its tokens (or null)`,
          { file: configFile },
        );
      }
      return id;
    };

    // what the post-processor adds around a single sequence
    let probePrefix: number[] = [];
    let probeSuffix: number[] = [];
    try {
      const bare = this.tok.encode('a', { add_special_tokens: false }).ids;
      const full = this.tok.encode('a', { add_special_tokens: true }).ids;
      const at = indexOfRun(full, bare);
      if (at >= 0) {
        probePrefix = full.slice(0, at);
        probeSuffix = full.slice(at + bare.length);
      }
    } catch (err) {
      throw new BlocklabError(`@huggingface/tokenizers cannot encode with this tokenizer (${oneLine(err)}); check that tokenizer.json is complete`, {
        file: this.tokenizerFile,
        cause: err,
      });
    }

    const configBos = idOf('bos_token');
    const eosId = idOf('eos_token');
    this.bosToken = special.bos_token ?? null;
    if (configBos === null && !('bos_token' in tokenizerConfig) && probePrefix.length === 1) {
      // no tokenizer_config (or no bos_token in it): the post-processor's leading token is the BOS
      this.bosTokenId = probePrefix[0];
      this.bosToken = this.tok.id_to_token(probePrefix[0]) ?? null;
    } else {
      this.bosTokenId = configBos;
    }

    const tokenizerClass = String(tokenizerConfig.tokenizer_class ?? '');
    let addBos: boolean | undefined =
      typeof tokenizerConfig.add_bos_token === 'boolean' ? tokenizerConfig.add_bos_token : undefined;
    if (addBos === undefined && /^LlamaTokenizer(Fast)?$/.test(tokenizerClass)) addBos = true;
    if (
      addBos === undefined &&
      this.bosToken === '<|begin_of_text|>' &&
      probePrefix.length === 0 &&
      probeSuffix.length === 0
    ) {
      addBos = true;
    }
    const addEos: boolean | undefined =
      typeof tokenizerConfig.add_eos_token === 'boolean' ? tokenizerConfig.add_eos_token : undefined;

    const prefix = [...probePrefix];
    const suffix = [...probeSuffix];
    if (this.bosTokenId !== null) {
      if (addBos === true && prefix[0] !== this.bosTokenId) prefix.unshift(this.bosTokenId);
      if (addBos === false && prefix[0] === this.bosTokenId) prefix.shift();
    }
    if (eosId !== null) {
      if (addEos === true && suffix[suffix.length - 1] !== eosId) suffix.push(eosId);
      if (addEos === false && suffix[suffix.length - 1] === eosId) suffix.pop();
    }
    this.prefixIds = prefix;
    this.suffixIds = suffix;

    const eos: number[] = [];
    if (eosId !== null) eos.push(eosId);
    for (const cfg of [files.generationConfig, files.modelConfig]) {
      const v = cfg?.eos_token_id;
      for (const id of Array.isArray(v) ? v : [v]) {
        if (Number.isInteger(id) && !eos.includes(id as number)) eos.push(id as number);
      }
    }
    this.eosTokenIds = eos;

    const fromConfig = pickChatTemplate(tokenizerConfig.chat_template);
    if (fromConfig !== null) {
      this.chatTemplate = fromConfig;
      this.templateFile = configFile;
    } else {
      this.chatTemplate = files.chatTemplate?.template ?? null;
      this.templateFile = files.chatTemplate?.file ?? configFile;
    }
  }

  /**
   * Loads tokenizer.json (required), tokenizer_config.json, and for the EOS ids
   * generation_config.json and config.json, from a model folder.
   */
  static async fromFolder(dir: string): Promise<HfTokenizer> {
    const st = await stat(dir).catch(() => null);
    if (!st) throw new BlocklabError('no such folder; give the folder of a Hugging Face checkpoint', { file: dir });
    if (!st.isDirectory()) throw new BlocklabError('not a folder; give the folder of a Hugging Face checkpoint', { file: dir });

    const tokenizerPath = join(dir, 'tokenizer.json');
    if (!(await isFile(tokenizerPath))) {
      const slow = (await isFile(join(dir, 'tokenizer.model'))) ? ' (it has only tokenizer.model, the slow SentencePiece file)' : '';
      throw new BlocklabError(`the folder has no tokenizer.json${slow}; ${CONVERT_HINT.replace(/DIR/g, `'${dir}'`)}`, {
        file: dir,
      });
    }
    const tokenizerJson = await readJsonObject(tokenizerPath, true);
    const tokenizerConfig = (await readJsonObject(join(dir, 'tokenizer_config.json'), false)) ?? {};
    const files: ModelFiles = {
      generationConfig: (await readJsonObject(join(dir, 'generation_config.json'), false)) ?? undefined,
      modelConfig: (await readJsonObject(join(dir, 'config.json'), false)) ?? undefined,
    };
    if (pickChatTemplate(tokenizerConfig.chat_template) === null) {
      // newer transformers save the template beside tokenizer_config.json
      const jinjaPath = join(dir, 'chat_template.jinja');
      if (await isFile(jinjaPath)) {
        files.chatTemplate = { template: decodeUtf8(await readFile(jinjaPath), jinjaPath), file: jinjaPath };
      } else {
        const ct = await readJsonObject(join(dir, 'chat_template.json'), false);
        const t = ct ? pickChatTemplate(ct.chat_template) : null;
        if (t !== null) files.chatTemplate = { template: t, file: join(dir, 'chat_template.json') };
      }
    }
    return new HfTokenizer(tokenizerJson!, tokenizerConfig, dir, files);
  }

  /** Builds a tokenizer from already-parsed files; `dir` only names the files in error messages. */
  static fromJson(tokenizerJson: object, tokenizerConfig?: object, dir?: string): HfTokenizer {
    const file = dir ? join(dir, 'tokenizer.json') : 'tokenizer.json';
    if (!isPlainObject(tokenizerJson)) {
      throw new BlocklabError('is not a JSON object; re-save it with save_pretrained', { file });
    }
    if (tokenizerConfig !== undefined && !isPlainObject(tokenizerConfig)) {
      throw new BlocklabError('is not a JSON object; re-save it with save_pretrained', {
        file: dir ? join(dir, 'tokenizer_config.json') : 'tokenizer_config.json',
      });
    }
    return new HfTokenizer(tokenizerJson, (tokenizerConfig ?? {}) as Json, dir, {});
  }

  /** Token ids of `text`; with special tokens (the default) BOS/EOS as transformers would add them. */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    const ids = this.tok.encode(text, { add_special_tokens: false }).ids;
    if (opts.addSpecialTokens === false) return ids;
    return [...this.prefixIds, ...ids, ...this.suffixIds];
  }

  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize || this.tok.id_to_token(id) === undefined) {
        throw new BlocklabError(
          `token id ${id} is not in the vocabulary (ids 0..${this.vocabSize - 1}); decode ids produced by this tokenizer or a model with the same vocabulary`,
          { file: this.tokenizerFile },
        );
      }
    }
    if (ids.length === 0) return ''; // the library throws on an empty list
    return this.tok.decode(ids, {
      skip_special_tokens: opts.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: this.cleanUpSpaces,
    });
  }

  private readonly neverMasks = new Map<number, Uint8Array | undefined>();

  /**
   * For a model of `modelVocab` output rows: a mask of the ids this tokenizer cannot decode
   * (generate's `never`), or undefined when there are none. A checkpoint whose vocab_size
   * exceeds its tokenizer's (Qwen2.5 pads 151,665 tokens to 152,064) has output rows no text
   * belongs to; sampling one would end generation in an error.
   */
  undecodableIds(modelVocab: number): Uint8Array | undefined {
    if (!this.neverMasks.has(modelVocab)) {
      const mask = new Uint8Array(modelVocab);
      let any = false;
      for (let id = 0; id < modelVocab; id++) {
        if (id >= this.vocabSize || this.tok.id_to_token(id) === undefined) {
          mask[id] = 1;
          any = true;
        }
      }
      this.neverMasks.set(modelVocab, any ? mask : undefined);
    }
    return this.neverMasks.get(modelVocab);
  }

  /** The vocabulary string of a token (byte-level alphabet for byte-level BPE), or null. */
  tokenToString(id: number): string | null {
    return this.tok.id_to_token(id) ?? null;
  }

  /** The id of a vocabulary string, or null. */
  tokenToId(token: string): number | null {
    return this.tok.token_to_id(token) ?? null;
  }

  /** Renders the chat template as transformers' apply_chat_template(messages, tokenize=False) does. */
  applyChatTemplate(messages: ChatMessage[], opts: { addGenerationPrompt?: boolean } = {}): string {
    if (this.chatTemplate === null) {
      throw new BlocklabError(
        'has no chat_template, so chat prompts cannot be built; use a chat/instruct checkpoint or add a chat_template to tokenizer_config.json',
        { file: this.templateFile },
      );
    }
    try {
      // in a worker with a time and memory limit: the template is code from a downloaded file
      return renderTemplateSandboxed(this.chatTemplate, {
        ...this.specialTokenStrings,
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: opts.addGenerationPrompt ?? false,
      });
    } catch (err) {
      throw new BlocklabError(`the chat_template failed to render (${oneLine(err)}); fix the template or pass messages it accepts`, {
        file: this.templateFile,
        cause: err,
      });
    }
  }

  describe(): { kind: string; vocabSize: number; bos: string | null; eos: string[]; hasChatTemplate: boolean } {
    return {
      kind: this.modelType,
      vocabSize: this.vocabSize,
      bos: this.bosTokenId === null ? null : (this.tokenToString(this.bosTokenId) ?? this.bosToken),
      eos: this.eosTokenIds.map((id) => this.tokenToString(id) ?? `#${id}`),
      hasChatTemplate: this.chatTemplate !== null,
    };
  }
}

// ---------------------------------------------------------------------------------------------

/** A special token given as a string or as an AddedToken object ({content: ...}). */
function tokenString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isPlainObject(v) && typeof v.content === 'string') return v.content;
  return null;
}

/** chat_template: a string, or a list of {name, template} of which "default" is used. */
function pickChatTemplate(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v.filter((t): t is { name: unknown; template: string } => isPlainObject(t) && typeof t.template === 'string');
    const def = named.find((t) => t.name === 'default') ?? (named.length === 1 ? named[0] : undefined);
    return def?.template ?? null;
  }
  if (isPlainObject(v) && typeof v.default === 'string') return v.default;
  return null;
}

function inferModelType(model: Json): string {
  if (Array.isArray(model.vocab)) return 'Unigram';
  if ('merges' in model) return 'BPE';
  if ('continuing_subword_prefix' in model) return 'WordPiece';
  return 'unknown';
}

function indexOfRun(haystack: number[], needle: number[]): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function isPlainObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function oneLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/\s*\n\s*/g, ' ').trim();
}

async function isFile(path: string): Promise<boolean> {
  const st = await stat(path).catch(() => null);
  return st !== null && st.isFile();
}

function decodeUtf8(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new BlocklabError('is not valid UTF-8 text (damaged or not a JSON file); download or save it again', { file });
  }
}

/** Reads a JSON object file; a missing optional file gives null. Bad files are BlocklabErrors. */
async function readJsonObject(path: string, required: boolean): Promise<Json | null> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new BlocklabError(`cannot be read (${oneLine(err)}); check the file's permissions`, { file: path, cause: err });
  }
  const text = decodeUtf8(bytes, path);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new BlocklabError(`is not valid JSON (${jsonSyntaxProblem(err)}); download or save it again`, { file: path });
  }
  if (!isPlainObject(value)) {
    throw new BlocklabError('is not a JSON object; download or save it again', { file: path });
  }
  return value;
}
