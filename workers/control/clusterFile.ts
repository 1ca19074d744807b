/**
 * The cluster file: where `streamheal start` tells later CLI commands how to reach the local
 * cluster (control URL, gateway URLs, publish key), so `status`, `publish` and `tail` need no
 * flags. Readable by its owner only, since it holds the publish key and the cluster secret.
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export interface ClusterFile {
  version: 1;
  /** Pid of the control process. */
  pid: number;
  startedAt: string;
  /** Base URL of the control process: `/v1/status`, `/healthz`, `/v1/link`. */
  control: string;
  /** Base URL of every gateway, in order. */
  gateways: { name: string; url: string }[];
  publishKey: string;
  /** Authenticates the control link (`streamheal policy` reaches the store through it). */
  clusterSecret?: string;
}

export function clusterFilePath(env: NodeJS.ProcessEnv = process.env): string {
  return env.STREAMHEAL_CLUSTER_FILE || join(tmpdir(), 'streamheal', 'cluster.json');
}

/** Writes atomically (temp file, then rename), mode 0600 in a directory of mode 0700. */
export async function writeClusterFile(path: string, file: ClusterFile): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temp = `${path}.${process.pid}.tmp`;
  await writeFile(temp, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
  await rename(temp, path);
}

/** The file, or undefined when there is none; throws when it exists but cannot be used. */
export async function readClusterFile(path: string): Promise<ClusterFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const file = JSON.parse(text) as Partial<ClusterFile>;
  if (
    file.version !== 1 ||
    typeof file.control !== 'string' ||
    !Array.isArray(file.gateways) ||
    typeof file.publishKey !== 'string'
  ) {
    throw new Error(`${path} is not a streamheal cluster file`);
  }
  return file as ClusterFile;
}

/** Removes the file if it still belongs to the control process `pid`. */
export async function removeClusterFile(path: string, pid = process.pid): Promise<void> {
  const file = await readClusterFile(path).catch(() => undefined);
  if (file && file.pid !== pid) return;
  await rm(path, { force: true });
}
