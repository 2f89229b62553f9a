// Architecture rules: pure predicates over the topology, the rendered nginx config and the
// observed live state, shared by `npm run check`, the Pulumi program and the policy pack.
export * from './result.js';
export * from './nginx-config.js';
export * from './static-rules.js';
export * from './live-rules.js';
export * from './assert.js';
