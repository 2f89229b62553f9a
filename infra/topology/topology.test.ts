import { describe, expect, it } from 'vitest';
import { validateTopology, checkTopology, topologyChecksum, TopologyError, topologyFromStackText, topologyFromPulumiConfig } from './index.js';

describe('smoke', () => {
  it('defaults', () => {
    const { topology } = validateTopology({});
    expect(topology.backend.workers).toBe(4);
    expect(checkTopology({}).issues).toEqual([]);
    expect(topologyChecksum(topology)).toMatch(/^[0-9a-f]{16}$/);
    expect(TopologyError).toBeDefined();
    expect(topologyFromStackText).toBeDefined();
    expect(topologyFromPulumiConfig).toBeDefined();
  });
});
