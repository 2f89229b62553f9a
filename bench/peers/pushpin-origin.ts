import http from 'node:http';

// The origin behind Pushpin, speaking WebSocket-over-HTTP: Pushpin turns each client
// WebSocket into HTTP POSTs of events; on OPEN we accept and subscribe the connection to the
// dialog's channel with a GRIP control message. After that Pushpin alone delivers published
// messages; this process only sees opens, closes and the occasional ping.

const port = Number(process.env.PORT ?? 0);
const CRLF = '\r\n';

/** One WebSocket-over-HTTP event: `TYPE[ hexlen]\r\n[content\r\n]`. */
function wsEvent(type: string, content?: string): string {
  if (content === undefined) return `${type}${CRLF}`;
  return `${type} ${Buffer.byteLength(content).toString(16)}${CRLF}${content}${CRLF}`;
}

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString();
    const headers = {
      'Content-Type': 'application/websocket-events',
      // An empty message prefix: published frames reach clients byte for byte.
      'Sec-WebSocket-Extensions': 'grip; message-prefix=""',
    };
    const m = /^\/d\/(\d+)/.exec(req.url ?? '');
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    if (body.startsWith('OPEN')) {
      const control = `c:${JSON.stringify({ type: 'subscribe', channel: `d${m[1]}` })}`;
      res.writeHead(200, headers).end(wsEvent('OPEN') + wsEvent('TEXT', control));
      return;
    }
    if (body.startsWith('CLOSE')) {
      res.writeHead(200, headers).end(wsEvent('CLOSE'));
      return;
    }
    res.writeHead(200, headers).end();
  });
});

server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => console.log(`pushpin origin listening on ${port}`));
process.on('SIGTERM', () => process.exit(0));
