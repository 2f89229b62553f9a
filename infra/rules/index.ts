// Architecture rules: one table (catalog.ts) of ids, titles, reach and fixes, and the pure
// predicates over the topology, the rendered nginx config and the observed live state that
// `npm run check`, topology validation, the Pulumi program and the policy pack share.
export * from './catalog.js';
export * from './result.js';
export * from './topology-rules.js';
export * from './static-rules.js';
export * from './live-rules.js';
export * from './assert.js';
