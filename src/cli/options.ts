import { InvalidArgumentError } from 'commander';

/**
 * Parsers of option values: a bad value makes commander exit 1 with "option '--X <v>' argument 'abc' is invalid.
 * expected …" and the command's usage, never an internal error later.
 */
const parser =
  (expected: string, ok: (n: number) => boolean) =>
  (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !ok(n)) throw new InvalidArgumentError(`expected ${expected}`);
    return n;
  };

export const number = parser('a number', Number.isFinite);
export const probability = parser('a number from 0 to 1', (n) => n >= 0 && n <= 1);
export const positiveInt = parser('a positive integer', (n) => Number.isInteger(n) && n >= 1);
export const port = parser('a TCP port from 0 to 65535', (n) => Number.isInteger(n) && n >= 0 && n <= 65535);
export const seconds = parser('a positive number of seconds', (n) => Number.isFinite(n) && n > 0);

/** Repeatable, comma-separable list option. */
export const list = (value: string, previous: string[] = []): string[] => [...previous, ...value.split(',').filter(Boolean)];
