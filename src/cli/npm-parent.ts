/** How often a node started by npm looks whether npm is still there: a stop a second late loses nothing. */
const CHECK_MS = 1000;

/** Read as the CLI loads, before a node starts: npm may go while it starts, and the watch would begin under init. */
const PARENT_AT_LAUNCH = process.ppid;

/**
 * Calls `onGone` once when the npm process that started this one (`npx sgmoe run`, `npm start`) goes. npm ends on
 * SIGTERM without passing it on (its `sh -c` child dies and this process is left to init), so a service manager's or
 * a terminal's stop would leave the node running unseen, still holding its audit log. Outside npm (a systemd unit
 * runs `node` directly, `nohup` means to outlive its shell) it does nothing. Returns the stop of the watch.
 */
export function onNpmParentGone(onGone: () => void, env: NodeJS.ProcessEnv = process.env): () => void {
  if (env.npm_command === undefined) return () => {};
  const timer = setInterval(() => {
    if (process.ppid === PARENT_AT_LAUNCH) return;
    clearInterval(timer);
    onGone();
  }, CHECK_MS).unref();
  return () => clearInterval(timer);
}
