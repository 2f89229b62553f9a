import { isUtf8 } from 'node:buffer';
import { CloseCodes } from '../close-codes.js';

// The server side of RFC 6455 §5 as a pure, incremental parser: bytes in, whole messages and
// control frames out to a sink, or the close code the connection must end with. No I/O and no
// timers, so every rule can be tested on byte arrays, split at every point.
//
// The state between two TCP chunks lives on the sink (one property, undefined at a frame
// boundary with no fragmented message open), because the sink is the connection object: an
// idle socket then carries no parser object at all. Partial input is kept as a list of chunks
// and joined only once the frame it belongs to is complete, so a client trickling a frame one
// byte at a time costs linear, not quadratic, copying.

/** Opcodes (RFC 6455 §5.2). */
export const Opcode = {
  CONTINUATION: 0x0,
  TEXT: 0x1,
  BINARY: 0x2,
  CLOSE: 0x8,
  PING: 0x9,
  PONG: 0xa,
} as const;

/** A close frame without a status code reads as 1005 (RFC 6455 §7.1.5); it is never sent. */
export const NO_STATUS = 1005;

/** Largest payload of a control frame (RFC 6455 §5.5). */
export const MAX_CONTROL_PAYLOAD = 125;

/** Most frames one fragmented message may take (ws's default): empty fragments add no bytes, so bytes alone do not bound them. */
export const MAX_FRAGMENTS = 16 * 1024;
/** Partial-frame chunks kept before they are joined into one (a client trickling bytes). */
const MAX_PENDING_CHUNKS = 1024;

/** Why the input is refused: the close code and reason the server closes with. */
export interface FrameError {
  readonly code: 1002 | 1007 | 1008 | 1009;
  readonly reason: string;
}

/** Parser state kept between chunks: unparsed bytes and the open fragmented message. */
export interface RxState {
  /** Bytes of an incomplete frame, in arrival order. */
  chunks: Buffer[];
  /** Their total length. */
  bytes: number;
  /** How many bytes the incomplete frame needs before parsing is worth retrying. */
  need: number;
  /** Payloads of the fragmented message so far; null when none is open. */
  fragments: Buffer[] | null;
  /** Their total length (counts toward maxPayload). */
  fragmentBytes: number;
  /** Frames the fragmented message took so far (at most MAX_FRAGMENTS). */
  fragmentCount: number;
  /** The open fragmented message is binary (opcode 2), not text. */
  fragmentBinary: boolean;
}

/** Where parsed frames go; the connection object implements it. */
export interface FrameSink {
  /** Parser state between chunks; undefined at a frame boundary with no fragmented message. */
  rx: RxState | undefined;
  /** False once the sink wants no further frames (the parser stops at the next frame). */
  readonly reading: boolean;
  /** A whole data message (fragments joined), text already checked to be UTF-8. */
  onMessage(data: Buffer, binary: boolean): void;
  /** A ping or pong, payload ≤ 125 bytes. */
  onControl(opcode: typeof Opcode.PING | typeof Opcode.PONG, payload: Buffer): void;
  /** The peer's close frame: a valid code (1005 when none) and a UTF-8 reason. */
  onCloseFrame(code: number, reason: string): void;
}

const protocolError = (reason: string): FrameError => ({ code: 1002, reason });
const ERR_RSV = protocolError('reserved bits set');
const ERR_OPCODE = protocolError('invalid opcode');
const ERR_CONTINUATION = protocolError('unexpected continuation frame');
const ERR_INTERLEAVED = protocolError('new message inside a fragmented one');
const ERR_CONTROL_FRAGMENTED = protocolError('fragmented control frame');
const ERR_CONTROL_LENGTH = protocolError('control frame payload over 125 bytes');
const ERR_UNMASKED = protocolError('client frame not masked');
const ERR_CLOSE_LENGTH = protocolError('close payload of one byte');
const ERR_CLOSE_CODE = protocolError('invalid close code');
const ERR_UTF8: FrameError = { code: 1007, reason: 'invalid UTF-8' };
const ERR_TOO_MANY_FRAGMENTS: FrameError = { code: 1008, reason: 'too many fragments' };
const ERR_TOO_BIG: FrameError = { code: CloseCodes.MESSAGE_TOO_BIG.code, reason: CloseCodes.MESSAGE_TOO_BIG.reason };

/** True for a close code a peer may send (RFC 6455 §7.4; 1004-1006 and 1015 are reserved). */
export function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/**
 * Parses `chunk` (following what the sink's state holds) into frames for the sink; returns the
 * error the connection must close with, or undefined. After an error the state is meaningless
 * and the caller stops feeding. `maxPayload` bounds a data message, fragments summed.
 */
