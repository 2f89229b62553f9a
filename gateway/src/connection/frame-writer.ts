import type { Socket } from 'node:net';
import * as wsModule from 'ws';
import type { WebSocket } from 'ws';

// The broadcast hot path. `ws.send` frames the payload again for every socket (header
// allocation, option objects, a cork/uncork pair and two writes per frame). An event goes to
// many sockets, so it is framed once here, header and payload in one Buffer, and the same bytes
// are written to each. During a burst Redis hands the broker many events in one read; a socket
// that gets a second frame in the same tick is corked until the read has been handled, so the
// events of one read leave in two writes per socket instead of one per event, and the client
// wakes about once per batch. The cork lasts until the end of the current tick only: no timer,
// no added latency.
//
// This uses two internals of ws 8 that engine.io relies on as well: `_sender.sendFrame`
// (write an already framed message) and `_socket` (the net.Socket). `assertFrameWriterSupport`
// checks sendFrame at start-up and gateway/test/write-path.test.ts exercises both, so a ws
// upgrade that changes them fails loudly, not silently.

/** A complete, unmasked WebSocket text frame (header + payload), shareable between sockets. */
export type EncodedFrame = Buffer & { readonly __frame: 'text' };

interface WsInternals {
  _socket: Socket | null;
  _sender: { sendFrame(list: readonly Buffer[], cb?: (err?: Error) => void): void };
}

/** ws's Sender class (`import { Sender } from 'ws'`); @types/ws does not declare it. */
const Sender = (wsModule as unknown as { Sender?: { prototype?: { sendFrame?: unknown } } }).Sender;

/** FIN + text opcode: a whole, uncompressed text message. */
const FIN_TEXT = 0x81;

/**
 * Frames `text` (UTF-8 JSON) once as a final, uncompressed, unmasked text frame (RFC 6455 §5.2):
 * one allocation holds the header and the encoded payload.
 */
export function encodeTextFrame(text: string): EncodedFrame {
  const length = Buffer.byteLength(text);
  const header = length < 126 ? 2 : length < 65_536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(header + length);
  frame[0] = FIN_TEXT;
  if (header === 2) {
    frame[1] = length;
  } else if (header === 4) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  frame.write(text, header, 'utf8');
  return frame as EncodedFrame;
}

/** Per-socket bookkeeping the writer needs: the batch (tick) it was last written in. */
export interface CorkState {
  writeBatch: number;
}

const corked: Socket[] = [];
let batch = 0;
let batchEndScheduled = false;

function endBatch(): void {
  // The next batch starts before the sockets are uncorked, so a write made while uncorking
  // belongs to it and schedules its own end.
  batch += 1;
  batchEndScheduled = false;
  const sockets = corked.splice(0);
  for (const socket of sockets) socket.uncork();
}

/**
 * Writes an encoded frame to an open WebSocket. The first frame a socket gets in a tick is
 * written at once; a second one corks the socket until the tick ends, so the rest of a burst
 * leaves in one writev while a lone frame skips the cork (a cork leaves per-socket garbage the young-generation
 * GC must trace, which showed in the many-dialogs p99). The caller checks readyState and limits.
 */
export function writeEncodedFrame(ws: WebSocket, frame: EncodedFrame, state: CorkState): void {
  const internals = ws as unknown as WsInternals;
  const socket = internals._socket;
  if (!socket) return;
  if (!batchEndScheduled) {
    batchEndScheduled = true;
    process.nextTick(endBatch);
  }
  if (state.writeBatch !== batch) {
    state.writeBatch = batch;
  } else if (socket.writableCorked === 0) {
    // Only this writer leaves a socket corked past a call (ws uncorks its own at once), so an
    // uncorked socket written earlier in this batch has not been corked by us yet.
    socket.cork();
    corked.push(socket);
  }
  internals._sender.sendFrame([frame]);
}

/** A ping control frame with no payload (FIN + opcode 0x9, length 0): the same two bytes for every socket. */
const PING_FRAME = Buffer.from([0x89, 0x00]);

/**
 * Sends a protocol ping to a WebSocket, as `ws.ping()` does (nothing once it is no longer open:
 * no frame may follow a close frame). `ws.ping()` builds a header and an options object per
 * socket; the heartbeat pings a slice of every open connection each tick and holds the event
 * loop for the whole slice, so the bytes are shared and only the write is per socket.
 */
export function writePing(ws: WebSocket): void {
  const internals = ws as unknown as WsInternals;
  if (ws.readyState !== ws.OPEN || !internals._socket) return;
  internals._sender.sendFrame([PING_FRAME]);
}

/** Throws when the installed ws lacks the internals the frame writer needs (checked at start-up). */
export function assertFrameWriterSupport(): void {
  if (typeof Sender?.prototype?.sendFrame !== 'function') {
    throw new Error('ws-gateway: the installed ws lacks Sender#sendFrame; install the ws version in gateway/package.json');
  }
}
