// The Docker target: a pure plan of the stack (plan.ts), the Pulumi component that creates it
// (stack.ts) and the nginx config file resource that applies routing changes by reload.
export * from './plan.js';
export * from './stack.js';
export * from './nginx-config-file.js';
