/**
 * Sizes as the transports count them: the UTF-8 bytes of a JSON encoding. The WebSocket client
 * sends `JSON.stringify(request)`, so a limit stated in these bytes is exactly what a frame
 * carries; schemas that bound notebooks and chats in these units are guaranteed to fit it.
 */

/** UTF-8 length of a string, without allocating the encoded bytes. */
export function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4; // a surrogate pair: one 4-byte code point
      i++;
    } else n += 3; // the rest of the BMP, and a lone surrogate (encoded as U+FFFD)
  }
  return n;
}

/** UTF-8 bytes of `JSON.stringify(value)` (0 for a value JSON cannot encode). */
export function jsonBytes(value: unknown): number {
  const text = JSON.stringify(value);
  return text === undefined ? 0 : utf8Length(text);
}

/** A size in MiB for messages about limits: "8.1 MiB". */
export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
