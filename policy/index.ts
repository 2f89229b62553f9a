// The replyx CrossGuard policy pack: `pulumi preview --policy-pack policy` (from the project root).
import { PolicyPack } from '@pulumi/policy';
import { createPolicies } from './policies.js';
import { loadStackTopology } from './stack-topology.js';

new PolicyPack('replyx-architecture', {
  description: 'replyx architecture rules: routing, WebSocket proxying, blocked internal paths, token-free logs, single gateway worker or Redis broker.',
  policies: createPolicies((stack) => loadStackTopology(stack)),
});
