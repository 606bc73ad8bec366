/** A training progress line on stderr: redrawn in place on a terminal, a line every few percent otherwise. */
import type { StepEvent } from '../../shared/jobs.js';
import { formatPlanBytes } from '../../shared/memory-plan.js';

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}` : `${m}:${String(sec).padStart(2, '0')}`;
}

export function progressLine(m: StepEvent, valLoss: number | null, width = 24): string {
  const frac = Math.min(1, m.step / m.totalSteps);
  const filled = Math.round(frac * width);
  const bar = '='.repeat(Math.max(0, filled - 1)) + (filled > 0 ? (frac < 1 ? '>' : '=') : '') + ' '.repeat(width - filled);
  const val = valLoss === null ? '' : ` val ${valLoss.toFixed(3)}`;
  const mem = m.backendBytes === undefined ? '' : ` mem ${formatPlanBytes(m.backendBytes)}`;
  return `step ${m.step}/${m.totalSteps} [${bar}] loss ${m.loss.toFixed(3)}${val} lr ${m.lr.toExponential(1)} ${Math.round(m.tokensPerSecond).toLocaleString('en-US')} tok/s${mem} ETA ${formatDuration(m.etaSeconds)}`;
}

export class ProgressPrinter {
  private lastPrintedPercent = -1;
  private valLoss: number | null = null;
  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {}

  eval(valLoss: number): void {
    this.valLoss = valLoss;
  }

  step(m: StepEvent): void {
    const line = progressLine(m, this.valLoss);
    if (this.stream.isTTY) {
      this.stream.write(`\r\x1b[2K${line}`);
      if (m.step === m.totalSteps) this.stream.write('\n');
      return;
    }
    const percent = Math.floor((100 * m.step) / m.totalSteps / 10) * 10;
    if (percent !== this.lastPrintedPercent || m.step === m.totalSteps) {
      this.lastPrintedPercent = percent;
      this.stream.write(line + '\n');
    }
  }

  /** Ends a line being redrawn before other output. */
  break(): void {
    if (this.stream.isTTY) this.stream.write('\n');
  }
}
