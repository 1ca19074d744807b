/**
 * Compacts etcd's revision history. etcd keeps every old revision of every key until told to
 * forget it; without compaction the database grows with every write until it hits its quota
 * (2 GiB by default) and refuses writes. Every `intervalMs` the compactor notes the current
 * revision, and compacts to the newest noted revision that is at least `retentionMs` old, so
 * watches that reconnect within the retention resume without a gap (older ones are rebuilt from
 * the keys themselves, see watch.ts).
 *
 * Several processes may compact the same cluster; compacting to a revision already compacted is
 * refused by etcd and ignored here. Turn it off (retention 0) when etcd runs with
 * `--auto-compaction-retention`.
 */
import type { EtcdConnection } from './connection.js';

export class Compactor {
  private readonly samples: Array<{ time: number; revision: number }> = [];
  private readonly timer: NodeJS.Timeout;
  private compacted = 0;
  private running = false;

  constructor(
    private readonly connection: EtcdConnection,
    private readonly probeKey: string,
    private readonly retentionMs: number,
    private readonly onError: (error: unknown, what: string) => void,
  ) {
    const intervalMs = Math.min(60_000, Math.max(250, retentionMs / 5));
    this.timer = setInterval(() => void this.tick(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One round: note the revision, compact to the newest one older than the retention. */
  async tick(): Promise<number | undefined> {
    if (this.running || this.connection.isClosed) return undefined;
    this.running = true;
    try {
      const current = await this.connection.currentRevision(this.probeKey);
      const now = Date.now();
      this.samples.push({ time: now, revision: current });
      let target: number | undefined;
      while (this.samples.length > 0 && this.samples[0]!.time <= now - this.retentionMs) {
        target = this.samples.shift()!.revision;
      }
      if (target === undefined || target <= this.compacted) return undefined;
      const revision = target;
      await this.connection.call('compaction', async ({ options }) => {
        try {
          await this.connection.client.kv.compact({ revision }, options);
        } catch (error) {
          // Someone compacted as far or further already.
          if (!/compacted/.test(String(error))) throw error;
        }
      });
      this.compacted = revision;
      return revision;
    } catch (error) {
      this.onError(error, 'compaction');
      return undefined;
    } finally {
      this.running = false;
    }
  }
}
