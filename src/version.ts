import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The SDK's own version, from its package.json (one folder up from both src/ and dist/): a fleet sees what each device runs. */
export const SDK_VERSION: string = (JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;
