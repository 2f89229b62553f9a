import { z } from 'zod';

// Field types for configuration read from the environment, shared by the gateway's config and
// the token settings the backend reads too (auth/token-settings.ts). Each message says what a
// valid value looks like; the config loaders add the variable name and the fix.

/** A whole number in [min, max] given as decimal text; `def` when unset. */
export const envInt = (min: number, max: number, def: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, `must be a whole number between ${min} and ${max}`)
    .transform(Number)
    .pipe(z.int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`))
    .optional()
    .transform((v) => v ?? def);

/** A yes/no switch (1/0, true/false, yes/no); `def` when unset. */
export const envBool = (def: boolean) =>
  z
    .enum(['1', '0', 'true', 'false', 'yes', 'no'], 'must be one of 1, 0, true, false, yes, no')
    .optional()
    .transform((v) => (v === undefined ? def : v === '1' || v === 'true' || v === 'yes'));

/** A secret of at least `min` characters (the value is never echoed in errors). */
export const envSecret = (min: number) => z.string().min(min, `must be at least ${min} characters`);

/** A non-empty text value without surrounding spaces; `def` when unset. */
export const envText = (def: string, max = 200) =>
  z
    .string()
    .trim()
    .min(1, 'must not be empty')
    .max(max, `must be at most ${max} characters`)
    .optional()
    .transform((v) => v ?? def);
