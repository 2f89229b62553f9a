import http from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';

// The floor: a bare `ws` broadcast server with no auth, no routing rules, no Redis and no
// history. Subscribers connect to /d/<dialog>; the publisher connects to /publish and sends
// `<dialog>|<frame>`. Whatever the gateway costs on top of this is the price of its features.

const port = Number(process.env.PORT ?? 0);
const dialogs = new Map<number, Set<WebSocket>>();
const server = http.createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ server, perMessageDeflate: false });

wss.on('connection', (ws, req) => {
  const url = req.url ?? '';
  if (url === '/publish') {
    ws.on('message', (data: Buffer) => {
      const text = data.toString();
      const bar = text.indexOf('|');
      const members = dialogs.get(Number(text.slice(0, bar)));
      if (!members) return;
      // Encode once, ws.send the same buffer to every member: ws's public API, nothing more.
      const frame = Buffer.from(text.slice(bar + 1));
      for (const member of members) member.send(frame, { binary: false });
    });
    return;
  }
  const m = /^\/d\/(\d+)/.exec(url);
  if (!m) {
    ws.close(4009, 'bad request');
    return;
  }
  const dialog = Number(m[1]);
  let members = dialogs.get(dialog);
  if (!members) dialogs.set(dialog, (members = new Set()));
  members.add(ws);
  ws.on('close', () => {
    members.delete(ws);
    if (members.size === 0) dialogs.delete(dialog);
  });
});

server.listen(port, '127.0.0.1', () => console.log(`ws-floor listening on ${port}`));
process.on('SIGTERM', () => process.exit(0));
