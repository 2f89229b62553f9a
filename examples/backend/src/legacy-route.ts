import type { IncomingHttpHeaders } from 'node:http';

// Legacy /ws/ is a rollback state (wsRoute=backend), never an accident. nginx's rendered /ws/
// location marks the handshakes it proxies with this header only when the stack plan routes
// /ws/ to the backend (infra/render/nginx.ts sets it from the plan, and clears a client's own
// copy otherwise); the backend serves /ws/ only to marked handshakes. A nginx.conf edited by
// hand to send /ws/ (or the gateway upstream) here carries no mark, so its clients are refused
// with a close code they retry with backoff, and resume with `since=` once the route is
// repaired, instead of landing in one worker's in-memory hub and missing the events the other
// workers publish. A rollback needs no backend restart for this: the reload that moves the
// route renders the mark too.

/** Header nginx sets on /ws/ handshakes it proxies to the backend because the stack plan routes /ws/ there. */
export const WS_ROUTE_HEADER = 'X-Replyx-Ws-Route';

/** The header's value on the backend route (the topology's `wsRoute` value). */
export const WS_ROUTE_BACKEND = 'backend';

/** Whether a /ws/ handshake came through a /ws/ route the stack plan sends to the backend. */
export function routedToBackendByPlan(headers: IncomingHttpHeaders): boolean {
  return headers[WS_ROUTE_HEADER.toLowerCase()] === WS_ROUTE_BACKEND;
}
