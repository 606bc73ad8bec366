/** How a chat becomes model input: the tokenizer's template, or plain turns continued as they stand. */
import { describe, expect, it } from 'vitest';
import { conversationPrompt, HfTokenizer } from '../../src/main/engine/index.js';

const demoTokenizer = () => HfTokenizer.fromFolder(new URL('../../resources/demo/base-model', import.meta.url).pathname);

describe('conversationPrompt', () => {
  it('uses the chat template when asked and present', async () => {
    const tok = await demoTokenizer();
    const p = conversationPrompt(tok, [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }]);
    expect(p.templated).toBe(true);
    expect(p.prompt).toContain('<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>');
    expect(p.prompt.endsWith('<|start_header_id|>assistant<|end_header_id|>\n\n')).toBe(true);
  });

  it('without the template, joins the turns and leaves the last one as typed', async () => {
    const tok = await demoTokenizer();
    const one = conversationPrompt(tok, [{ role: 'user', content: 'The meaning of' }], false);
    expect(one).toEqual({ prompt: 'The meaning of', templated: false });
    const three = conversationPrompt(tok, [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }], false);
    expect(three.prompt).toBe('a\n\nb\n\nc');
  });
});
