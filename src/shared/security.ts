/**
 * The renderer's Content-Security-Policy: its own scripts only (no inline script, no eval), no
 * remote anything. index.html carries it as a meta tag; Electron's session and `blocklab serve`
 * send it as a header. A test checks the three agree.
 */
export const RENDERER_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'";
