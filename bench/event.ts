// The benchmark event and the one clock every process stamps it with: CLOCK_MONOTONIC
// (process.hrtime), which is system-wide, so a stamp taken in the publisher process and a read
// in a receiver process subtract to the publish -> receive latency with microsecond resolution.
//
// Not a wall clock: `performance.timeOrigin + performance.now()` and Date.now()-anchored
// variants were measured off by tens to hundreds of milliseconds between processes when the
// machine was loaded, because each process pairs its wall and monotonic readings at start-up
// and a preemption between the two readings becomes a permanent offset.

/** Milliseconds since boot (CLOCK_MONOTONIC, microsecond resolution), shared by all processes. */
export function sharedClockMs(): number {
  return Number(process.hrtime.bigint() / 1000n) / 1000;
}

/** The payload every system delivers: a sequence number, the publish time and some text. */
export interface BenchEventData {
  /** Sequence number of the event within one scenario run. */
  readonly s: number;
  /** Publish time, `sharedClockMs()` of the publisher just before the publish call. */
  readonly t: number;
  /** Chat-message-sized filler so frames are realistic, not 20 bytes. */
  readonly text: string;
}

/** Builds the event data for sequence `s` stamped now. */
export function eventData(s: number, text: string): BenchEventData {
  return { s, t: sharedClockMs(), text };
}

/** Filler text of exactly `bytes` ASCII characters (a chat message stand-in). */
export function fillerText(bytes: number): string {
  const words = 'hello could you tell me when my order ships and whether the widget works on mobile ';
  return words.repeat(Math.ceil(bytes / words.length)).slice(0, bytes);
}

/**
 * The full client frame in the gateway's event format (`{"id","type","dialog_id","data","ts"}`),
 * used by the peers so every system carries the same bytes.
 */
export function eventFrame(dialogId: number, data: BenchEventData): string {
  return JSON.stringify({ id: `${data.s}-0`, type: 'message:new', dialog_id: dialogId, data, ts: Date.now() });
}

function numberAfter(frame: string | Buffer, key: string): number | undefined {
  const at = frame.indexOf(key);
  if (at < 0) return undefined;
  const start = at + key.length;
  // 24 characters hold any stamp or sequence number; the rest of the frame is never copied.
  const text = typeof frame === 'string' ? frame.slice(start, start + 24) : frame.toString('latin1', start, start + 24);
  const value = Number.parseFloat(text);
  return Number.isFinite(value) ? value : undefined;
}

/**
 * Reads `s` and `t` out of a received frame without a full JSON.parse (and, for a Buffer,
 * without decoding it): receivers handle up to a million frames per run and parsing would make
 * the load generator the bottleneck. Frames that are not bench events (the gateway's
 * `connected`, pongs) give undefined.
 */
export function parseEventStamp(frame: string | Buffer): { s: number; t: number } | undefined {
  const t = numberAfter(frame, '"t":');
  const s = numberAfter(frame, '"s":');
  if (t === undefined || s === undefined) return undefined;
  return { s, t };
}
