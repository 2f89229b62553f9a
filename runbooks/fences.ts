// Runbook fences: the commands an operator pastes. A fence's info string is
// `bash <kind> [<tag> ...]`: the kind says where it runs (`local` for the local stack, `docker`
// for the Docker host), tags name the Decision branch an Action or Diagnosis fence belongs to, so
// an incident drill runs exactly the fences the branch tells the on-call engineer to run.

/** One fenced block of a runbook. */
export interface Fence {
  readonly kind: string;
  readonly tags: readonly string[];
  /** The `## ` section it sits in (e.g. `Diagnosis`), `''` before the first heading. */
  readonly section: string;
  /** Its commands, continuation lines joined, comments and blank lines dropped. */
  readonly commands: readonly string[];
}

/** Which fences to take: every filter given must match. */
export interface FenceFilter {
  readonly kind?: string;
  readonly section?: string;
  /** Fences carrying this tag; untagged fences are taken too unless `only` is set. */
  readonly tag?: string;
  /** Take only fences carrying `tag`. */
  readonly only?: boolean;
}

/** Splits a fence body into commands: `\` continuations joined, blank and comment lines dropped. */
function commandsOf(body: string): string[] {
  const out: string[] = [];
  let pending = '';
  for (const raw of body.split('\n')) {
    const line = raw.trimEnd();
    if (pending === '' && (line.trim() === '' || line.trim().startsWith('#'))) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    out.push(`${pending}${line}`.trim());
    pending = '';
  }
  return out;
}

/** Every `bash <kind> [tags]` fence of a runbook, in order, with the section it sits in. */
export function runbookFences(markdown: string): Fence[] {
  const fences: Fence[] = [];
  let section = '';
  const re = /^## (.+)$|^```bash[ \t]+([^\n]+)\n([\s\S]*?)^```/gm;
  for (const m of markdown.matchAll(re)) {
    if (m[1] !== undefined) {
      section = m[1].trim();
      continue;
    }
    const [kind, ...tags] = m[2]!.trim().split(/[ \t]+/);
    fences.push({ kind: kind!, tags, section, commands: commandsOf(m[3]!) });
  }
  return fences;
}

/** The commands of the fences that match `filter`, in order. */
export function fencedCommands(markdown: string, filter: FenceFilter | string): string[] {
  const f: FenceFilter = typeof filter === 'string' ? { kind: filter } : filter;
  return runbookFences(markdown)
    .filter((fence) => (f.kind === undefined || fence.kind === f.kind) && (f.section === undefined || fence.section === f.section))
    .filter((fence) => (f.tag === undefined ? true : fence.tags.includes(f.tag) || (!f.only && fence.tags.length === 0)))
    .flatMap((fence) => fence.commands);
}
