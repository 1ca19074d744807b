/**
 * The environment a Lambda of ours sees on AWS, on this machine: DynamoDB is dynalite and
 * EventBridge is the PutEvents emulator, both on 127.0.0.1, reached by the real AWS SDK through
 * the standard variables (AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_EVENTBRIDGE), exactly as a
 * LocalStack run would point them.
 */
import { randomBytes } from 'node:crypto';
import type { BusEvent } from '../../shared/bus/EventBus.js';
import { EVENT_ID_FIELD, type EventBridgeEvent } from '../../shared/bus/eventBridgeEntry.js';
import { DynamoStore } from '../../shared/store/DynamoStore.js';
import { startDynalite, type Dynalite } from '../support/dynalite.js';
import { EventBridgeEndpoint } from '../support/eventBridgeEndpoint.js';

export interface LambdaEnv {
  dynalite: Dynalite;
  eventBridge: EventBridgeEndpoint;
  /** A store on the same tables, for the test's own reads and writes. */
  store: DynamoStore;
  restore(): Promise<void>;
}

const VARIABLES = [
  'AWS_REGION',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_ENDPOINT_URL',
  'AWS_ENDPOINT_URL_DYNAMODB',
  'AWS_ENDPOINT_URL_EVENTBRIDGE',
  'AWS_PROFILE',
  'STREAMHEAL_DYNAMODB_TABLE_PREFIX',
  'STREAMHEAL_EVENT_BUS_NAME',
  'STREAMHEAL_LOG_LEVEL',
] as const;

export async function startLambdaEnv(extra: Record<string, string> = {}): Promise<LambdaEnv> {
  const saved = Object.fromEntries(VARIABLES.map((name) => [name, process.env[name]]));
  const savedExtra = Object.fromEntries(
    Object.keys(extra).map((name) => [name, process.env[name]]),
  );
  const dynalite = await startDynalite();
  const eventBridge = await EventBridgeEndpoint.start();
  const prefix = `fn-${randomBytes(4).toString('hex')}-`;
  delete process.env.AWS_ENDPOINT_URL;
  delete process.env.AWS_PROFILE;
  Object.assign(process.env, {
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_ENDPOINT_URL_DYNAMODB: dynalite.endpoint,
    AWS_ENDPOINT_URL_EVENTBRIDGE: eventBridge.url,
    STREAMHEAL_DYNAMODB_TABLE_PREFIX: prefix,
    STREAMHEAL_EVENT_BUS_NAME: 'streamheal',
    STREAMHEAL_LOG_LEVEL: 'silent',
    ...extra,
  });
  const store = DynamoStore.fromEnv(process.env);
  await store.createTables();
  return {
    dynalite,
    eventBridge,
    store,
    async restore() {
      await store.close();
      await eventBridge.stop();
      await dynalite.stop();
      for (const [name, value] of Object.entries({ ...saved, ...savedExtra })) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    },
  };
}

/**
 * Our event as EventBridge delivers it to a rule's Lambda target: its own id, whole seconds, our
 * id inside the detail. `ebId` differs between copies of one put.
 */
export function asDelivered(event: BusEvent, ebId = crypto.randomUUID()): EventBridgeEvent {
  return {
    version: '0',
    id: ebId,
    'detail-type': event['detail-type'],
    source: event.source,
    account: '111122223333',
    time: event.time.replace(/\.\d{3}Z$/, 'Z'),
    region: 'us-east-1',
    resources: event.resources ?? [],
    detail: { ...event.detail, [EVENT_ID_FIELD]: event.id },
  };
}
