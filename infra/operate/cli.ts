import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ReplyxError, formatErrorForCli, isReplyxError } from '../errors.js';

// The command-line surface shared by check, health and rollback: strict flags (an unknown flag
// is an error naming the help), the common --target/--stack/--json options, one-line errors
// and tables. Each script only declares its own flags.

/** Flags every operator script accepts. */
export const COMMON_OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
  target: { type: 'string' },
  stack: { type: 'string' },
  'project-dir': { type: 'string' },
  'state-dir': { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

/** Help text of the common flags. */
export const COMMON_HELP = `Common options:
  --target local|docker|aws  where the stack runs (default: the stack file's replyx:target)
  --stack NAME               stack file Pulumi.NAME.yaml (default: local for target local, dev for docker, aws for aws)
  --project-dir DIR          directory holding the stack files (default: $REPLYX_PROJECT_DIR or this checkout)
  --state-dir DIR            local stack state directory (default: $REPLYX_STATE_DIR, else .stack/ for stack local, .stack/NAME/ otherwise)
  --json                     machine-readable output on stdout
  -h, --help                 show this help`;

/** Values of the common flags. */
export interface CommonFlags {
  readonly help?: boolean;
  readonly json?: boolean;
  readonly target?: string;
  readonly stack?: string;
  readonly 'project-dir'?: string;
  readonly 'state-dir'?: string;
}

/** Parses argv strictly; unknown flags and stray arguments become RPX_USAGE errors. */
export function parseFlags<O extends ParseArgsConfig['options']>(argv: readonly string[], options: O, script: string): CommonFlags & Record<string, string | boolean | undefined> {
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options: { ...COMMON_OPTIONS, ...options }, strict: true, allowPositionals: true });
    if (positionals.length > 0) throw new Error(`unexpected argument "${positionals[0]}"`);
    return values as CommonFlags & Record<string, string | boolean | undefined>;
  } catch (err) {
    const message = (err as Error).message.split('\n')[0]!.replace(/\. To specify a positional.*$/, '').replace(/^Unknown option/, 'unknown option');
    throw new ReplyxError('RPX_USAGE', message, `run npm run ${script} -- --help`);
  }
}

/** Parses a positive integer flag or throws RPX_USAGE. */
export function intFlag(value: string | boolean | undefined, name: string, script: string, min = 1, max = 1_000_000): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ReplyxError('RPX_USAGE', `--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`, `run npm run ${script} -- --help`);
  }
  return n;
}

/** Runs a script's main: prints one-line errors, sets the exit code. */
export async function runScript(main: (argv: readonly string[]) => Promise<number>): Promise<void> {
  try {
    process.exitCode = await main(process.argv.slice(2));
  } catch (err) {
    console.error(formatErrorForCli(err));
    process.exitCode = 1;
  }
}

/** An error as JSON for `--json` output: code, message, fix and the detail lines (each problem of an invalid stack file). */
export function errorJson(err: unknown): { code: string; message: string; fix: string; details: readonly string[] } {
  if (isReplyxError(err)) return { code: err.code, message: err.message, fix: err.fix, details: err.details };
  return { code: 'RPX_UNEXPECTED', message: err instanceof Error ? err.message : String(err), fix: 'rerun with VERBOSE=1 for the stack and report it', details: [] };
}

/** Renders rows as an aligned text table with a header line. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[], maxWidth = 70): string {
  const cells = [headers, ...rows].map((r) => r.map((c) => (c.length > maxWidth ? `${c.slice(0, maxWidth - 1)}…` : c)));
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(cells[0]!), line(widths.map((w) => '-'.repeat(w))), ...cells.slice(1).map(line)].join('\n');
}

/** Formats a duration for step output. */
export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)}s`;
}

/** True when the module with this `import.meta.url` is the script being run (not imported by a test). */
export function isMain(moduleUrl: string): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return moduleUrl === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}
