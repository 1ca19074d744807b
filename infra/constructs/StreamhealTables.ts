/**
 * The DynamoDB store's four tables, built from the adapter's own definitions
 * (shared/store/dynamo/schema.ts `tableDefinitions`): keys, attribute types, the sparse lease
 * index and the TTL attribute come from there, so the stack cannot drift from what DynamoStore
 * reads and writes. On-demand, TTL on `ttl`, point-in-time recovery, KMS encryption, deletion
 * protection configurable. `grantReadWrite` and `environment` hand them to the code that uses
 * them, under the variable names `dynamoOptionsFromEnv` reads.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import {
  TTL_ATTRIBUTE,
  tableDefinitions,
  tableNames,
  type DynamoTableNames,
} from '../../shared/store/dynamo/schema.js';
import { tableDefaults, type TableEncryptionName } from '../defaults.js';

export type TableRole = keyof DynamoTableNames;
export const TableRoles: readonly TableRole[] = ['channels', 'messages', 'records', 'leases'];

/** The variable each table's name is passed in (read by dynamoOptionsFromEnv). */
export const TABLE_ENV: Record<TableRole, string> = {
  channels: 'STREAMHEAL_DYNAMODB_TABLE_CHANNELS',
  messages: 'STREAMHEAL_DYNAMODB_TABLE_MESSAGES',
  records: 'STREAMHEAL_DYNAMODB_TABLE_RECORDS',
  leases: 'STREAMHEAL_DYNAMODB_TABLE_LEASES',
};

/**
 * The item actions DynamoStore sends (its `new ...Command` calls, test/infra checks the list
 * against the source), and no more: no table management (the stack creates the tables), no
 * streams. Listed one by one, never with a wildcard.
 */
export const STORE_TABLE_ACTIONS = [
  'dynamodb:GetItem',
  'dynamodb:BatchGetItem',
  'dynamodb:Query',
  'dynamodb:Scan',
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
] as const;

export interface StreamhealTablesProps {
  /**
   * Physical names `<prefix>channels`, ... . Fixed names make a replacement impossible without
   * deleting the old table first, so leave it unset unless something outside needs the names.
   * @default names chosen by CloudFormation
   */
  readonly tableNamePrefix?: string;
  /** @default tableDefaults().deletionProtection (true) */
  readonly deletionProtection?: boolean;
  /** @default tableDefaults().pointInTimeRecovery (true) */
  readonly pointInTimeRecovery?: boolean;
  /** 'aws-managed' is the account's aws/dynamodb KMS key. @default tableDefaults().encryption ('aws-managed') */
  readonly encryption?: TableEncryptionName;
  /** What happens to the tables when the stack is deleted. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
}

export class StreamhealTables extends Construct {
  readonly tables: Record<TableRole, dynamodb.Table>;
  /** Index names per table (from the schema). */
  readonly indexes: Partial<Record<TableRole, string[]>> = {};

  constructor(scope: Construct, id: string, props: StreamhealTablesProps = {}) {
    super(scope, id);
    const defaults = tableDefaults();
    const placeholder = tableNames('');
    const definitions = tableDefinitions(
      props.tableNamePrefix === undefined ? placeholder : tableNames(props.tableNamePrefix),
    );
    const encryption =
      (props.encryption ?? defaults.encryption) === 'aws-managed'
        ? dynamodb.TableEncryption.AWS_MANAGED
        : dynamodb.TableEncryption.DEFAULT;
    const tables: Partial<Record<TableRole, dynamodb.Table>> = {};
    TableRoles.forEach((role, index) => {
      const definition = definitions[index];
      if (!definition) throw new Error(`schema has no definition for the ${role} table`);
      const attributeType = (name: string) => {
        const found = definition.AttributeDefinitions?.find((a) => a.AttributeName === name);
        if (!found) throw new Error(`${role}: attribute ${name} is not defined`);
        return found.AttributeType === 'N'
          ? dynamodb.AttributeType.NUMBER
          : found.AttributeType === 'B'
            ? dynamodb.AttributeType.BINARY
            : dynamodb.AttributeType.STRING;
      };
      const key = (schema: typeof definition.KeySchema, type: 'HASH' | 'RANGE') => {
        const name = schema?.find((k) => k.KeyType === type)?.AttributeName;
        return name === undefined ? undefined : { name, type: attributeType(name) };
      };
      const partitionKey = key(definition.KeySchema, 'HASH');
      if (!partitionKey) throw new Error(`${role}: no partition key`);
      const sortKey = key(definition.KeySchema, 'RANGE');
      const table = new dynamodb.Table(this, capitalize(role), {
        ...(props.tableNamePrefix === undefined ? {} : { tableName: definition.TableName }),
        partitionKey,
        ...(sortKey ? { sortKey } : {}),
        billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
        timeToLiveAttribute: TTL_ATTRIBUTE,
        pointInTimeRecoverySpecification: {
          pointInTimeRecoveryEnabled: props.pointInTimeRecovery ?? defaults.pointInTimeRecovery,
        },
        encryption,
        deletionProtection: props.deletionProtection ?? defaults.deletionProtection,
        removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
      });
      for (const index of definition.GlobalSecondaryIndexes ?? []) {
        const indexPartition = key(index.KeySchema, 'HASH');
        if (!index.IndexName || !indexPartition) throw new Error(`${role}: malformed index`);
        const indexSort = key(index.KeySchema, 'RANGE');
        const projection = index.Projection?.ProjectionType;
        (this.indexes[role] ??= []).push(index.IndexName);
        table.addGlobalSecondaryIndex({
          indexName: index.IndexName,
          partitionKey: indexPartition,
          ...(indexSort ? { sortKey: indexSort } : {}),
          projectionType:
            projection === 'KEYS_ONLY'
              ? dynamodb.ProjectionType.KEYS_ONLY
              : projection === 'INCLUDE'
                ? dynamodb.ProjectionType.INCLUDE
                : dynamodb.ProjectionType.ALL,
          ...(projection === 'INCLUDE'
            ? { nonKeyAttributes: index.Projection?.NonKeyAttributes ?? [] }
            : {}),
        });
      }
      tables[role] = table;
    });
    this.tables = tables as Record<TableRole, dynamodb.Table>;
  }

  /** The variables DynamoStore reads its table names from. */
  get environment(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const role of TableRoles) env[TABLE_ENV[role]] = this.tables[role].tableName;
    return env;
  }

  /** Item reads and writes on every table and its indexes (by name), with the store's actions only. */
  grantReadWrite(grantee: iam.IGrantable): void {
    const resources = TableRoles.flatMap((role) => {
      const arn = this.tables[role].tableArn;
      return [arn, ...(this.indexes[role] ?? []).map((index) => `${arn}/index/${index}`)];
    });
    iam.Grant.addToPrincipal({
      grantee,
      actions: [...STORE_TABLE_ACTIONS],
      resourceArns: resources,
    });
  }
}

function capitalize(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}
