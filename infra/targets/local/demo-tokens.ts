import { TOKEN_PROTOCOL_PREFIX, REPLYX_PROTOCOL } from '../../../gateway/src/auth/credentials.js';
import {
  DEMO_ASSISTANTS,
  DEMO_DIALOGS,
  DEMO_VISITOR_DIALOG_ID,
  DEMO_WIDGET_ASSISTANT_ID,
  DEFAULT_TOKEN_POLICY,
  demoSiteTokens,
  demoVisitorKey,
  demoWidgetToken,
  signAdminToken,
} from '../../../examples/backend/src/demo.js';
import type { LocalSecrets } from './plan.js';

// What `npm run stack -- tokens` prints: credentials for the reference backend's demo data and
// the seed's wscat/curl checks and the HTTP publish recipe filled in for this stack's ports. Tokens travel as the
// `replyx.token.<JWT>` subprotocol (wscat -s) and `Authorization: Bearer`, never in URLs.

/** Demo credentials and ready-to-run check commands for one stack. */
export interface DemoTokens {
  /** Operator JWT for user 1 (subprotocol `replyx.token.<JWT>`, `Authorization: Bearer`). */
  readonly adminToken: string;
  readonly adminTokenExpires: string;
  /** The demo site tokens (fixed jtis, revocable with DELETE /api/site-tokens/{jti}). */
  readonly siteTokens: readonly { name: string; dialogId: number; assistantId: number; jti: string; token: string; expiresAt: string }[];
  readonly widget: {
    readonly assistantId: number;
    readonly allowedOrigin: string;
    readonly allowedDomains: readonly string[];
    /** The dialog the demo visitor key resumes, and the key (POST /api/widget/sessions renews with it). */
    readonly dialogId: number;
    readonly visitorKey: string;
    /** A widget session token for that dialog and the allowed origin, as the API issues it. */
    readonly token: string;
    readonly tokenExpires: string;
  };
  readonly dialogs: readonly number[];
  /** `X-Publish-Key` of the gateway's `POST /internal/publish` (the HTTP publish recipe in `commands` uses it). */
  readonly publishKey: string;
  /** Header value for the gateway's debug endpoints (`X-Debug-Token`), when the stack sets one. */
  readonly debugToken?: string;
  /** The seed's checks as argv arrays, for localhost. */
  readonly commands: readonly { readonly title: string; readonly argv: readonly string[] }[];
}

/** Quotes one argv element for display in a POSIX shell (single quotes where needed). */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

/** Title of the HTTP publish recipe in `commands` (docs/gateway.md#publishing points at it). */
export const PUBLISH_RECIPE_TITLE = 'publish an event over HTTP to dialog 123 (gateway port; nginx does not route /internal/)';

