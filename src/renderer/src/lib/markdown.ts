/**
 * Markdown cells, rendered safely: `marked` turns the text into HTML, then DOMPurify keeps only
 * what an allow-list names — the elements Markdown itself produces, each with only the
 * attributes it needs — and drops everything else (SVG and MathML with their own link
 * attributes, image maps, forms, frames, ids and names that could clobber the page's globals).
 * Then: no remote content (only `data:` images; the CSP would block others anyway, but a
 * broken image is worse than none), and links only to http(s) and mailto, opening outside the
 * app; any other link loses its target, so nothing can navigate the notebook itself away.
 */
import DOMPurify from 'dompurify';
import { marked } from 'marked';

/** The elements Markdown (GFM) produces; nothing else survives. */
const ALLOWED_TAGS = [
  'p', 'br', 'hr', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'blockquote', 'pre', 'code',
  'em', 'strong', 'del', 's', 'sub', 'sup', 'kbd', 'mark', 'abbr', 'span',
  'ul', 'ol', 'li', 'a', 'img',
  'table', 'thead', 'tbody', 'tfoot', 'tr', 'th', 'td',
  'details', 'summary',
];

/** The attributes each element keeps; every other attribute is removed. */
const ALLOWED_ATTRIBUTES: Record<string, readonly string[]> = {
  a: ['href', 'title'],
  img: ['src', 'alt', 'title'],
  code: ['class'],
  ol: ['start'],
  th: ['align'],
  td: ['align'],
  abbr: ['title'],
  details: ['open'],
};
const ALL_ATTRIBUTES = [...new Set(Object.values(ALLOWED_ATTRIBUTES).flat())];

const SAFE_LINK = /^(https?:|mailto:)/i;
const SAFE_IMAGE = /^data:image\/(png|jpe?g|gif|webp|svg\+xml);/i;

let hooked = false;

/** Per-element attribute rules, and a class that may only name a code language. */
function installHooks(): void {
  if (hooked) return;
  hooked = true;
  DOMPurify.addHook('uponSanitizeAttribute', (node, data) => {
    const allowed = ALLOWED_ATTRIBUTES[node.nodeName.toLowerCase()] ?? [];
    if (!allowed.includes(data.attrName)) data.keepAttr = false;
    else if (data.attrName === 'class' && !/^language-[\w+#-]{1,40}$/.test(data.attrValue)) data.keepAttr = false;
  });
}

/** Renders Markdown to sanitised HTML. */
export function renderMarkdown(source: string): string {
  installHooks();
  const html = marked.parse(source, { async: false, gfm: true, breaks: false });
  const fragment = DOMPurify.sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR: ALL_ATTRIBUTES,
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    ALLOW_UNKNOWN_PROTOCOLS: false,
    SANITIZE_DOM: true,
    SANITIZE_NAMED_PROPS: true,
    RETURN_DOM_FRAGMENT: true,
  });
  for (const img of Array.from(fragment.querySelectorAll('img'))) {
    const src = img.getAttribute('src') ?? '';
    if (!SAFE_IMAGE.test(src)) {
      const note = document.createElement('span');
      note.className = 'md-removed-image';
      note.textContent = `[image not shown: ${img.getAttribute('alt') || 'remote images are blocked'}]`;
      img.replaceWith(note);
    }
  }
  for (const a of Array.from(fragment.querySelectorAll('a'))) {
    if (SAFE_LINK.test(a.getAttribute('href') ?? '')) {
      // opens outside the notebook (a browser tab; Electron hands it to the system browser)
      a.setAttribute('target', '_blank');
      a.setAttribute('rel', 'noopener noreferrer');
    } else {
      // relative, fragment, javascript:, data: … would navigate the app itself, or run code
      a.removeAttribute('href');
    }
  }
  const holder = document.createElement('div');
  holder.appendChild(fragment);
  return holder.innerHTML;
}
