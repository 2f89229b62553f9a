import { describe, expect, it } from 'vitest';
import { FASTAPI_BACKEND_MODULES, PYTHON_BIN, missingPythonPackages } from '../python/interpreter.js';
import { renderServiceEnv } from '../render/service-env.js';
import { planLocalStack } from '../targets/local/plan.js';
import { checkTopology, validateTopology } from '../topology/validate.js';

// backend.kind: the FastAPI example backend runs on the local target (or wherever an image is
// given); the local target runs it with Debian's python3.

const errors = (input: Record<string, unknown>) => checkTopology(input).issues.filter((i) => i.severity === 'error');

describe('backend-kind', () => {
  it('accepts the FastAPI backend on the local target, and node anywhere', () => {
    expect(errors({ target: 'local', backend: { kind: 'fastapi' } })).toEqual([]);
    expect(errors({ target: 'docker', backend: { kind: 'node' } })).toEqual([]);
    expect(errors({ target: 'aws', backend: { kind: 'fastapi', image: 'registry.example.com/chat-backend:1' } })).toEqual([]);
  });

  it('refuses it on docker and aws without an image, naming backend.kind', () => {
    for (const target of ['docker', 'aws']) {
      expect(errors({ target, backend: { kind: 'fastapi' } })).toEqual([
        expect.objectContaining({ path: 'backend.kind', rule: 'backend-kind', message: `backend.kind "fastapi" without backend.image on the ${target} target, which builds only examples/backend` }),
      ]);
    }
  });

  it('lets the FastAPI backend serve /ws/ after a rollback, like the reference backend', () => {
    expect(errors({ target: 'local', wsRoute: 'backend', backend: { kind: 'fastapi', workers: 1 } })).toEqual([]);
  });

  it('renders the FastAPI backend to run examples/fastapi/run.py with python, with the same environment as node', () => {
    const node = renderServiceEnv(validateTopology({ target: 'local' }).topology, 'backend');
    const fastapi = renderServiceEnv(validateTopology({ target: 'local', backend: { kind: 'fastapi' } }).topology, 'backend');
    expect(fastapi).toEqual({ env: node.env, source: 'examples/fastapi/run.py', runtime: 'python' });
    expect(node).toMatchObject({ source: 'examples/backend/src/main.ts' });
    expect(node.runtime).toBeUndefined();
  });
});

describe('backend.kind: fastapi on the local target', () => {
  it('runs run.py with Debian python3, telling it which node prepares the database', () => {
    const secrets = { jwtSecret: 'j'.repeat(43), publishKey: 'p'.repeat(43), debugToken: 'd'.repeat(43), siteTokenSecret: 's'.repeat(43), widgetTokenSecret: 'w'.repeat(43) };
    const plan = planLocalStack(validateTopology({ target: 'local', backend: { kind: 'fastapi', workers: 3 } }).topology, { stateDir: '/tmp/state', repoDir: '/repo', secrets, nodePath: '/opt/node' });
    const backend = plan.services.find((s) => s.name === 'backend')!;
    expect(backend.argv).toEqual([PYTHON_BIN, 'examples/fastapi/run.py']);
    expect(backend.env).toMatchObject({ REPLYX_NODE: '/opt/node', UVICORN_WORKERS: '3', BACKEND_WORKERS: '3', PORT: '8000', HOST: '127.0.0.1' });
    expect(backend.cwd).toBe('/repo');
  });
});

describe('the FastAPI backend\'s Debian packages', () => {
  it('names the package of every module python3 cannot import, and only the backend\'s', () => {
    expect(missingPythonPackages(FASTAPI_BACKEND_MODULES, (m) => m !== 'fastapi' && m !== 'jwt')).toEqual(['python3-fastapi', 'python3-jwt']);
    expect(missingPythonPackages(FASTAPI_BACKEND_MODULES, () => false)).toEqual(['python3-redis', 'python3-fastapi', 'uvicorn', 'python3-psycopg', 'python3-jwt', 'python3-wsproto']);
    expect(missingPythonPackages(FASTAPI_BACKEND_MODULES, () => true)).toEqual([]);
  });
});
