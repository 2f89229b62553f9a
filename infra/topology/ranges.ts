import { z } from 'zod';
import { backendSchema } from './schema.js';

// Limits that command-line flags share with the stack file, read from the schema so a flag can
// never accept what `pulumi up` would refuse (or refuse what it accepts).

/** Smallest and largest value an integer setting of the schema accepts. */
export interface IntRange {
  readonly min: number;
  readonly max: number;
}

/** The bounds of an integer schema (with or without a default). */
export function intRange(schema: z.ZodDefault<z.ZodNumber> | z.ZodNumber): IntRange {
  const inner = schema instanceof z.ZodDefault ? (schema.unwrap() as z.ZodNumber) : schema;
  const { minValue, maxValue } = inner;
  if (minValue === null || maxValue === null) throw new Error('intRange needs a schema with .min() and .max()');
  return { min: minValue, max: maxValue };
}

/** `backend.workers`: what `--backend-workers` accepts. */
export const BACKEND_WORKERS_RANGE: IntRange = intRange(backendSchema.shape.workers);
