import type { Socket } from 'node:net';
import { feedFrames, NO_STATUS, Opcode, type FrameError, type FrameSink, type RxState } from './frame-parser.js';
import { encodeCloseFrame, encodeControlFrame, encodeFrame, PING_FRAME } from './frames.js';

// The server end of one WebSocket over the net.Socket an HTTP upgrade handed over: parsing
// (frame-parser.ts), the close handshake, protocol pings and pongs, and writes. It is the base
// class of the gateway's connection, so a connection is one object: the parser state is a
// property of it, the socket's events go to shared functions that find it through a symbol on
// the socket, and nothing is allocated per socket beyond what a frame in flight needs. (ws
// keeps a WebSocket, a Receiver stream with its own state, a Sender and bound listeners per
// socket: 1.2-1.5 KB of objects per idle connection.)

/** Unanswered close frames are given this long before the TCP connection is cut (as ws did). */
export const CLOSE_TIMEOUT_MS = 30_000;

/** readyState values, as the WebSocket API names them. */
export const ReadyState = { OPEN: 1, CLOSING: 2, CLOSED: 3 } as const;

/** Lifecycle bits of `#state`; 0 is open. */
const CLOSE_SENT = 1;
const CLOSE_RECEIVED = 2;
const READ_STOPPED = 4;
const SOCKET_CLOSED = 8;
/** The close code reported for a connection that ended without a close frame from the peer. */
export const ABNORMAL_CLOSURE = 1006;

const TRANSPORT = Symbol('replyx.transport');
type TaggedSocket = Socket & { [TRANSPORT]?: WebSocketTransport };

function onSocketData(this: TaggedSocket, chunk: Buffer): void {
  this[TRANSPORT]?.receiveBytes(chunk);
}

function onSocketClose(this: TaggedSocket): void {
  const transport = this[TRANSPORT];
  if (!transport) return;
  this[TRANSPORT] = undefined;
  transport.socketClosed();
}

function closeTimedOut(socket: Socket): void {
  socket.destroy();
}

/**
 * One server-side WebSocket over an upgraded socket. Subclasses receive messages, pings/pongs
 * and the end of the connection through the protected hooks. The caller that hands the socket
 * over keeps an 'error' listener on it that destroys it (http/upgrade.ts does): an error then
 * ends in 'close' like any other ending.
 */
export abstract class WebSocketTransport implements FrameSink {
  /** FrameSink: parser state between chunks. */
  rx: RxState | undefined = undefined;
  #state = 0;
  /** The code of the peer's close frame (1005: none given); undefined until one arrives. */
  #peerCode: number | undefined = undefined;
  #closeTimer: NodeJS.Timeout | undefined = undefined;

  /** Takes over `socket` (already answered with 101); bytes read past the handshake come in via start(). */
  constructor(readonly socket: Socket) {
    (socket as TaggedSocket)[TRANSPORT] = this;
    socket.setTimeout(0);
    socket.setNoDelay(true);
    // node:http lets its sockets stay half-open; a WebSocket peer that sent its FIN will send
    // nothing more, so the stream ends our side too (no 'end' listener per socket needed).
    socket.allowHalfOpen = false;
    socket.on('data', onSocketData);
    socket.on('close', onSocketClose);
  }

  /** How long a sent close frame waits for the peer's before the TCP connection is cut. */
  protected get closeTimeoutMs(): number {
    return CLOSE_TIMEOUT_MS;
  }

  /** Largest data message accepted (fragments summed); more closes with 1009. */
  protected abstract get maxPayload(): number;
  /** FrameSink: a whole text or binary message. */
  abstract onMessage(data: Buffer, binary: boolean): void;
  /** A ping or pong arrived (pings are answered already). */
  protected abstract onPingOrPong(): void;
  /** The input broke the protocol; the connection is closing with `error.code`. */
  protected abstract onProtocolError(error: FrameError): void;
  /** The TCP connection is gone: `code` is the peer's close code, or 1006 when it sent none. */
  protected abstract onClosed(code: number): void;

