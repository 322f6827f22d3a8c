/** SQLite's result code (SQLITE_FULL, SQLITE_BUSY, ...) of a better-sqlite3 error, or undefined. */
export function sqliteCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined;
}
