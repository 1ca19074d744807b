/**
 * The four tables of the DynamoDB store, their attribute names, and `createTables()` for tests,
 * LocalStack and first runs (production tables come from the CDK stack with the same shape;
 * docs/dynamodb.md explains the design).
 *
 *   channels   channel (S, hash)                  latest, floor, aid, created
 *   messages   channel (S, hash) + pos (N, range) t, d, tr, aid, tomb, ttl
 *   records    grp (S, hash) + key (S, range)     val, ver, wid, lease, exp, ttl
 *              GSI byLease: lease (S, hash) + key (S, range), keys only (sparse)
 *   leases     id (S, hash)                       ttlMs, exp, ttl
 *
 * All on-demand, with DynamoDB TTL on `ttl` (epoch seconds). TTL only collects garbage: every
 * read checks expiry itself, because TTL deletion lags (hours, sometimes days) and LocalStack /
 * dynalite may not delete at all.
 */
import {
  CreateTableCommand,
  DescribeTableCommand,
  UpdateTimeToLiveCommand,
  type AttributeDefinition,
  type CreateTableCommandInput,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';

export interface DynamoTableNames {
  channels: string;
  messages: string;
  records: string;
  leases: string;
}

export const DEFAULT_TABLE_PREFIX = 'streamheal-';

/** Table names from a prefix (`<prefix>channels`, ...), with any name given explicitly kept. */
export function tableNames(
  prefixOrNames: string | Partial<DynamoTableNames> = DEFAULT_TABLE_PREFIX,
): DynamoTableNames {
  const names = typeof prefixOrNames === 'string' ? {} : prefixOrNames;
  const prefix = typeof prefixOrNames === 'string' ? prefixOrNames : DEFAULT_TABLE_PREFIX;
  return {
    channels: names.channels ?? `${prefix}channels`,
    messages: names.messages ?? `${prefix}messages`,
    records: names.records ?? `${prefix}records`,
    leases: names.leases ?? `${prefix}leases`,
  };
}

/** Attribute names, short because DynamoDB bills them as part of every item's size. */
export const A = {
  channel: 'channel',
  pos: 'pos',
  latest: 'latest',
  floor: 'floor',
  created: 'created',
  appendId: 'aid',
  time: 't',
  data: 'd',
  trace: 'tr',
  tombstone: 'tomb',
  ttl: 'ttl',
  group: 'grp',
  key: 'key',
  value: 'val',
  version: 'ver',
  writeId: 'wid',
  lease: 'lease',
  expires: 'exp',
  id: 'id',
  ttlMs: 'ttlMs',
} as const;

export const LEASE_INDEX = 'byLease';
export const TTL_ATTRIBUTE = A.ttl;

function s(name: string): AttributeDefinition {
  return { AttributeName: name, AttributeType: 'S' };
}

export function tableDefinitions(names: DynamoTableNames): CreateTableCommandInput[] {
  return [
    {
      TableName: names.channels,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [s(A.channel)],
      KeySchema: [{ AttributeName: A.channel, KeyType: 'HASH' }],
    },
    {
      TableName: names.messages,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [s(A.channel), { AttributeName: A.pos, AttributeType: 'N' }],
      KeySchema: [
        { AttributeName: A.channel, KeyType: 'HASH' },
        { AttributeName: A.pos, KeyType: 'RANGE' },
      ],
    },
    {
      TableName: names.records,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [s(A.group), s(A.key), s(A.lease)],
      KeySchema: [
        { AttributeName: A.group, KeyType: 'HASH' },
        { AttributeName: A.key, KeyType: 'RANGE' },
      ],
      GlobalSecondaryIndexes: [
        {
          IndexName: LEASE_INDEX,
          KeySchema: [
            { AttributeName: A.lease, KeyType: 'HASH' },
            { AttributeName: A.key, KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'KEYS_ONLY' },
        },
      ],
    },
    {
      TableName: names.leases,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [s(A.id)],
      KeySchema: [{ AttributeName: A.id, KeyType: 'HASH' }],
    },
  ];
}

export interface CreateTablesResult {
  /** Tables this call created (the others existed already). */
  created: string[];
  /** Whether DynamoDB TTL is enabled on every table; false where the endpoint lacks the API. */
  ttl: 'enabled' | 'unsupported';
}

/**
 * Creates the tables that do not exist yet (on-demand), waits until they are ACTIVE and turns
 * TTL on. Idempotent. Endpoints without the TTL API (dynalite) are reported, not an error:
 * the store never relies on TTL deletion.
 */
export async function createTables(
  client: DynamoDBClient,
  names: DynamoTableNames,
  { timeoutMs = 60_000 }: { timeoutMs?: number } = {},
): Promise<CreateTablesResult> {
  const created: string[] = [];
  let ttl: CreateTablesResult['ttl'] = 'enabled';
  const deadline = Date.now() + timeoutMs;
  for (const definition of tableDefinitions(names)) {
    try {
      await client.send(new CreateTableCommand(definition));
      created.push(definition.TableName as string);
    } catch (error) {
      if ((error as { name?: string }).name !== 'ResourceInUseException') throw error;
    }
  }
  for (const definition of tableDefinitions(names)) {
    const table = definition.TableName as string;
    for (;;) {
      const { Table } = await client.send(new DescribeTableCommand({ TableName: table }));
      const indexesReady = (Table?.GlobalSecondaryIndexes ?? []).every(
        (index) => index.IndexStatus === undefined || index.IndexStatus === 'ACTIVE',
      );
      if (Table?.TableStatus === 'ACTIVE' && indexesReady) break;
      if (Date.now() > deadline) throw new Error(`table ${table} not ACTIVE in ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (ttl === 'unsupported') continue;
    try {
      await client.send(
        new UpdateTimeToLiveCommand({
          TableName: table,
          TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true },
        }),
      );
    } catch (error) {
      const name = (error as { name?: string; message?: string }).name;
      const message = (error as { message?: string }).message ?? '';
      // Already enabled (a second run) is fine; an endpoint without the API is reported.
      if (name === 'ValidationException' && /already enabled/i.test(message)) continue;
      if (name === 'UnknownOperationException') ttl = 'unsupported';
      else throw error;
    }
  }
  return { created, ttl };
}