export function feedFrames(sink: FrameSink, chunk: Buffer, maxPayload: number): FrameError | undefined {
  let rx = sink.rx;
  let buf = chunk;
  if (rx !== undefined && rx.bytes > 0) {
    rx.chunks.push(chunk);
    rx.bytes += chunk.length;
    if (rx.bytes < rx.need) {
      if (rx.chunks.length > MAX_PENDING_CHUNKS) rx.chunks = [Buffer.concat(rx.chunks, rx.bytes)];
      return undefined;
    }
    buf = Buffer.concat(rx.chunks, rx.bytes);
    rx.chunks = [];
    rx.bytes = 0;
  }
  let pos = 0;
  let need = 0;
  while (pos < buf.length && sink.reading) {
    const avail = buf.length - pos;
    if (avail < 2) {
      need = 2;
      break;
    }
    const b0 = buf[pos]!;
    const b1 = buf[pos + 1]!;
    if ((b0 & 0x70) !== 0) return ERR_RSV;
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    const len7 = b1 & 0x7f;
    const fragmenting = rx !== undefined && rx.fragments !== null;
    if (opcode >= Opcode.CLOSE) {
      if (opcode > Opcode.PONG) return ERR_OPCODE;
      if (!fin) return ERR_CONTROL_FRAGMENTED;
      if (len7 > MAX_CONTROL_PAYLOAD) return ERR_CONTROL_LENGTH;
    } else if (opcode === Opcode.CONTINUATION) {
      if (!fragmenting) return ERR_CONTINUATION;
    } else if (opcode <= Opcode.BINARY) {
      if (fragmenting) return ERR_INTERLEAVED;
    } else {
      return ERR_OPCODE;
    }
    if ((b1 & 0x80) === 0) return ERR_UNMASKED;
    const extended = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
    const headerLength = 2 + extended + 4;
    if (avail < 2 + extended) {
      need = headerLength;
      break;
    }
    let length = len7;
    if (extended === 2) {
      length = buf.readUInt16BE(pos + 2);
    } else if (extended === 8) {
      // Anything that needs the high word is far beyond any maxPayload this gateway allows.
      if (buf.readUInt32BE(pos + 2) !== 0) return ERR_TOO_BIG;
      length = buf.readUInt32BE(pos + 6);
    }
    if (opcode < Opcode.CLOSE && length + (fragmenting ? rx!.fragmentBytes : 0) > maxPayload) return ERR_TOO_BIG;
    if (avail < headerLength + length) {
      need = headerLength + length;
      break;
    }
    const payload = unmask(buf, pos + headerLength - 4, pos + headerLength, length);
    pos += headerLength + length;
    if (opcode >= Opcode.CLOSE) {
      if (opcode === Opcode.CLOSE) {
        const error = closeFrame(sink, payload);
        if (error) return error;
        // Nothing after a close frame is read (RFC 6455 §5.5.1).
        pos = buf.length;
        break;
      }
      sink.onControl(opcode as typeof Opcode.PING | typeof Opcode.PONG, payload);
      continue;
    }
    if (!fin) {
      rx ??= sink.rx = emptyState();
      if (rx.fragments === null) {
        rx.fragments = [];
        rx.fragmentBytes = 0;
        rx.fragmentCount = 0;
        rx.fragmentBinary = opcode === Opcode.BINARY;
      }
      if (++rx.fragmentCount >= MAX_FRAGMENTS) return ERR_TOO_MANY_FRAGMENTS;
      if (length > 0) rx.fragments.push(payload);
      rx.fragmentBytes += length;
      continue;
    }
    let data = payload;
    let binary = opcode === Opcode.BINARY;
    if (opcode === Opcode.CONTINUATION) {
      const parts = rx!.fragments!;
      parts.push(payload);
      data = Buffer.concat(parts, rx!.fragmentBytes + length);
      binary = rx!.fragmentBinary;
      rx!.fragments = null;
      rx!.fragmentBytes = 0;
    }
    if (!binary && !isUtf8(data)) return ERR_UTF8;
    sink.onMessage(data, binary);
  }
  if (pos < buf.length && sink.reading) {
    rx ??= sink.rx = emptyState();
    // A copy: a slice would keep the whole read buffer alive while the frame trickles in.
    rx.chunks.push(Buffer.from(buf.subarray(pos)));
    rx.bytes = buf.length - pos;
    rx.need = need;
  } else if (rx !== undefined && rx.fragments === null) {
    sink.rx = undefined;
  }
  return undefined;
}

function emptyState(): RxState {
  return { chunks: [], bytes: 0, need: 0, fragments: null, fragmentBytes: 0, fragmentCount: 0, fragmentBinary: false };
}

/** The payload at [start, start+length) of `buf`, unmasked with the 4-byte key at `maskAt`, in a new Buffer. */
function unmask(buf: Buffer, maskAt: number, start: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  const m0 = buf[maskAt]!;
  const m1 = buf[maskAt + 1]!;
  const m2 = buf[maskAt + 2]!;
  const m3 = buf[maskAt + 3]!;
  let i = 0;
  for (; i + 3 < length; i += 4) {
    out[i] = buf[start + i]! ^ m0;
    out[i + 1] = buf[start + i + 1]! ^ m1;
    out[i + 2] = buf[start + i + 2]! ^ m2;
    out[i + 3] = buf[start + i + 3]! ^ m3;
  }
  for (; i < length; i += 1) out[i] = buf[start + i]! ^ ((i & 3) === 0 ? m0 : (i & 3) === 1 ? m1 : m2);
  return out;
}

function closeFrame(sink: FrameSink, payload: Buffer): FrameError | undefined {
  if (payload.length === 0) {
    sink.onCloseFrame(NO_STATUS, '');
    return undefined;
  }
  if (payload.length === 1) return ERR_CLOSE_LENGTH;
  const code = payload.readUInt16BE(0);
  if (!isValidCloseCode(code)) return ERR_CLOSE_CODE;
  const reason = payload.subarray(2);
  if (!isUtf8(reason)) return ERR_UTF8;
  sink.onCloseFrame(code, reason.toString('utf8'));
  return undefined;
}
