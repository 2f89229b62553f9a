// A leaf (no imports): infra sets the gateway container's net.core.somaxconn from it, so the
// kernel does not cap the queue the gateway asks for.

/**
 * Default accept queue of the gateway's listening socket (LISTEN_BACKLOG; the kernel caps it at
 * net.core.somaxconn). A drained gateway's clients arrive within seconds; when the queue (Node's
 * default: 511) is full the kernel drops SYNs, and each dropped one costs its client a 1 s, 3 s,
 * 7 s... retransmit.
 */
export const DEFAULT_LISTEN_BACKLOG = 4096;
