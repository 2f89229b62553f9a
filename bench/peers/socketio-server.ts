import http from 'node:http';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';

// The Socket.IO peer: one node with the official Redis adapter, a room per dialog, WebSocket
// transport only. Publishers broadcast to the room from another process through Redis.

const port = Number(process.env.PORT ?? 0);
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const pub = new Redis(redisUrl);
const sub = pub.duplicate();
const server = http.createServer();
const io = new Server(server, { adapter: createAdapter(pub, sub), transports: ['websocket'], perMessageDeflate: false, serveClient: false });

io.on('connection', (socket) => {
  const dialog = Number(socket.handshake.query.dialog);
  if (!Number.isSafeInteger(dialog) || dialog < 1) {
    socket.disconnect(true);
    return;
  }
  void socket.join(`d:${dialog}`);
});

await Promise.all([pub.ping(), sub.ping()]);
server.listen(port, '127.0.0.1', () => console.log(`socket.io listening on ${port}`));
process.on('SIGTERM', () => process.exit(0));
