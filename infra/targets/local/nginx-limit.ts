import { readOpenFileLimits } from '../../../gateway/src/limits/open-files.js';
import type { Topology } from '../../topology/index.js';
import { planLocalStack, type LocalStackPlan, type PlanOptions } from './plan.js';
import { nginxOpenFileLimit } from './processes.js';
import { pidMatches, processMarker, readPid } from './supervisor.js';

// worker_rlimit_nofile must fit under the hard open-file limit of the nginx master that loads the
// config, and that is the limit of the process that started it, not of whichever shell renders
// the config now: a check, apply or rollback run from a shell with another `ulimit -Hn` than
// `npm start` had would otherwise render another value and report drift nobody caused (or reload
// a config whose setrlimit fails). So a running master's limit comes from /proc/<pid>/limits, and
// only an nginx this process is about to start is rendered for this process's own limit.

/** The hard open-file limit of the plan's running nginx master (`limit` undefined: unlimited), or undefined when nginx does not run or /proc cannot tell. */
export async function runningNginxOpenFileLimit(plan: LocalStackPlan): Promise<{ readonly limit: number | undefined } | undefined> {
  const spec = plan.services.find((s) => s.name === 'nginx');
  if (!spec) return undefined;
  const pid = await readPid(spec.pidFile);
  if (pid === undefined || !pidMatches(pid, processMarker(spec))) return undefined;
  const limits = readOpenFileLimits(pid);
  return limits === undefined ? undefined : { limit: limits.hard };
}

/** Plans a local stack for the nginx its config goes to: the running master's open-file limit, else this process's (an nginx started now inherits it). */
export async function planLocalStackForNginx(topology: Topology, options: Omit<PlanOptions, 'nginxOpenFileLimit'>): Promise<LocalStackPlan> {
  const plan = planLocalStack(topology, { ...options, nginxOpenFileLimit: nginxOpenFileLimit() });
  const running = await runningNginxOpenFileLimit(plan);
  return running === undefined ? plan : withNginxOpenFileLimit(plan, running.limit);
}

/** The plan rendered for an nginx this process starts (a restart): capped at this process's hard limit, which the new master inherits. */
export function forNginxStartedHere(plan: LocalStackPlan): LocalStackPlan {
  return withNginxOpenFileLimit(plan, nginxOpenFileLimit());
}

/** `plan` with nginx's config rendered for a master whose hard open-file limit is `limit` (the only part of a plan that depends on it). */
function withNginxOpenFileLimit(plan: LocalStackPlan, limit: number | undefined): LocalStackPlan {
  return limit === plan.nginxRender.openFileLimit ? plan : { ...plan, nginxRender: { ...plan.nginxRender, openFileLimit: limit } };
}
