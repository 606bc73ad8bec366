/**
 * A small, real, byte-level BPE tokenizer in the Hugging Face `tokenizer.json` format, for tiny
 * test and demo models. It is built like GPT-2 / Llama 3 tokenizers: text is split with the GPT-2
 * pre-tokenizer regex, each piece is turned into UTF-8 bytes written in the GPT-2
 * `bytes_to_unicode` alphabet, and BPE merges are applied inside each piece. Because all 256
 * bytes are in the vocabulary, any UTF-8 text encodes and decodes back to itself.
 *
 * Layout of the ids:
 *   0..255                 one token per byte value (id = byte value)
 *   256..256+M-1           one token per merge, in merge order (a merge whose result already exists adds nothing)
 *   then                   the special tokens in SPECIAL_TOKENS order
 */
import { BlocklabError } from './errors.js';

/** The special tokens, in id order after the byte and merge tokens. */
export const SPECIAL_TOKENS = [
  '<|begin_of_text|>',
  '<|end_of_text|>',
  '<|start_header_id|>',
  '<|end_header_id|>',
  '<|eot_id|>',
] as const;

/** The Llama 3 Instruct chat template (the fixed one that honours add_generation_prompt). */
export const LLAMA3_CHAT_TEMPLATE =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/**
 * The pre-tokenizer regex of GPT-2, which is what a `ByteLevel` pre-tokenizer with
 * `use_regex: true` applies (in both the Rust and the JS tokenizers libraries).
 */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's bytes_to_unicode: byte value -> printable character. */
function buildByteAlphabet(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b); // '!'..'~'
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b); // '¡'..'¬'
  for (let b = 0xae; b <= 0xff; b++) printable.push(b); // '®'..'ÿ'
  const table = new Array<string>(256);
  const isPrintable = new Set(printable);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = isPrintable.has(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + n++);
  }
  return table;
}

/** byte value -> character of the byte-level alphabet (index = byte). */
export const BYTE_ALPHABET: readonly string[] = buildByteAlphabet();

const textEncoder = new TextEncoder();

/** Splits text as the ByteLevel pre-tokenizer does and writes each piece in the byte alphabet. */
export function byteLevelWords(text: string): string[] {
  const pieces = text.match(GPT2_SPLIT) ?? [];
  return pieces.map((p) => Array.from(textEncoder.encode(p), (b) => BYTE_ALPHABET[b]).join(''));
}

/**
 * Builds the tokenizer.json and tokenizer_config.json objects of a byte-level BPE tokenizer.
 * `merges` are pairs of existing tokens (byte-alphabet strings), applied in the order given.
 */
export function makeByteLevelTokenizer(opts: { merges?: [string, string][] } = {}): {
  tokenizerJson: object;
  tokenizerConfig: object;
} {
  const vocab: Record<string, number> = {};
  let next = 0;
  for (const ch of BYTE_ALPHABET) vocab[ch] = next++;

  const merges: string[] = [];
  for (const [i, pair] of (opts.merges ?? []).entries()) {
    const [a, b] = pair ?? [];
    if (typeof a !== 'string' || typeof b !== 'string' || !(a in vocab) || !(b in vocab)) {
      throw new BlocklabError(
        `merge ${i} (${JSON.stringify(pair)}) uses a token that is neither a byte nor the result of an earlier merge; ` +
          'give merges in the byte-level alphabet, in the order learned (learnByteLevelMerges produces them)',
      );
    }
    const merged = a + b;
    if (!(merged in vocab)) vocab[merged] = next++;
    // "a b" is the merge format every tokenizers version reads; byte-level tokens never contain a space
    merges.push(`${a} ${b}`);
  }

  const addedTokens = SPECIAL_TOKENS.map((content) => ({
    id: next++,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const bos = addedTokens[0];

  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: {
      type: 'TemplateProcessing',
      single: [
        { SpecialToken: { id: bos.content, type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: bos.content, type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: bos.content, type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: {
        [bos.content]: { id: bos.content, ids: [bos.id], tokens: [bos.content] },
      },
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };

  const addedTokensDecoder: Record<string, object> = {};
  for (const t of addedTokens) {
    const { id, ...rest } = t;
    addedTokensDecoder[String(id)] = rest;
  }
  const tokenizerConfig = {
    added_tokens_decoder: addedTokensDecoder,
    bos_token: '<|begin_of_text|>',
    eos_token: '<|end_of_text|>',
    chat_template: LLAMA3_CHAT_TEMPLATE,
    // keep decode(encode(x)) === x: no " ." -> "." style clean-up
    clean_up_tokenization_spaces: false,
    model_input_names: ['input_ids', 'attention_mask'],
    model_max_length: 1_000_000,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
  return { tokenizerJson, tokenizerConfig };
}

/**
 * A small deterministic BPE trainer. Texts are pre-tokenized exactly like the tokenizer above
 * (GPT-2 regex, then bytes in the byte-level alphabet); then, up to `numMerges` times, the most
 * frequent adjacent pair within words is merged (ties: the lexicographically smallest pair,
 * comparing the left token first, then the right). Stops early when no word has two symbols left.
 */
export function learnByteLevelMerges(texts: string[], numMerges: number): [string, string][] {
  const wordCounts = new Map<string, number>();
  for (const text of texts) {
    for (const w of byteLevelWords(text)) wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
  }
  const words: { symbols: string[]; count: number }[] = [];
  for (const [w, count] of wordCounts) {
    const symbols = Array.from(w);
    if (symbols.length > 1) words.push({ symbols, count });
  }

  const merges: [string, string][] = [];
  const SEP = '\u0000'; // never part of the byte alphabet
  while (merges.length < numMerges) {
    const pairCounts = new Map<string, number>();
    for (const { symbols, count } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = symbols[i] + SEP + symbols[i + 1];
        pairCounts.set(key, (pairCounts.get(key) ?? 0) + count);
      }
    }
    let bestKey: string | null = null;
    let bestPair: [string, string] | null = null;
    let bestCount = 0;
    for (const [key, count] of pairCounts) {
      const pair = key.split(SEP) as [string, string];
      if (
        count > bestCount ||
        (count === bestCount && bestPair !== null && comparePairs(pair, bestPair) < 0)
      ) {
        bestKey = key;
        bestPair = pair;
        bestCount = count;
      }
    }
    if (bestKey === null || bestPair === null) break;
    merges.push(bestPair);

    const [a, b] = bestPair;
    const merged = a + b;
    for (let w = words.length - 1; w >= 0; w--) {
      const symbols = words[w].symbols;
      const out: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === a && symbols[i + 1] === b) {
          out.push(merged);
          i++;
        } else {
          out.push(symbols[i]);
        }
      }
      if (out.length > 1) words[w].symbols = out;
      else words.splice(w, 1); // a single symbol has no pairs left
    }
  }
  return merges;
}

function compareStrings(x: string, y: string): number {
  return x < y ? -1 : x > y ? 1 : 0;
}

function comparePairs(p: [string, string], q: [string, string]): number {
  return compareStrings(p[0], q[0]) || compareStrings(p[1], q[1]);
}
