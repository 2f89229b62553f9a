import { ReplyxError } from '../errors.js';
import { seconds } from './cli.js';

// Runs named steps, printing each with its timing as it finishes, and keeps the record for the
// --json report. A failing step is printed with its error before the error propagates.

/** One finished step. */
export interface StepRecord {
  readonly name: string;
  readonly ok: boolean;
  readonly ms: number;
  readonly detail: string;
}

/** Receives one line of progress. */
export type Printer = (line: string) => void;

/** A step runner bound to a printer. */
export class StepRunner {
  readonly records: StepRecord[] = [];
  private readonly started = performance.now();
  /** Creates a runner printing through `print` (silent for --json). */
  constructor(private readonly print: Printer) {}

  /** Runs `fn` as step `name`; its resolved string is the step's detail. */
  async run(name: string, fn: () => Promise<string>): Promise<void> {
    const t0 = performance.now();
    try {
      const detail = await fn();
      const ms = Math.round(performance.now() - t0);
      this.records.push({ name, ok: true, ms, detail });
      this.print(`  ${name.padEnd(16)} ${seconds(ms).padStart(7)}  ${detail}`);
    } catch (err) {
      const ms = Math.round(performance.now() - t0);
      const detail = err instanceof ReplyxError ? `${err.code}: ${err.message}` : (err as Error).message;
      this.records.push({ name, ok: false, ms, detail });
      this.print(`  ${name.padEnd(16)} ${seconds(ms).padStart(7)}  FAILED: ${detail}`);
      throw err;
    }
  }

  /** Milliseconds since the runner was created. */
  elapsedMs(): number {
    return Math.round(performance.now() - this.started);
  }
}
