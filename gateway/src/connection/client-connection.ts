import type { Socket } from 'node:net';
import type { Grant } from '../access/grant.js';
import type { BrokerEvent } from '../broker/protocol.js';
import { CloseCodes, type CloseCodeInfo } from '../close-codes.js';
import type { ConnectionKind } from '../connection-kinds.js';
import { ABNORMAL_CLOSURE, WebSocketTransport } from '../transport/web-socket.js';
import type { FrameError } from '../transport/frame-parser.js';
import { writeEncodedFrame, type CorkState, type EncodedFrame } from './frame-writer.js';

// Per-socket state, kept small: idle connections are the gateway's main memory cost. The
// connection is its own WebSocket (transport/web-socket.ts): one object per socket, socket
// events handled by shared functions, not per-socket closures. What a connection does on its
// own (frame-rate accounting, answering pings, the heartbeat, the send-buffer cap) lives here,
// with the limits read from its owner (one object shared by every connection), and what
// concerns the gateway (logs, metrics, leaving the hub) is reported to the owner.

/** Limits every connection of one gateway shares. */
export interface ConnectionLimits {
  /** Unsent bytes allowed before the connection is closed as a slow consumer (4101). */
  readonly sendBufferBytes: number;
  /** Frames a client may send per one-second window before it is closed with 4100. */
  readonly clientFramesPerSecond: number;
  /** Client frames larger than this are never parsed (only pings are understood). */
  readonly maxParsedFrameBytes: number;
  /** Largest client message; a bigger one closes the connection with 1009. */
  readonly maxPayloadBytes: number;
}

/** What a connection needs from the hub that owns it. */
export interface ConnectionOwner {
  readonly limits: ConnectionLimits;
  /** Cleans up after the socket closed (`code` is ours when we closed it). */
  onConnectionClosed(conn: ClientConnection, code: number): void;
  /** Reports a close the gateway initiated (4100 flood, 4101 slow consumer, 1006 dead peer, …). */
  onServerClose(conn: ClientConnection, code: number): void;
}

const PING_FRAME = Buffer.from('{"type":"ping"}');
const PONG_FRAME = Buffer.from('{"type":"pong"}');
const NO_DATA = Buffer.alloc(0);
/** The close code recorded for a peer cut by the heartbeat (no close frame is exchanged). */
const DEAD_PEER = ABNORMAL_CLOSURE;

/** One attached WebSocket: dialog, kind, liveness, flood window, replay state. */
export class ClientConnection extends WebSocketTransport implements CorkState {
  /** False once a heartbeat ping went unanswered for a whole interval. */
  alive = true;
  /** Frames received in the current one-second window, and when that window began. */
  frames = 0;
  framesWindowStart = 0;
  /** Owned by the hub: non-null while history is being replayed, live events wait here. */
  pending: BrokerEvent[] | null = null;
  /**
   * Owned by the hub: after a replay, the newest id sent. The pub/sub copy of an event the
   * history read already returned can still arrive afterwards (two Redis connections), so live
   * events up to this id are dropped; the first newer one clears it, keeping the steady-state
   * path compare-free.
   */
  replayedUpTo: string | undefined;
  /** The code the gateway closed with, so metrics and logs show ours rather than the echo. */
  closeCode: number | undefined;
  readonly connectedAt = Date.now();
  /** The frame writer's batch that last wrote to this socket (see frame-writer). */
  writeBatch = -1;

  /**
   * Takes over an upgraded socket (101 already written; call start() with the upgrade's head).
   * `grant` is what the credential allowed (re-checked while open) and `expiresAt` its expiry
   * in epoch seconds (0: none), the two things re-authorization adds to a connection.
   */
  constructor(
    socket: Socket,
    readonly kind: ConnectionKind,
    readonly dialogId: number,
    readonly ip: string,
    readonly id: number,
    readonly owner: ConnectionOwner,
    readonly grant: Grant,
    readonly expiresAt: number,
  ) {
    super(socket);
  }

  /** True while frames can be sent. */
  get open(): boolean {
    return this.readyState === 1;
  }

  protected get maxPayload(): number {
    return this.owner.limits.maxPayloadBytes;
  }

  /** A client message (FrameSink). */
  onMessage(data: Buffer, binary: boolean): void {
    this.receive(data, binary);
  }

  protected onPingOrPong(): void {
    // Pings are answered by the transport; pings and pongs (solicited or not) still count toward
    // the client's frame rate, and any of them proves the peer alive.
    this.receive(NO_DATA, true);
  }

  protected onProtocolError(error: FrameError): void {
    // Counted and logged like the gateway's own closes (the transport sends the close frame).
    if (this.closeCode !== undefined) return;
    this.closeCode = error.code;
    this.owner.onServerClose(this, error.code);
  }

  protected onClosed(code: number): void {
    this.owner.onConnectionClosed(this, this.closeCode ?? code);
  }

  /**
   * Handles one frame from the client: counts it toward the per-second limit (4100 beyond it)
   * and answers `{"type":"ping"}` with `{"type":"pong"}`; anything else is ignored.
   */
  receive(data: Buffer, isBinary: boolean): void {
    if (this.closeCode !== undefined) return;
    this.alive = true;
    const limits = this.owner.limits;
    const now = Date.now();
    if (now - this.framesWindowStart >= 1000) {
      this.framesWindowStart = now;
      this.frames = 0;
    }
    this.frames += 1;
    if (this.frames > limits.clientFramesPerSecond) {
      this.close(CloseCodes.OVER_LIMIT);
      return;
    }
    if (isBinary || data.length > limits.maxParsedFrameBytes) return;
    if (data.equals(PING_FRAME) || isPing(data)) this.send(PONG_FRAME);
  }

  /** One heartbeat round: pings a live peer, terminates one that did not answer the last ping. */
  heartbeat(): void {
    if (this.alive) {
      this.alive = false;
      this.ping();
      return;
    }
    this.closeCode = DEAD_PEER;
    this.owner.onServerClose(this, DEAD_PEER);
    this.terminate();
  }

  /**
   * Sends one pre-serialised frame unless the client is too far behind: when unsent bytes
   * would pass the send-buffer cap the connection is closed with 4101 instead (slow consumer).
   */
  send(frame: Buffer): boolean {
    if (!admits(this, frame.length)) return false;
    return this.sendText(frame);
  }

  /** Like send, for a frame encoded once and shared by every recipient of an event. */
  sendEncoded(frame: EncodedFrame): boolean {
    if (!admits(this, frame.length)) return false;
    writeEncodedFrame(this.socket, frame, this);
    return true;
  }

  /** Closes with a registry code (once). */
  close(info: CloseCodeInfo): void {
    if (this.closeCode !== undefined) return;
    this.closeCode = info.code;
    this.owner.onServerClose(this, info.code);
    this.startClose(info.code, info.reason);
  }
}

/** True when the socket is open and `bytes` more stay under the cap; else closes it as slow. */
function admits(conn: ClientConnection, bytes: number): boolean {
  if (conn.readyState !== 1) return false;
  if (conn.bufferedAmount + bytes <= conn.owner.limits.sendBufferBytes) return true;
  conn.close(CloseCodes.SLOW_CONSUMER);
  return false;
}

function isPing(data: Buffer): boolean {
  try {
    const parsed = JSON.parse(data.toString('utf8')) as unknown;
    return typeof parsed === 'object' && parsed !== null && (parsed as { type?: unknown }).type === 'ping';
  } catch {
    return false;
  }
}
