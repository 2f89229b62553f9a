// k6 scenario from the seed: widget WebSocket connections on many dialogs, messages posted
// through the backend API (site token), no AI replies. For users who have k6:
//
//   npm start && npm run stack -- tokens          # prints the demo site tokens and visitor key
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e SITE_TOKEN=<SITE1 token> -e VISITOR_KEY=<dialog 123 visitor key> scripts/load/k6_widget_no_ai.js
//
// Each widget opens a session as the embed does (POST /api/widget/sessions with the visitor key,
// which resumes dialog 123) and connects with the session token in the subprotocol
// (`replyx.v1, replyx.token.<JWT>`); messages carry the site token as `Authorization: Bearer`.
//
// Every message carries its send time; each widget measures post -> WebSocket receive latency
// (ws_event_latency) and counts deliveries, so lost events show up as a delivery ratio below 1.
//
// Environment (all optional except SITE_TOKEN and VISITOR_KEY):
//   BASE_URL        nginx in front of the stack              default http://127.0.0.1:8080
//   WS_URL          WebSocket base                           default BASE_URL with ws:// or wss://
//   SITE_TOKEN      site token whose assistant owns DIALOG_IDS (npm run stack -- tokens)
//   VISITOR_KEY     visitor key of the widgets' dialog (npm run stack -- tokens: dialog 123's)
//   DIALOG_IDS      comma-separated dialogs messages are posted to (the widgets' dialog)  default 123
//   ASSISTANT_ID    the widget's assistant_id                default 3
//   PARENT_ORIGIN   parent_origin of the widget session (must be an allowed domain)  default http://localhost
//   WIDGETS         concurrent widget connections (VUs)      default 200
//   DURATION        how long widgets stay connected          default 60s
//   MESSAGE_RATE    messages per second posted over all dialogs  default 10
//   MESSAGE_BYTES   approximate message text size            default 120
//   RAMP_S          seconds widgets get to connect before messages start  default 5
import http from 'k6/http';
import ws from 'k6/ws';
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { textSummary } from 'https://jslib.k6.io/k6-summary/0.0.2/index.js';

const env = (name, fallback) => (__ENV[name] !== undefined && __ENV[name] !== '' ? __ENV[name] : fallback);

const BASE_URL = env('BASE_URL', 'http://127.0.0.1:8080').replace(/\/$/, '');
const WS_URL = env('WS_URL', BASE_URL.replace(/^http/, 'ws'));
const SITE_TOKEN = env('SITE_TOKEN', '');
const VISITOR_KEY = env('VISITOR_KEY', '');
const DIALOG_IDS = env('DIALOG_IDS', '123')
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => Number.isInteger(n) && n > 0);
const ASSISTANT_ID = Number(env('ASSISTANT_ID', '3'));
const PARENT_ORIGIN = env('PARENT_ORIGIN', 'http://localhost');
const WIDGETS = Number(env('WIDGETS', '200'));
const DURATION = env('DURATION', '60s');
const MESSAGE_RATE = Number(env('MESSAGE_RATE', '10'));
const MESSAGE_BYTES = Number(env('MESSAGE_BYTES', '120'));
const RAMP_S = Number(env('RAMP_S', '5'));

if (!SITE_TOKEN) throw new Error('set SITE_TOKEN (npm run stack -- tokens prints the demo site tokens)');
if (!VISITOR_KEY) throw new Error('set VISITOR_KEY (npm run stack -- tokens prints dialog 123\'s visitor key)');
if (DIALOG_IDS.length === 0) throw new Error('DIALOG_IDS must list at least one dialog id');

/** Parses "60s", "2m", "1h" into milliseconds (k6 durations). */
function durationMs(text) {
  const m = /^(\d+)(ms|s|m|h)$/.exec(text);
  if (!m) throw new Error(`DURATION must look like 60s, 2m or 1h, got ${text}`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60000, h: 3600000 }[m[2]];
}

const DURATION_MS = durationMs(DURATION);
const MESSAGE_WINDOW_S = Math.max(1, Math.floor(DURATION_MS / 1000) - RAMP_S - 2);

