/**
 * A process contending for a store lock (offline-rollback.test.ts): says "ready", waits for a line on stdin, acquires
 * `argv[2]`'s lock and prints "held" or the error code, then keeps it until stdin ends.
 */
import { StoreLock } from '../../src/fleet/store-lock';

const lock = new StoreLock(process.argv[2]);
process.stdin.once('data', () => {
  lock.acquire().then(
    () => process.stdout.write('held\n'),
    (err: { code?: string }) => process.stdout.write(`${err.code}\n`),
  );
});
process.stdin.on('end', () => process.exit(0));
process.stdout.write('ready\n');
