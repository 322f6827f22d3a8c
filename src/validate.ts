import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import { SgmoeError, errorMessage, type ErrorCode } from './errors';

/** Where a value came from and the code it fails with; `prefix` goes before each field path (CLI flags: `--`). */
export interface Edge {
  code: ErrorCode;
  /** Names the value in the message: "node config /etc/sgmoe/node.yaml", "command set-threshold". */
  where: string;
  prefix?: string;
}

/** One "field: problem" line per zod issue (at most 10), so every edge words its errors the same way. */
export function describeIssues(error: z.ZodError, prefix = ''): string[] {
  return error.issues.slice(0, 10).map((i) => `${i.path.length ? prefix + i.path.join('.') : '(root)'}: ${i.message}`);
}

/**
 * Validates a value at the edge of the program, once: the typed value, or an SgmoeError with the edge's code, a
 * message naming where the value came from and every problem, and `details.problems` for machines.
 */
export function validate<S extends z.ZodType>(schema: S, value: unknown, edge: Edge): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = describeIssues(result.error, edge.prefix);
  throw new SgmoeError(edge.code, `${edge.where} is invalid: ${problems.join('; ')}`, { problems });
}

/** JSON, or YAML for a .yaml/.yml path; text that does not parse fails with the edge's code. */
export function parseText(text: string, edge: Edge, path = ''): unknown {
  const yaml = ['.yaml', '.yml'].includes(extname(path).toLowerCase());
  try {
    return yaml ? YAML.parse(text) : JSON.parse(text);
  } catch (err) {
    throw new SgmoeError(edge.code, `${edge.where} is not valid ${yaml ? 'YAML' : 'JSON'}: ${errorMessage(err)}`);
  }
}

/**
 * Reads, parses and validates a JSON or YAML file. A missing file fails with `missing` (default: the edge's code);
 * any other read error (EACCES, EIO) with E_FILE_UNREADABLE and the system's reason, never as "absent".
 */
export async function readValidated<S extends z.ZodType>(
  path: string,
  schema: S,
  edge: Edge & { missing?: ErrorCode },
): Promise<z.output<S>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new SgmoeError(edge.missing ?? edge.code, `cannot read ${edge.where}: ${errorMessage(err)}`, { path }, { cause: err });
    }
    throw new SgmoeError('E_FILE_UNREADABLE', `${edge.where} exists but cannot be read: ${errorMessage(err)}`, { path }, { cause: err });
  }
  return validate(schema, parseText(text, edge, path), edge);
}
