import type { ClientErrorCode } from './errors.js';

// The client's error codes with their meanings, for the toolkit's catalogue test
// (infra/error-codes.test.ts), which holds them, the other catalogues and docs/errors.md to each
// other. Kept out of the package entry so the browser bundle does not carry the sentences.

/** Each code `ReplyxClientError` carries, with the one-line meaning docs/errors.md shows for it. */
export const CLIENT_ERROR_CODES = {
  RPX_CLIENT_OPTIONS: '`@replyx/client`: a `DialogClient` or `WidgetSession` option is invalid (the message names it)',
  RPX_CLIENT_TOKEN: '`@replyx/client`: `getToken` returned something that is not a JWT; the client stopped with 4001',
  RPX_CLIENT_CLOSED: '`@replyx/client`: `opened()` was waiting and the client closed (its `closeCode` says why)',
  RPX_WIDGET_SESSION: '`@replyx/client`: the API refused (`status`, terminal `closeCode`) or failed a widget session, or a renewal moved the visitor to another dialog',
} as const satisfies Record<ClientErrorCode, string>;
