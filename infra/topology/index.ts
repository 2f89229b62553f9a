// The typed topology: one schema, validated once at the edge, frozen, consumed everywhere.
export * from './schema.js';
export * from './validate.js';
export {
  CONFIG_NAMESPACE,
  SECRET_KEYS,
  type SecretKey,
  topologyInputFromConfig,
  stackFilePath,
  isStackName,
  parseStackFile,
  topologyFromStackText,
  loadTopologyFromStackFile,
  topologyFromPulumiConfig,
} from './load.js';
