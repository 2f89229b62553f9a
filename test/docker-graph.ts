// The Docker target's resources for the default topology, by type. Asserted twice on purpose,
// through two load paths: in-process under mocks (infra/targets/docker/stack.test.ts) and through
// the Pulumi entrypoint with Pulumi.yaml's node arguments (infra/index.test.ts).

/** How many resources of each type `ReplyxDockerStack` registers for the default topology. */
export const DOCKER_STACK_RESOURCE_COUNTS: Readonly<Record<string, number>> = {
  'replyx:docker:Stack': 1,
  'docker:index/network:Network': 1,
  'docker:index/volume:Volume': 2,
  'docker:index/remoteImage:RemoteImage': 3,
  'docker:index/image:Image': 2,
  'docker:index/container:Container': 5,
  'pulumi-nodejs:dynamic/replyx:NginxConfigFile': 1,
};
