/**
 * Where JSON.parse failed, without the text: its own message quotes the start of the input
 * (`Unexpected token 'r', "root:x:0:0"... is not valid JSON`), and that input may be any file a
 * request named — an error must say what is wrong, never show an unknown file's contents.
 */
export function jsonSyntaxProblem(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  if (/end of JSON input|Unterminated/i.test(message)) return 'it ends before the JSON does';
  const lineColumn = /\(line (\d+) column (\d+)\)/.exec(message);
  if (lineColumn) return `at line ${lineColumn[1]}, column ${lineColumn[2]}`;
  const position = /at position (\d+)/.exec(message);
  if (position) return `at character ${Number(position[1]) + 1}`;
  return 'it does not start as JSON does';
}
