import type { WebSocket } from 'ws';
import type { BrokerEvent } from '../broker/protocol.js';
import type { CloseCodeInfo } from '../close-codes.js';
import type { ConnectionKind, HubMember } from '../hub/dialog-hub.js';
import { writeEncodedFrame, type CorkState, type EncodedFrame } from './frame-writer.js';

// Per-socket state, kept small: idle connections are the gateway's main memory cost. Socket
// events are handled by shared functions (the `owner` does the work), not per-socket closures.

/** What a connection needs from the gateway that owns it. */
export interface ConnectionOwner {
  /** Handles a text frame from the client (ping, flood accounting). */
  onClientFrame(conn: ClientConnection, data: Buffer, isBinary: boolean): void;
  /** Cleans up after the socket closed. */
  onConnectionClosed(conn: ClientConnection, code: number): void;
  /** Counts a close the gateway initiated. */
  onServerClose(conn: ClientConnection, code: number): void;
}

const CONN = Symbol('replyx.connection');
type TaggedSocket = WebSocket & { [CONN]?: ClientConnection };

function onMessage(this: TaggedSocket, data: Buffer, isBinary: boolean): void {
  const conn = this[CONN];
  if (conn) conn.owner.onClientFrame(conn, data, isBinary);
}

function onPong(this: TaggedSocket): void {
  const conn = this[CONN];
  if (conn) conn.alive = true;
}

const NO_DATA = Buffer.alloc(0);

function onPing(this: TaggedSocket): void {
  // ws answers protocol pings itself; they still count toward the client's frame rate.
  const conn = this[CONN];
  if (conn) conn.owner.onClientFrame(conn, NO_DATA, true);
}

function onClose(this: TaggedSocket, code: number): void {
  const conn = this[CONN];
  if (!conn) return;
  this[CONN] = undefined;
  conn.owner.onConnectionClosed(conn, conn.closeCode ?? code);
}

function onError(this: TaggedSocket): void {
  // ws emits 'close' after 'error' (including 1009 for oversized frames); nothing to do here.
}

/** One attached WebSocket: dialog, kind, liveness, flood window, replay buffer. */
export class ClientConnection implements HubMember, CorkState {
  /** False once a heartbeat ping went unanswered for a whole interval. */
  alive = true;
  /** Frames received in the current one-second window, and when that window began. */
  frames = 0;
  framesWindowStart = 0;
  /** Non-null while history is being replayed: live events wait here (see resume). */
  pending: BrokerEvent[] | null = null;
  /**
   * After a replay: the newest id sent. The pub/sub copy of an event the history read already
   * returned can still arrive afterwards (two Redis connections), so live events up to this id
   * are dropped; the first newer one clears it, keeping the steady-state path compare-free.
   */
  replayedUpTo: string | undefined;
  /** The code the gateway closed with, so metrics and logs show ours rather than the echo. */
  closeCode: number | undefined;
  readonly connectedAt = Date.now();
  /** The frame writer's batch that last wrote to this socket (see frame-writer). */
  writeBatch = -1;

  /** Wires the socket's events to the owner through shared handlers. */
  constructor(
    readonly ws: WebSocket,
    readonly kind: ConnectionKind,
    readonly dialogId: number,
    readonly ip: string,
    readonly id: number,
    readonly owner: ConnectionOwner,
  ) {
    (ws as TaggedSocket)[CONN] = this;
    ws.on('message', onMessage);
    ws.on('pong', onPong);
    ws.on('ping', onPing);
    ws.on('close', onClose);
    ws.on('error', onError);
  }

  /** True while frames can be sent. */
  get open(): boolean {
    return this.ws.readyState === 1;
  }

  /**
   * Sends one pre-serialised frame unless the client is too far behind: when unsent bytes
   * would pass `capBytes` the connection is closed with 4101 instead (slow consumer).
   */
  send(frame: Buffer, capBytes: number, slowConsumer: CloseCodeInfo): boolean {
    if (!admits(this, frame.length, capBytes, slowConsumer)) return false;
    this.ws.send(frame, SEND_TEXT);
    return true;
  }

  /** Like send, for a frame encoded once and shared by every recipient of an event. */
  sendEncoded(frame: EncodedFrame, capBytes: number, slowConsumer: CloseCodeInfo): boolean {
    if (!admits(this, frame.length, capBytes, slowConsumer)) return false;
    writeEncodedFrame(this.ws, frame, this);
    return true;
  }

  /** Closes with a registry code (once). */
  close(info: CloseCodeInfo): void {
    if (this.closeCode !== undefined) return;
    this.closeCode = info.code;
    this.owner.onServerClose(this, info.code);
    this.ws.close(info.code, info.reason);
  }
}

/** True when the socket is open and `bytes` more stay under the cap; else closes it as slow. */
function admits(conn: ClientConnection, bytes: number, capBytes: number, slowConsumer: CloseCodeInfo): boolean {
  const ws = conn.ws;
  if (ws.readyState !== 1) return false;
  if (ws.bufferedAmount + bytes <= capBytes) return true;
  conn.close(slowConsumer);
  return false;
}

// Event frames are pre-encoded Buffers of JSON text: send them as text frames, uncompressed.
const SEND_TEXT = { binary: false, compress: false } as const;
