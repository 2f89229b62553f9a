// The Python the stack's Python parts run on: Debian's interpreter with Debian's packages
// (python3-redis, python3-fastapi, uvicorn, python3-psycopg, python3-jwt, python3-pytest), never a version
// manager's python3 on PATH, which lacks them.

/** The interpreter of the Python package's tests and the FastAPI example backend. */
export const PYTHON_BIN = '/usr/bin/python3';

/** The Debian packages the Python parts import, by the module each provides. */
export const PYTHON_PACKAGES: readonly { module: string; pkg: string }[] = [
  { module: 'redis', pkg: 'python3-redis' },
  { module: 'fastapi', pkg: 'python3-fastapi' },
  { module: 'uvicorn', pkg: 'uvicorn' },
  { module: 'psycopg', pkg: 'python3-psycopg' },
  { module: 'jwt', pkg: 'python3-jwt' },
  { module: 'wsproto', pkg: 'python3-wsproto' },
  { module: 'pytest', pkg: 'python3-pytest' },
  { module: 'pytest_asyncio', pkg: 'python3-pytest-asyncio' },
];

/** The modules the FastAPI example backend imports (the rest of PYTHON_PACKAGES are for tests). */
export const FASTAPI_BACKEND_MODULES: readonly string[] = ['redis', 'fastapi', 'uvicorn', 'psycopg', 'jwt', 'wsproto'];

/** The Debian packages of `modules` that Debian's python3 cannot import (all of them without python3). */
export function missingPythonPackages(modules: readonly string[], canImport: (module: string) => boolean): string[] {
  return PYTHON_PACKAGES.filter((p) => modules.includes(p.module) && !canImport(p.module)).map((p) => p.pkg);
}
