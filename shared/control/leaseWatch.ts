/**
 * Turns the disappearance of a gateway's registration (`nodes/<id>`, held by the gateway's lease)
 * into a `Node Lease Expired` event on the bus, for nodeLost. Used where the store can watch
 * (embedded, RemoteStore, etcd); on DynamoDB the same event would come from a scheduled sweep.
 *
 * The last registration seen is remembered, so the event says which incarnation went (`pid`,
 * `startedAt`, `taskArn`): nodeLost then treats it and the supervisor's `Gateway Process Exited`
 * for the same process as one loss. A gateway that stops cleanly revokes its lease too; its
 * sessions were drained first, so nodeLost finds none to mark.
 */
import type { EventBus } from '../bus/EventBus.js';
import { NodeLostEvents } from '../bus/controlEvents.js';
import { makeEvent, Sources } from '../bus/events.js';
import type { StateStore, Watch } from '../store/StateStore.js';
import type { Logger } from '../telemetry/logger.js';
import { NODE_PREFIX, type RegisteredNode } from './types.js';

export interface LeaseWatch {
  close(): void;
}

export async function watchNodeLeases(
  store: StateStore,
  bus: EventBus,
  logger: Logger,
): Promise<LeaseWatch> {
  const last = new Map<string, RegisteredNode>();
  let closed = false;
  const watch: Watch = await store.watch(NODE_PREFIX, (event) => {
    if (closed) return;
    if (event.type === 'put') {
      const id = event.record.key.slice(NODE_PREFIX.length);
      last.set(id, { ...(event.record.value as RegisteredNode), id });
      return;
    }
    const node = event.key.slice(NODE_PREFIX.length);
    const seen = last.get(node);
    last.delete(node);
    const detail: Record<string, unknown> = { node };
    for (const field of ['pid', 'startedAt', 'url', 'taskArn'] as const) {
      if (seen?.[field] !== undefined) detail[field] = seen[field];
    }
    bus
      .put([makeEvent(Sources.control, NodeLostEvents.nodeLeaseExpired, detail, [node])])
      .catch((error: unknown) =>
        logger.error({ err: error, node }, `${NodeLostEvents.nodeLeaseExpired} event not sent`),
      );
  });
  // Registrations made before the watch started.
  for (const { key, value } of await store.list<RegisteredNode>(NODE_PREFIX)) {
    const id = key.slice(NODE_PREFIX.length);
    if (!last.has(id)) last.set(id, { ...value, id });
  }
  return {
    close() {
      closed = true;
      watch.close();
    },
  };
}
