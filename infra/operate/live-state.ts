import { PROBE_DIALOG_ID } from '../../examples/backend/src/demo.js';
import type { CommandRunner } from '../processes/run.js';
import type { LiveState, Probe } from '../rules/index.js';
import { tokenProtocols } from '../../gateway/src/auth/credentials.js';
import { httpGet, httpJson, PROBE_TIMEOUT_MS, wsFirstFrame } from './probes.js';
import type { StackContext } from './stack.js';

// Observes a running stack for the live rules: the HTTP and WebSocket probes every target
// answers the same way, plus what only the target can see (its surface's `observe`).

/** Credentials the probes use; the local stack derives them from its secrets. */
export interface ProbeCredentials {
  readonly adminToken?: string;
  readonly debugToken?: string;
  /** Resumes the probe widget's dialog through POST /api/widget/sessions (else the probe opens a new one). */
  readonly widgetVisitorKey?: string;
  /** The visitor key of another dialog, where the target can derive it (the local demo dialogs); else widgetVisitorKey is used. */
  readonly widgetVisitorKeyFor?: (dialogId: number) => string | undefined;
}

/** The dialog the handshake and the synthetic probe use: the demo data's probe dialog, which no user's data includes and whose messages the probe deletes. */
export const DEFAULT_PROBE_DIALOG = PROBE_DIALOG_ID;

/** Credentials for a stack: its target's own (local secrets) or REPLYX_ADMIN_TOKEN / REPLYX_DEBUG_TOKEN / REPLYX_WIDGET_VISITOR_KEY. */
export async function probeCredentials(ctx: StackContext, env: NodeJS.ProcessEnv = process.env): Promise<ProbeCredentials> {
  return ctx.surface.credentials(env);
}

/** Credentials from the environment: what targets without secrets of their own use. */
export function credentialsFromEnv(env: NodeJS.ProcessEnv): ProbeCredentials {
  return {
    ...(env.REPLYX_ADMIN_TOKEN ? { adminToken: env.REPLYX_ADMIN_TOKEN } : {}),
    ...(env.REPLYX_DEBUG_TOKEN ? { debugToken: env.REPLYX_DEBUG_TOKEN } : {}),
    ...(env.REPLYX_WIDGET_VISITOR_KEY ? { widgetVisitorKey: env.REPLYX_WIDGET_VISITOR_KEY } : {}),
  };
}

/** A response whose body must be JSON, whatever its status (a 503 still names what is down). */
function jsonBody(res: { status: number; body: string }): Probe<{ status: number; body: unknown }> {
  try {
    return { ok: true, value: { status: res.status, body: JSON.parse(res.body) as unknown } };
  } catch {
    return { ok: false, error: `HTTP ${res.status}, not JSON: ${res.body.slice(0, 80)}` };
  }
}

/** Collects every live observation for the check. */
export async function collectLiveState(ctx: StackContext, creds: ProbeCredentials, run: CommandRunner, probeDialog = DEFAULT_PROBE_DIALOG): Promise<LiveState> {
  const debugHeaders: Record<string, string> = creds.debugToken ? { 'X-Debug-Token': creds.debugToken } : {};
  // Independent probes run together; the token travels in the subprotocol, never in the URL: nginx logs URLs.
  const [ws, gatewayStatus, health, debugThroughNginx, observed] = await Promise.all([
    creds.adminToken
      ? wsFirstFrame(`${ctx.endpoints.ws}/ws/dialogs/${probeDialog}`, {}, PROBE_TIMEOUT_MS, tokenProtocols(creds.adminToken))
      : Promise.resolve<Probe<unknown>>({ ok: false, error: 'no admin token: set REPLYX_ADMIN_TOKEN (an operator JWT) to probe /ws/' }),
    httpJson(`${ctx.endpoints.gateway}/api/debug/websocket/status`, debugHeaders),
    httpGet(`${ctx.endpoints.backend}/health`),
    httpGet(`${ctx.endpoints.nginx}/api/debug/websocket/status`),
    ctx.surface.observe(run),
  ]);
  return { wsFirstFrame: ws, gatewayStatus, backendHealth: health.ok ? jsonBody(health.value) : health, debugThroughNginx, ...observed };
}
