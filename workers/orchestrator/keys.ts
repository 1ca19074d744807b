/**
 * The orchestrator's keys in etcd, beside the store's and the bus's (docs/etcd.md, "Key layout"):
 *
 *   <prefix>orchestrator/leader       the elected orchestrator, on its lease (JSON: id, pid, url, since)
 *   <prefix>orchestrator/checkpoint   what the leaders have processed (JSON: Checkpoint)
 *
 * and the ones it reads: bus events (`<prefix>bus/`) and gateway registrations
 * (`<prefix>rec/nodes/`, records `{"w": nonce, "v": NodeRecord}`).
 */
import { KeyLayout } from '../../shared/store/etcd/keys.js';
import { NODE_PREFIX } from '../../shared/control/types.js';

export class OrchestratorKeys {
  readonly leader: string;
  readonly checkpoint: string;
  /** Bus events. */
  readonly bus: string;
  /** Gateway registrations (the store's `nodes/` records). */
  readonly nodes: string;

  constructor(prefix: string) {
    const base = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
    const layout = new KeyLayout(base);
    this.leader = `${base}orchestrator/leader`;
    this.checkpoint = `${base}orchestrator/checkpoint`;
    this.bus = layout.bus;
    this.nodes = layout.record(NODE_PREFIX);
  }

  /** The node id of a registration key. */
  nodeOf(key: string): string {
    return key.slice(this.nodes.length);
  }
}
