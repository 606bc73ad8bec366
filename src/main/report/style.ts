/** The report's stylesheet: light, print-friendly, system fonts only (nothing is fetched). */
export const REPORT_CSS = `
:root {
  --text: #1f2328; --muted: #5b6068; --line: #d8dce1; --soft: #f5f7f9; --accent: #2f5d8a;
  --good: #1a7f37; --good-bg: #dcf5e3; --good-weak: #eef8f1;
  --bad: #b42318; --bad-bg: #fde2df; --bad-weak: #fdf1f0;
}
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body {
  margin: 0; background: #fff; color: var(--text);
  font: 14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Helvetica, Arial, "Liberation Sans", "DejaVu Sans", sans-serif;
}
main { max-width: 860px; margin: 0 auto; padding: 28px 28px 40px; }
header { border-bottom: 2px solid var(--text); padding-bottom: 10px; margin-bottom: 18px; }
h1 { font-size: 24px; line-height: 1.25; margin: 0 0 4px; overflow-wrap: anywhere; }
h2 { font-size: 18px; margin: 28px 0 8px; padding-bottom: 3px; border-bottom: 1px solid var(--line); break-after: avoid; }
h3 { font-size: 15px; margin: 18px 0 6px; break-after: avoid; }
h4, h5, h6 { font-size: 14px; margin: 12px 0 4px; }
p { margin: 6px 0; }
.meta, .muted, figcaption, .note, .caption { color: var(--muted); }
.caption { font-size: 12.5px; margin-top: 4px; }
td.method { white-space: nowrap; }
.meta { margin: 0; font-size: 13px; }
.note { font-size: 12.5px; }
code, pre, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", "DejaVu Sans Mono", monospace; font-size: 12px; }
code { background: var(--soft); padding: 0 3px; border-radius: 3px; overflow-wrap: anywhere; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 4px; padding: 8px 10px; white-space: pre-wrap; overflow-wrap: anywhere; margin: 6px 0; }
pre code { background: none; padding: 0; }
nav.toc { font-size: 13px; color: var(--muted); margin: -8px 0 8px; }
nav.toc a { color: var(--accent); text-decoration: none; margin-right: 12px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 4px; font-size: 12.5px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 7px; text-align: left; vertical-align: top; }
thead th { background: var(--soft); border-bottom: 1.5px solid #b8bec6; font-weight: 600; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
td.num, th.num { text-align: right; }
td.num { white-space: nowrap; }
table.runs td.label { min-width: 9em; }
td.label { overflow-wrap: anywhere; }
.sub { display: block; color: var(--muted); font-size: 11.5px; overflow-wrap: anywhere; }
.chip { display: inline-block; min-width: 16px; padding: 0 4px; margin-right: 4px; border-radius: 3px; color: #fff; font-size: 11px; font-weight: 600; text-align: center; line-height: 16px; vertical-align: 1px; }
.chip.base { background: #9aa0a8; }
.good { color: var(--good); background: var(--good-bg); }
.good.weak { background: var(--good-weak); }
.bad { color: var(--bad); background: var(--bad-bg); }
.bad.weak { background: var(--bad-weak); }
.delta { display: block; font-size: 11.5px; font-weight: 600; }
.se { color: var(--muted); font-size: 11px; }
tr.summary td { background: var(--soft); font-weight: 600; border-top: 1.5px solid #b8bec6; }
figure { margin: 10px 0 14px; break-inside: avoid; }
figure svg { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 12.5px; margin-top: 4px; }
.legend { list-style: none; padding: 0; margin: 6px 0 0; display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 12.5px; }
.legend li { display: flex; align-items: center; gap: 6px; overflow-wrap: anywhere; }
.legend .line { display: inline-block; width: 22px; border-top: 2.5px solid; flex: none; }
.legend .line.dashed { border-top-style: dashed; }
.legend .box { display: inline-block; width: 12px; height: 12px; border-radius: 2px; flex: none; }
.panels { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 10px 18px; }
.panel { break-inside: avoid; border: 1px solid var(--line); border-radius: 4px; padding: 8px 8px 4px; }
.panel h4 { margin: 0; font-size: 13px; overflow-wrap: anywhere; }
.panel .sub { margin-bottom: 2px; }
.tree, .tree ul { list-style: none; margin: 0; padding: 0; }
.tree ul { margin-left: 14px; padding-left: 16px; border-left: 2px solid var(--line); }
.tree li { margin: 6px 0; position: relative; }
.tree ul > li::before { content: ""; position: absolute; left: -16px; top: 14px; width: 12px; border-top: 2px solid var(--line); }
.node { display: inline-block; border: 1px solid var(--line); border-radius: 5px; padding: 4px 9px; background: #fff; max-width: 100%; }
.node strong { overflow-wrap: anywhere; }
.badge { display: inline-block; font-size: 10.5px; text-transform: uppercase; letter-spacing: 0.04em; padding: 0 5px; border-radius: 3px; margin-right: 6px; background: #e8ebef; color: #3d434b; vertical-align: 1px; }
.badge.expand { background: #e4ecf7; color: #2f5d8a; }
.badge.train { background: #e7f4e9; color: #1a7f37; }
.badge.export { background: #f5ecdc; color: #8a5a00; }
details { border: 1px solid var(--line); border-radius: 4px; margin: 6px 0; padding: 4px 10px; }
details > summary { cursor: pointer; font-weight: 600; overflow-wrap: anywhere; }
details[open] > summary { margin-bottom: 4px; }
dl.env { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 6px 0; font-size: 13px; }
dl.env dt { color: var(--muted); }
dl.env dd { margin: 0; overflow-wrap: anywhere; }
.notes { border-left: 3px solid var(--accent); padding-left: 12px; }
.notes ul, .notes ol { margin: 4px 0; padding-left: 22px; }
footer { margin-top: 30px; padding-top: 8px; border-top: 1px solid var(--line); color: var(--muted); font-size: 12px; }
@page { size: A4; margin: 14mm 12mm 14mm; }
@media print {
  body { font-size: 12.5px; }
  main { max-width: none; padding: 0; }
  nav.toc { display: none; }
  h2 { margin-top: 20px; }
  details::details-content { content-visibility: visible; display: block; }
  details > summary { list-style: none; break-after: avoid; }
  details pre { font-size: 10px; line-height: 1.3; }
  figure, .panel, table.small { break-inside: avoid; }
}
`;