  /** Parses the bytes that came with the upgrade request (the `head` of node:http's 'upgrade'). */
  start(head: Buffer): void {
    if (head.length > 0) this.receiveBytes(head);
  }

  /** 1 open, 2 closing (a close frame went either way), 3 closed. */
  get readyState(): number {
    if (this.#state & SOCKET_CLOSED) return ReadyState.CLOSED;
    return this.#state === 0 ? ReadyState.OPEN : ReadyState.CLOSING;
  }

  /** Bytes written and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.socket.writableLength;
  }

  /** FrameSink: frames are read until the peer's close frame, a protocol error or the end. */
  get reading(): boolean {
    return (this.#state & (CLOSE_RECEIVED | READ_STOPPED | SOCKET_CLOSED)) === 0;
  }

  /** Feeds bytes from the socket to the parser (called by the shared 'data' listener). */
  receiveBytes(chunk: Buffer): void {
    if (!this.reading) return;
    const error = feedFrames(this, chunk, this.maxPayload);
    if (error === undefined) return;
    // Later bytes are not parsed: the stream is no longer trusted to be framed.
    this.#state |= READ_STOPPED;
    this.rx = undefined;
    this.onProtocolError(error);
    this.startClose(error.code, error.reason);
  }

  /** FrameSink: answers a ping with a pong carrying its payload (while open), then reports either. */
  onControl(opcode: number, payload: Buffer): void {
    if (opcode === Opcode.PING && this.#state === 0) this.socket.write(encodeControlFrame(Opcode.PONG, payload));
    this.onPingOrPong();
  }

  /** FrameSink: the peer's close frame; echoed (code and reason) unless we closed first, then our side ends. */
  onCloseFrame(code: number, reason: string): void {
    this.#state |= CLOSE_RECEIVED;
    this.#peerCode = code;
    this.rx = undefined;
    if (this.#state & CLOSE_SENT) this.socket.end();
    else if (code === NO_STATUS) this.startClose();
    else this.startClose(code, reason);
  }

  /** Writes a pre-framed message (text frame bytes shared between sockets); false when not open. */
  sendFrame(frame: Buffer): boolean {
    if (this.#state !== 0) return false;
    this.socket.write(frame);
    return true;
  }

  /** Frames `payload` (UTF-8 JSON) as one text message and writes it; false when not open. */
  sendText(payload: Buffer): boolean {
    if (this.#state !== 0) return false;
    this.socket.write(encodeFrame(Opcode.TEXT, payload));
    return true;
  }

  /** Sends an empty protocol ping (the same two bytes for every socket); nothing once closing. */
  ping(): void {
    if (this.#state === 0) this.socket.write(PING_FRAME);
  }

  /**
   * Starts (or, after the peer's close frame, completes) the close handshake: sends a close
   * frame with `code` and `reason` (none without a code), once. The TCP connection ends when
   * the peer answers, or is cut after CLOSE_TIMEOUT_MS.
   */
  startClose(code?: number, reason = ''): void {
    if (this.#state & (CLOSE_SENT | SOCKET_CLOSED)) return;
    this.#state |= CLOSE_SENT;
    const socket = this.socket;
    if (!socket.writable) return void socket.destroy();
    socket.write(encodeCloseFrame(code, reason));
    if (this.#state & CLOSE_RECEIVED) socket.end();
    this.#closeTimer = setTimeout(closeTimedOut, this.closeTimeoutMs, socket);
  }

  /** Cuts the TCP connection without a close handshake. */
  terminate(): void {
    this.socket.destroy();
  }

  /** Called once the socket closed (by the shared 'close' listener). */
  socketClosed(): void {
    this.#state |= SOCKET_CLOSED;
    if (this.#closeTimer !== undefined) clearTimeout(this.#closeTimer);
    this.#closeTimer = undefined;
    this.rx = undefined;
    this.onClosed(this.#peerCode ?? ABNORMAL_CLOSURE);
  }
}
