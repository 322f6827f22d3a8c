import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PackageStore } from '../../src/fleet/store';
import { BUNDLED } from '../helpers/package';
import { tmpfsTests } from '../helpers/tmpfs';

const { disk, onTmpfs } = tmpfsTests('full-disk', 2 * 1024 * 1024, 'sgmoe-store-space-'); // a 2 MiB data disk: the 7.9 MiB package does not fit

describe('the package store on a disk too small for the package', () => {
  onTmpfs('first start: a named error with the sizes, and no half copy left to fill the disk at every restart', async () => {
    const root = join((disk as { path: string }).path, 'fleet');
    for (let start = 0; start < 2; start++) {
      await expect(new PackageStore(root).adopt(BUNDLED)).rejects.toMatchObject({
        code: 'E_STORAGE_UNWRITABLE',
        message: expect.stringMatching(/^no room to install fashion-sgmoe-1\.0\.0 in the package store .*: it takes 7\.\d MiB, \d\.\d MiB is free there; the store keeps up to 3 packages \(fleet\.keep\), so give it about 2\d\.\d MiB$/),
      });
      expect(readdirSync(join(root, 'staging'))).toEqual([]);
    }
  });
});
