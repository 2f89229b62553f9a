import type { ErrorCode } from './error-codes.js';

export type { ErrorCode } from './error-codes.js';

/**
 * Errors the toolkit shows to a person. Each carries a stable code (listed in
 * error-codes.ts, documented in docs/errors.md) and a fix, so the one line an operator sees says what to do next.
 */
export class ReplyxError extends Error {
  override readonly name = 'ReplyxError';
  /** Creates an error with a stable `code`, a message and a `fix` sentence. */
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly fix: string,
    options?: { cause?: unknown; details?: readonly string[] },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.details = options?.details ?? [];
  }
  readonly details: readonly string[];
}

/** True for errors that carry a code and a fix. */
export function isReplyxError(err: unknown): err is ReplyxError {
  return err instanceof ReplyxError;
}

/**
 * Formats an error for a terminal: one red line (plus detail lines, if any), and the stack
 * only when VERBOSE=1. Unknown errors keep their message so nothing is swallowed.
 */
export function formatErrorForCli(err: unknown, env: NodeJS.ProcessEnv = process.env, color = process.stderr.isTTY): string {
  const red = (s: string) => (color ? `\u001b[31m${s}\u001b[39m` : s);
  const verbose = env.VERBOSE === '1';
  if (isReplyxError(err)) {
    const lines = [red(`error ${err.code}: ${err.message} — ${err.fix}`), ...err.details.map((d) => `  - ${d}`)];
    if (verbose && err.stack) lines.push(err.stack);
    return lines.join('\n');
  }
  const message = err instanceof Error ? err.message : String(err);
  const code: ErrorCode = 'RPX_UNEXPECTED';
  const lines = [red(`error ${code}: ${message} — rerun with VERBOSE=1 for the stack and report it`)];
  if (verbose && err instanceof Error && err.stack) lines.push(err.stack);
  return lines.join('\n');
}
