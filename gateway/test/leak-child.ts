// Child process for the leak and memory tests (run with --expose-gc): starts a gateway from the
// environment, prints {"port":N}, then answers stdin commands: "measure" prints memory after a
// full GC plus hub state; "exit" closes the gateway and exits.
import readline from 'node:readline';
import v8 from 'node:v8';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log/logger.js';
import { createGateway } from '../src/server.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
const config = loadConfig();
const gateway = createGateway(config, { logger: createLogger('silent'), processMetrics: false });
const port = await gateway.listen();
process.stdout.write(`${JSON.stringify({ port })}\n`);

for await (const line of readline.createInterface({ input: process.stdin })) {
  if (line === 'measure') {
    await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < 3; i += 1) gc();
    const mem = process.memoryUsage();
    // JIT-compiled code grows as V8 optimises hot paths; it is not retained data, so it is excluded.
    const dataHeap = v8
      .getHeapSpaceStatistics()
      .filter((s) => !s.space_name.startsWith('code'))
      .reduce((sum, s) => sum + s.space_used_size, 0);
    const out = { dataHeap, heapUsed: mem.heapUsed, rss: mem.rss, hub: gateway.hub.size, dialogs: gateway.hub.dialogCount, subscribed: gateway.broker.subscribedCount };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } else if (line.startsWith('snapshot ')) {
    for (let i = 0; i < 3; i += 1) gc();
    v8.writeHeapSnapshot(line.slice(9));
    process.stdout.write('{}\n');
  } else if (line === 'exit') {
    await gateway.close();
    process.exit(0);
  }
}