/** Builds the demo tokens and the seed's commands for a stack whose ports are given. */
export async function demoTokens(secrets: LocalSecrets, ports: { nginx: number; backend: number; gateway: number }, adminTtlS = DEFAULT_TOKEN_POLICY.adminMaxTtlS): Promise<DemoTokens> {
  const adminToken = await signAdminToken(secrets.jwtSecret, 1, adminTtlS);
  const sites = await demoSiteTokens(secrets.siteTokenSecret);
  const widgetAssistant = DEMO_ASSISTANTS.find((a) => a.id === DEMO_WIDGET_ASSISTANT_ID)!;
  const origin = `http://localhost:${ports.nginx}`;
  const widget = await demoWidgetToken(secrets.widgetTokenSecret, origin);
  const visitorKey = demoVisitorKey(secrets.widgetTokenSecret);
  const ws = `ws://localhost:${ports.nginx}`;
  const http = `http://localhost:${ports.nginx}`;
  const site1 = sites[0]!;
  const wscat = (url: string, token: string) => ['npx', '--yes', 'wscat@6', '-c', url, '-s', REPLYX_PROTOCOL, '-s', `${TOKEN_PROTOCOL_PREFIX}${token}`];
  const debugHeader = secrets.debugToken ? ['-H', `X-Debug-Token: ${secrets.debugToken}`] : [];
  const json = ['-H', 'content-type: application/json'];
  return {
    adminToken,
    adminTokenExpires: new Date(Date.now() + adminTtlS * 1000).toISOString(),
    siteTokens: sites,
    widget: {
      assistantId: widgetAssistant.id,
      allowedOrigin: origin,
      allowedDomains: widgetAssistant.allowedDomains,
      dialogId: DEMO_VISITOR_DIALOG_ID,
      visitorKey,
      token: widget.token,
      tokenExpires: new Date(widget.exp * 1000).toISOString(),
    },
    dialogs: DEMO_DIALOGS.map((d) => d.id),
    publishKey: secrets.publishKey,
    debugToken: secrets.debugToken,
    commands: [
      { title: 'backend health', argv: ['curl', '-s', `http://localhost:${ports.backend}/health`] },
      { title: 'ws-gateway health', argv: ['curl', '-s', `http://localhost:${ports.gateway}/health`] },
      { title: 'gateway connections', argv: ['curl', '-s', ...debugHeader, `http://localhost:${ports.gateway}/api/debug/websocket/status`] },
      { title: 'who is on dialog 123', argv: ['curl', '-s', ...debugHeader, `http://localhost:${ports.gateway}/api/debug/websocket/sync?dialog_id=123`] },
      { title: 'admin panel on dialog 123 (terminal 1)', argv: wscat(`${ws}/ws/dialogs/123`, adminToken) },
      {
        title: `a widget session for dialog ${DEMO_VISITOR_DIALOG_ID} (a fresh widget token; the one below lasts ${DEFAULT_TOKEN_POLICY.widgetTtlS / 60} minutes)`,
        argv: ['curl', '-s', '-X', 'POST', `${http}/api/widget/sessions`, ...json, '-d', JSON.stringify({ assistant_id: widgetAssistant.id, parent_origin: origin, visitor_key: visitorKey })],
      },
      { title: 'widget in an iframe on dialog 123 (terminal 2)', argv: wscat(`${ws}/ws/widget/dialogs/${DEMO_VISITOR_DIALOG_ID}`, widget.token) },
      ...sites.map((s) => ({ title: `${s.name} on dialog ${s.dialogId}`, argv: wscat(`${ws}/ws/site/dialogs/${s.dialogId}`, s.token) })),
      {
        title: 'send a message to dialog 123 (both terminals print it)',
        argv: ['curl', '-s', '-X', 'POST', `${http}/api/site/dialogs/123/messages`, '-H', `Authorization: Bearer ${site1.token}`, ...json, '-d', '{"text": "Test message"}'],
      },
      {
        // docs/gateway.md's recipe with this stack's port and key: what a backend of your own does.
        title: PUBLISH_RECIPE_TITLE,
        argv: [
          'curl', '-s', '-X', 'POST', `http://127.0.0.1:${ports.gateway}/internal/publish`, '-H', `X-Publish-Key: ${secrets.publishKey}`, ...json,
          '-d', JSON.stringify({ dialog_id: 123, type: 'message:new', data: { text: 'hi' }, audience: ['admin', 'widget'] }),
        ],
      },
    ],
  };
}

/** The human-readable `tokens` output. */
export function formatDemoTokens(t: DemoTokens): string {
  const lines = [
    `Admin JWT (user 1, expires ${t.adminTokenExpires}):`,
    `  ${t.adminToken}`,
    'Site tokens (revoke with DELETE /api/site-tokens/{jti}):',
    ...t.siteTokens.map((s) => `  ${s.name}  dialog ${s.dialogId}  assistant ${s.assistantId}  jti ${s.jti}  expires ${s.expiresAt}  ${s.token}`),
    `Widget: assistant_id=${t.widget.assistantId}, allowed origin ${t.widget.allowedOrigin} (allowed domains: ${t.widget.allowedDomains.join(', ')})`,
    `  dialog ${t.widget.dialogId} visitor key: ${t.widget.visitorKey}`,
    `  session token (expires ${t.widget.tokenExpires}): ${t.widget.token}`,
    `Demo dialogs: ${t.dialogs.join(', ')}`,
    `Publish key (X-Publish-Key of POST /internal/publish on the gateway port): ${t.publishKey}`,
    '',
    "The seed's checks against this stack:",
  ];
  for (const c of t.commands) lines.push(`  # ${c.title}`, `  ${c.argv.map(shellQuote).join(' ')}`);
  return lines.join('\n');
}
