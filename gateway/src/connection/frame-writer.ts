import type { Socket } from 'node:net';
import { Opcode } from '../transport/frame-parser.js';
import { headerLength, writeHeader } from '../transport/frames.js';

// The broadcast hot path. An event goes to many sockets, so it is framed once here, header and
// payload in one Buffer, and the same bytes are written to each. During a burst Redis hands the
// broker many events in one read; a socket that gets a second frame in the same tick is corked
// until the read has been handled, so the events of one read leave in two writes per socket
// instead of one per event, and the client wakes about once per batch. The cork lasts until the
// end of the current tick only: no timer, no added latency.

/** A complete, unmasked WebSocket text frame (header + payload), shareable between sockets. */
export type EncodedFrame = Buffer & { readonly __frame: 'text' };

/**
 * Frames `text` (UTF-8 JSON) once as a final, uncompressed, unmasked text frame (RFC 6455 §5.2):
 * one allocation holds the header and the encoded payload.
 */
export function encodeTextFrame(text: string): EncodedFrame {
  const length = Buffer.byteLength(text);
  const frame = Buffer.allocUnsafe(headerLength(length) + length);
  frame.write(text, writeHeader(frame, Opcode.TEXT, length), 'utf8');
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
 * Writes an encoded frame to the socket of an open WebSocket. The first frame a socket gets in a
 * tick is written at once; a second one corks the socket until the tick ends, so the rest of a
 * burst leaves in one writev while a lone frame skips the cork (a cork leaves per-socket garbage
 * the young-generation GC must trace, which showed in the many-dialogs p99). The caller checks
 * that the WebSocket is open and the limits.
 */
export function writeEncodedFrame(socket: Socket, frame: EncodedFrame, state: CorkState): void {
  if (!batchEndScheduled) {
    batchEndScheduled = true;
    process.nextTick(endBatch);
  }
  if (state.writeBatch !== batch) {
    state.writeBatch = batch;
  } else if (socket.writableCorked === 0) {
    // Only this writer leaves a socket corked past a call (the handshake uncorks its own at
    // once), so an uncorked socket written earlier in this batch has not been corked by us yet.
    socket.cork();
    corked.push(socket);
  }
  socket.write(frame);
}
