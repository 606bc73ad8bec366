/**
 * Markdown cells, rendered safely: `marked` turns the text into HTML, DOMPurify strips anything
 * that could run (scripts, event handlers, javascript: URLs), and then we go further than its
 * defaults — no remote content (only `data:` images; the CSP would block others anyway, but a
 * broken image is worse than none), no forms or frames, and links that open outside the app.
 */
import DOMPurify from 'dompurify';
import { marked } from 'marked';

const FORBID_TAGS = ['style', 'form', 'input', 'button', 'textarea', 'select', 'iframe', 'frame', 'object', 'embed', 'link', 'meta', 'base', 'video', 'audio', 'source', 'picture'];
const FORBID_ATTR = ['style', 'srcset', 'formaction', 'action', 'ping', 'background', 'poster'];

/** Renders Markdown to sanitised HTML. */
export function renderMarkdown(source: string): string {
  const html = marked.parse(source, { async: false, gfm: true, breaks: false });
  const fragment = DOMPurify.sanitize(html, {
    FORBID_TAGS,
    FORBID_ATTR,
    ALLOW_DATA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  });
  for (const img of Array.from(fragment.querySelectorAll('img'))) {
    const src = img.getAttribute('src') ?? '';
    if (!/^data:image\/(png|jpe?g|gif|webp|svg\+xml);/i.test(src)) {
      const note = document.createElement('span');
      note.className = 'md-removed-image';
      note.textContent = `[image not shown: ${img.getAttribute('alt') || 'remote images are blocked'}]`;
      img.replaceWith(note);
    }
  }
  for (const a of Array.from(fragment.querySelectorAll('a'))) {
    const href = a.getAttribute('href') ?? '';
    a.removeAttribute('target');
    if (/^(https?:|mailto:)/i.test(href)) {
      // opens outside the notebook (a browser tab; Electron hands it to the system browser)
      a.setAttribute('target', '_blank');
      a.setAttribute('rel', 'noopener noreferrer');
    } else if (!href.startsWith('#')) {
      // a relative link would navigate the app itself away from the notebook
      a.removeAttribute('href');
    }
  }
  const holder = document.createElement('div');
  holder.appendChild(fragment);
  return holder.innerHTML;
}
