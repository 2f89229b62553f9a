import { startLocalStack } from '/work/main/infra/targets/local/local-stack.js';
const t0 = Date.now();
try {
  const stack = await startLocalStack({});
  console.log('up in', Date.now() - t0);
  await stack.stop();
} catch (e) { console.log('failed after', Date.now() - t0, e); }
