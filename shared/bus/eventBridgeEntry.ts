/**
 * Our event envelope to and from EventBridge's: a BusEvent becomes a PutEvents request entry,
 * and an event as EventBridge delivers it to a target (a Lambda, say) becomes a BusEvent again.
 * Pure functions, no SDK at run time, so the Lambda adapters and the EventBridge bus share them.
 *
 * EventBridge assigns every accepted entry its own `id`, and a retried PutEvents call (one whose
 * answer was lost) yields a second copy with a second id. Our id therefore travels inside the
 * detail, under EVENT_ID_FIELD, and `fromEventBridgeEvent` restores it as the event's `id`, so
 * consumers stay idempotent on the id the publisher chose.
 */
import type { BusEvent } from './EventBus.js';
import { InvalidEventError } from './events.js';

/** The detail field that carries our event id through EventBridge. */
export const EVENT_ID_FIELD = 'streamhealEventId';

/** PutEvents takes at most this many entries per call. */
export const MAX_ENTRIES_PER_CALL = 10;

/**
 * The total entry size one PutEvents call may carry, as the user guide states it (256 KB,
 * https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html). AWS raised
 * the limit to 1 MB in 2026; this stays the default because it holds everywhere, LocalStack
 * included. EventBridgeBus takes a larger limit as an option.
 */
export const MAX_REQUEST_BYTES = 256 * 1024;

/** The fields of a PutEvents request entry we send (the SDK's PutEventsRequestEntry). */
export interface PutEventsEntry {
  Source: string;
  DetailType: string;
  /** The detail as a JSON object, with our id under EVENT_ID_FIELD. */
  Detail: string;
  Resources?: string[];
  Time: Date;
  EventBusName: string;
}

/** An event as EventBridge delivers it to rule targets. */
export interface EventBridgeEvent {
  version?: string;
  id: string;
  'detail-type': string;
  source: string;
  account?: string;
  time: string;
  region?: string;
  resources?: string[];
  detail: Record<string, unknown>;
}

/** Builds the PutEvents entry for a valid event; the entry is a snapshot, not a view. */
export function toPutEventsEntry(
  event: BusEvent,
  eventBusName: string,
  label = 'event',
): PutEventsEntry {
  if (Object.hasOwn(event.detail, EVENT_ID_FIELD)) {
    throw new InvalidEventError(
      `${label}: "detail.${EVENT_ID_FIELD}" is reserved, it carries the event id through EventBridge`,
    );
  }
  let detail: string;
  try {
    detail = JSON.stringify({ ...event.detail, [EVENT_ID_FIELD]: event.id });
  } catch (error) {
    throw new InvalidEventError(`${label}: "detail" must be JSON-serializable (${String(error)})`);
  }
  return {
    Source: event.source,
    DetailType: event['detail-type'],
    Detail: detail,
    ...(event.resources === undefined ? {} : { Resources: [...event.resources] }),
    Time: new Date(event.time),
    EventBusName: eventBusName,
  };
}

/**
 * The entry's size as EventBridge counts it against the request limit: 14 bytes for Time when
 * present, plus the UTF-8 bytes of Source, DetailType, Detail and each resource. EventBusName
 * does not count.
 */
export function entrySize(entry: {
  Source: string;
  DetailType: string;
  Detail?: string;
  Resources?: string[];
  Time?: unknown;
}): number {
  let size = entry.Time === undefined ? 0 : 14;
  size += Buffer.byteLength(entry.Source, 'utf8');
  size += Buffer.byteLength(entry.DetailType, 'utf8');
  if (entry.Detail !== undefined) size += Buffer.byteLength(entry.Detail, 'utf8');
  for (const resource of entry.Resources ?? []) size += Buffer.byteLength(resource, 'utf8');
  return size;
}

/**
 * The BusEvent an EventBridge-delivered event stands for: our id when the detail carries one
 * (it is removed from the detail), else EventBridge's (events from AWS services). EventBridge
 * keeps whole seconds of `time`, and always delivers `resources`; an empty list comes back as
 * no `resources` at all.
 */
export function fromEventBridgeEvent(event: EventBridgeEvent): BusEvent {
  const { [EVENT_ID_FIELD]: ourId, ...detail } = event.detail;
  const resources = event.resources ?? [];
  return {
    id: typeof ourId === 'string' && ourId !== '' ? ourId : event.id,
    source: event.source,
    'detail-type': event['detail-type'],
    time: event.time,
    detail: typeof ourId === 'string' ? detail : event.detail,
    ...(resources.length > 0 ? { resources: [...resources] } : {}),
  };
}
