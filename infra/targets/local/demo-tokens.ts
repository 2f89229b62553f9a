import { DEMO_ASSISTANTS, DEMO_DIALOGS, DEMO_WIDGET_ASSISTANT_ID, demoSiteTokens, signAdminToken } from '../../../examples/backend/src/demo.js';

// What `npm run stack -- tokens` prints: credentials for the reference backend's demo data and
// the seed's wscat/curl checks filled in for this stack's ports.

/** Demo credentials and ready-to-run check commands for one stack. */
export interface DemoTokens {
  /** Operator JWT for user 1 (`/ws/dialogs/{id}?token=`, `Authorization: Bearer`). */
  readonly adminToken: string;
  readonly adminTokenExpires: string;
  readonly siteTokens: readonly { name: string; dialogId: number; assistantId: number; token: string }[];
  readonly widget: { readonly assistantId: number; readonly allowedOrigin: string; readonly allowedDomains: readonly string[] };
  readonly dialogs: readonly number[];
  /** Header value for the gateway's debug endpoints (`X-Debug-Token`), when the stack sets one. */
  readonly debugToken?: string;
  /** The seed's checks as argv arrays, for localhost. */
  readonly commands: readonly { readonly title: string; readonly argv: readonly string[] }[];
}

/** Quotes one argv element for display in a POSIX shell (single quotes where needed). */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

/** Builds the demo tokens and the seed's commands for a stack whose ports are given. */
export async function demoTokens(jwtSecret: string, ports: { nginx: number; backend: number; gateway: number }, debugToken?: string, adminTtlS = 30 * 86_400): Promise<DemoTokens> {
  const adminToken = await signAdminToken(jwtSecret, 1, adminTtlS);
  const sites = await demoSiteTokens(jwtSecret);
  const widgetAssistant = DEMO_ASSISTANTS.find((a) => a.id === DEMO_WIDGET_ASSISTANT_ID)!;
  const origin = `http://localhost:${ports.nginx}`;
  const ws = `ws://localhost:${ports.nginx}`;
  const http = `http://localhost:${ports.nginx}`;
  const site1 = sites[0]!;
  const wscat = (url: string) => ['npx', '--yes', 'wscat@6', '-c', url];
  const debugHeader = debugToken ? ['-H', `X-Debug-Token: ${debugToken}`] : [];
  return {
    adminToken,
    adminTokenExpires: new Date(Date.now() + adminTtlS * 1000).toISOString(),
    siteTokens: sites,
    widget: { assistantId: widgetAssistant.id, allowedOrigin: origin, allowedDomains: widgetAssistant.allowedDomains },
    dialogs: DEMO_DIALOGS.map((d) => d.id),
    debugToken,
    commands: [
      { title: 'backend health', argv: ['curl', '-s', `http://localhost:${ports.backend}/health`] },
      { title: 'ws-gateway health', argv: ['curl', '-s', `http://localhost:${ports.gateway}/health`] },
      { title: 'gateway connections', argv: ['curl', '-s', ...debugHeader, `http://localhost:${ports.gateway}/api/debug/websocket/status`] },
      { title: 'who is on dialog 123', argv: ['curl', '-s', ...debugHeader, `http://localhost:${ports.gateway}/api/debug/websocket/sync?dialog_id=123`] },
      { title: 'admin panel on dialog 123 (terminal 1)', argv: wscat(`${ws}/ws/dialogs/123?token=${adminToken}`) },
      { title: 'widget in an iframe on dialog 123 (terminal 2)', argv: wscat(`${ws}/ws/widget/dialogs/123?assistant_id=${widgetAssistant.id}&parent_origin=${origin}`) },
      ...sites.map((s) => ({ title: `${s.name} on dialog ${s.dialogId}`, argv: wscat(`${ws}/ws/site/dialogs/${s.dialogId}?site_token=${s.token}`) })),
      {
        title: 'send a message to dialog 123 (both terminals print it)',
        argv: ['curl', '-s', '-X', 'POST', `${http}/api/site/dialogs/123/messages?site_token=${site1.token}`, '-H', 'content-type: application/json', '-d', '{"text": "Test message"}'],
      },
    ],
  };
}

/** The human-readable `tokens` output. */
export function formatDemoTokens(t: DemoTokens): string {
  const lines = [
    `Admin JWT (user 1, expires ${t.adminTokenExpires}):`,
    `  ${t.adminToken}`,
    'Site tokens:',
    ...t.siteTokens.map((s) => `  ${s.name}  dialog ${s.dialogId}  assistant ${s.assistantId}  ${s.token}`),
    `Widget: assistant_id=${t.widget.assistantId}, allowed origin ${t.widget.allowedOrigin} (allowed domains: ${t.widget.allowedDomains.join(', ')})`,
    `Demo dialogs: ${t.dialogs.join(', ')}`,
    '',
    "The seed's checks against this stack:",
  ];
  for (const c of t.commands) lines.push(`  # ${c.title}`, `  ${c.argv.map(shellQuote).join(' ')}`);
  return lines.join('\n');
}
