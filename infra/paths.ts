/**
 * Where the repository is, from the CDK app's source (infra/) or its compiled form (dist/infra/):
 * the first ancestor folder with a package.json. Lambda entries, the lock file and the Docker
 * build context are all found from here, so `cdk synth` works from any working directory.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('streamheal infra: repository root not found');
    dir = parent;
  }
  return dir;
})();

export function repoPath(...parts: string[]): string {
  return join(REPO_ROOT, ...parts);
}
