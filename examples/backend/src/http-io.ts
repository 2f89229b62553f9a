import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';

// Request and response plumbing of the backend's API: JSON bodies with a size cap, validation
// errors as 400 with the reason, errors as `{"error":{"code","message"}}`.

/** An API error: HTTP status, stable code, reason. */
export class ApiError extends Error {
  /** Creates an error answered as `{"error":{"code","message"}}` with `status`. */
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function zodReason(err: z.ZodError): string {
  return err.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');
}

/** Parses `value` or throws a 400 naming `what` and each problem. */
export function parseOr400<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new ApiError(400, 'BAD_REQUEST', `${what}: ${zodReason(r.error)}`);
  return r.data;
}

/** Reads a JSON body up to `limit` bytes; 413 past it, 415/400 for non-JSON. */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type)) throw new ApiError(415, 'UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > limit) throw new ApiError(413, 'PAYLOAD_TOO_LARGE', `body is larger than ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new ApiError(413, 'PAYLOAD_TOO_LARGE', `body is larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new ApiError(400, 'BAD_REQUEST', 'body is not valid JSON');
  }
}

/** The first value of a request header. */
export function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Answers `body` as JSON with `status` (never cached). */
export function send(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/** A positive database id (path segment, query value or JSON number). */
export const idSchema = z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
