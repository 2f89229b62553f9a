// Errors the client throws or reports. `closeCode` tells the reconnect loop what to do with an
// error raised while obtaining a token: 4000-4099 stops like the gateway's terminal closes,
// anything else (or none) is retried with backoff.

/** Stable codes of the errors this package raises (docs/errors.md). */
export type ClientErrorCode = 'RPX_CLIENT_OPTIONS' | 'RPX_CLIENT_TOKEN' | 'RPX_CLIENT_CLOSED' | 'RPX_WIDGET_SESSION';

/** An error with a stable code, the close code it maps to (if any) and the HTTP status behind it. */
export class ReplyxClientError extends Error {
  override readonly name = 'ReplyxClientError';

  /** `message` says what is wrong and what to do. */
  constructor(
    readonly code: ClientErrorCode,
    message: string,
    readonly closeCode?: number,
    readonly status?: number,
  ) {
    super(`${code}: ${message}`);
  }
}

/** A bad option: names it, says what it must be, shows what was given. */
export function optionError(name: string, must: string, got: unknown): ReplyxClientError {
  const shown = typeof got === 'string' ? JSON.stringify(got) : typeof got === 'function' ? 'a function' : String(got);
  return new ReplyxClientError('RPX_CLIENT_OPTIONS', `${name}: must be ${must} (got ${shown})`);
}

/** The close code an error carries (`closeCode` property), if it is a number. */
export function closeCodeOf(error: unknown): number | undefined {
  const code = (error as { closeCode?: unknown } | null)?.closeCode;
  return typeof code === 'number' ? code : undefined;
}

/** The message of an error, or its string form. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
