import { isEventId } from './event-ids.js';

// The frames the gateway sends (docs/gateway.md, "Frames"). Event frames are told apart from
// control frames by their `id`: an event's `type` is the publisher's and may be any word.

/** First frame of every accepted connection. */
export interface ConnectedFrame {
  readonly type: 'connected';
  /** `ws-gateway`, or `backend` while `/ws/` is rolled back to the backend. */
  readonly server: string;
  readonly instance: string;
  /** The server's heartbeat; the client pings at half of it and gives up after about twice it without traffic. */
  readonly heartbeat_ms: number;
}

/** One event of a dialog; `id` is its history stream id (the `since=` of a resume). */
export interface DialogEvent<Data = unknown> {
  readonly id: string;
  readonly type: string;
  readonly dialog_id: number;
  readonly data: Data;
  /** Store time, milliseconds since the epoch. */
  readonly ts: number;
}

/** A parsed server frame; undefined for anything the contract does not define. */
export type ServerFrame =
  | { readonly kind: 'event'; readonly event: DialogEvent }
  | { readonly kind: 'connected'; readonly frame: ConnectedFrame }
  | { readonly kind: 'resync' }
  | { readonly kind: 'pong' }
  | undefined;

/** Heartbeat assumed when a `connected` frame carries none (the gateway's default). */
export const DEFAULT_HEARTBEAT_MS = 25_000;

/** Parses one text frame from the gateway. */
export function parseServerFrame(text: string): ServerFrame {
  let f: Record<string, unknown>;
  try {
    f = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof f !== 'object' || f === null) return undefined;
  if ('id' in f) {
    const { id, type, dialog_id, ts } = f;
    if (!isEventId(id) || typeof type !== 'string' || typeof dialog_id !== 'number' || typeof ts !== 'number') return undefined;
    return { kind: 'event', event: { id, type, dialog_id, data: f.data, ts } };
  }
  switch (f.type) {
    case 'connected': {
      const hb = f.heartbeat_ms;
      const heartbeat_ms = typeof hb === 'number' && hb > 0 ? hb : DEFAULT_HEARTBEAT_MS;
      return { kind: 'connected', frame: { type: 'connected', server: String(f.server ?? ''), instance: String(f.instance ?? ''), heartbeat_ms } };
    }
    case 'resync':
      return { kind: 'resync' };
    case 'pong':
      return { kind: 'pong' };
    default:
      return undefined;
  }
}
