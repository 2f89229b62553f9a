// @replyx/client: the client side of the replyx gateway contract (docs/client.md).
export { DialogClient } from './dialog-client.js';
export type { ClientState, CloseInfo, DialogClientEvents, DialogClientOptions, WebSocketConstructor, WebSocketLike } from './dialog-client.js';
export { WidgetSession, WIDGET_SESSIONS_PATH, sessionRefusalCloseCode } from './widget-session.js';
export type { FetchLike, FetchResponseLike, VisitorKeyStorage, WidgetSessionInfo, WidgetSessionOptions } from './widget-session.js';
export { ReplyxClientError } from './errors.js';
export type { ClientErrorCode } from './errors.js';
export { compareEventIds, isEventId } from './event-ids.js';
export { DEFAULT_HEARTBEAT_MS, parseServerFrame } from './frames.js';
export type { ConnectedFrame, DialogEvent, ServerFrame } from './frames.js';
export { closeClass, DEFAULT_TIMING, reconnectDelayMs } from './reconnect.js';
export type { CloseClass, ReconnectTiming } from './reconnect.js';
export { isJwt, jwtExpiresAt } from './token.js';
export type { TokenRequest, TokenSource } from './token.js';
export { DIALOG_PATHS, PROTOCOL, TOKEN_PROTOCOL_PREFIX, dialogUrl, subprotocols } from './url.js';
export type { ClientKind } from './url.js';
