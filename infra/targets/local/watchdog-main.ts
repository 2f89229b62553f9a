// The local stack's watchdog process: `node --import tsx watchdog-main.ts STATE_DIR`, started
// detached by `npm start` (and test stacks), stopped by `npm stop`. See watchdog.ts.
import { watchWithPolicy } from './watchdog.js';

const stateDir = process.argv[2];
if (!stateDir) {
  process.stderr.write('usage: watchdog-main.ts STATE_DIR\n');
  process.exit(2);
}
const stop = new AbortController();
process.on('SIGTERM', () => stop.abort());
process.on('SIGINT', () => stop.abort());
await watchWithPolicy(stateDir, undefined, stop.signal);
process.exit(0);