const eventLatency = new Trend('ws_event_latency', true);
const eventsReceived = new Counter('ws_events_received');
const messagesSent = new Counter('messages_sent');
const wsConnected = new Rate('ws_connected');
const postOk = new Rate('message_post_ok');

export const options = {
  scenarios: {
    widgets: {
      executor: 'per-vu-iterations',
      exec: 'widget',
      vus: WIDGETS,
      iterations: 1,
      maxDuration: `${Math.ceil(DURATION_MS / 1000) + 30}s`,
    },
    messages: {
      executor: 'constant-arrival-rate',
      exec: 'postMessage',
      rate: MESSAGE_RATE,
      timeUnit: '1s',
      duration: `${MESSAGE_WINDOW_S}s`,
      startTime: `${RAMP_S}s`,
      preAllocatedVUs: Math.max(2, Math.ceil(MESSAGE_RATE / 5)),
      maxVUs: Math.max(10, MESSAGE_RATE * 2),
    },
  },
  thresholds: {
    ws_connected: ['rate>0.99'],
    message_post_ok: ['rate>0.99'],
    ws_event_latency: ['p(99)<1000'],
  },
};

const filler = 'hello, is the widget still there? '.repeat(Math.ceil(MESSAGE_BYTES / 34)).slice(0, MESSAGE_BYTES);

/** One widget: opens a session, connects to its dialog and measures every message event it receives. */
export function widget() {
  const session = http.post(`${BASE_URL}/api/widget/sessions`, JSON.stringify({ assistant_id: ASSISTANT_ID, parent_origin: PARENT_ORIGIN, visitor_key: VISITOR_KEY }), {
    headers: { 'Content-Type': 'application/json' },
    tags: { name: 'POST /api/widget/sessions' },
  });
  if (!check(session, { 'widget session issued (201)': (r) => r.status === 201 })) {
    wsConnected.add(false);
    return;
  }
  const { token, dialog_id: dialogId } = session.json();
  const url = `${WS_URL}/ws/widget/dialogs/${dialogId}`;
  const res = ws.connect(url, { headers: { 'Sec-WebSocket-Protocol': `replyx.v1, replyx.token.${token}` } }, (socket) => {
    socket.on('open', () => {
      wsConnected.add(true);
      // The application-level ping keeps idle proxies from closing the socket.
      socket.setInterval(() => socket.send(JSON.stringify({ type: 'ping' })), 20000);
      socket.setTimeout(() => socket.close(), DURATION_MS);
    });
    socket.on('message', (frame) => {
      const m = /k6 t=(\d+)/.exec(frame);
      if (!m) return;
      eventsReceived.add(1);
      eventLatency.add(Date.now() - Number(m[1]));
    });
    socket.on('error', () => wsConnected.add(false));
  });
  check(res, { 'websocket upgraded (101)': (r) => r && r.status === 101 });
  if (!res || res.status !== 101) wsConnected.add(false);
}

/** One message through the backend API, stamped with its send time. */
export function postMessage() {
  const dialogId = DIALOG_IDS[Math.floor(Math.random() * DIALOG_IDS.length)];
  const res = http.post(
    `${BASE_URL}/api/site/dialogs/${dialogId}/messages`,
    JSON.stringify({ text: `k6 t=${Date.now()} ${filler}` }),
    { headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${SITE_TOKEN}` }, tags: { name: 'POST /api/site/dialogs/{id}/messages' } },
  );
  const ok = check(res, { 'message stored and published (201)': (r) => r.status === 201 });
  postOk.add(ok);
  if (ok) messagesSent.add(1);
}

/** Prints the delivery ratio: every widget on a dialog should receive every message to it. */
export function handleSummary(data) {
  const sent = data.metrics.messages_sent ? data.metrics.messages_sent.values.count : 0;
  const received = data.metrics.ws_events_received ? data.metrics.ws_events_received.values.count : 0;
  const widgetsPerDialog = WIDGETS / DIALOG_IDS.length;
  const expected = sent * widgetsPerDialog;
  const ratio = expected > 0 ? received / expected : 0;
  const line = `messages sent ${sent}, events received ${received}, expected ~${Math.round(expected)}, delivery ratio ${ratio.toFixed(4)}\n`;
  return { stdout: textSummary(data, { indent: ' ', enableColors: true }) + '\n' + line };
}
