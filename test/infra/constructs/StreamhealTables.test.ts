import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, Stack, type CfnElement } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  STORE_TABLE_ACTIONS,
  StreamhealTables,
  TABLE_ENV,
  TableRoles,
} from '../../../infra/constructs/StreamhealTables.js';
import { dynamoOptionsFromEnv } from '../../../shared/store/DynamoStore.js';
import {
  TTL_ATTRIBUTE,
  tableDefinitions,
  tableNames,
} from '../../../shared/store/dynamo/schema.js';
import { REPO_ROOT } from '../../../infra/paths.js';

function build(props: ConstructorParameters<typeof StreamhealTables>[2] = {}) {
  const stack = new Stack(new App(), 'Tables');
  const tables = new StreamhealTables(stack, 'Tables', props);
  const role = new iam.Role(stack, 'User', { assumedBy: new iam.AccountRootPrincipal() });
  tables.grantReadWrite(role);
  return { stack, tables, role, template: Template.fromStack(stack) };
}

describe('StreamhealTables', () => {
  let built: ReturnType<typeof build>;
  beforeAll(() => {
    built = build();
  });

  it('creates the four tables of the adapter, with its keys, attribute types and lease index', () => {
    const tables = built.template.findResources('AWS::DynamoDB::Table');
    expect(Object.keys(tables)).toHaveLength(4);
    const definitions = tableDefinitions(tableNames(''));
    for (const [index, role] of TableRoles.entries()) {
      const definition = definitions[index]!;
      const logicalId = built.stack.getLogicalId(
        built.tables.tables[role].node.defaultChild as CfnElement,
      );
      const properties = built.template.toJSON().Resources[logicalId].Properties;
      expect(properties.KeySchema, role).toEqual(definition.KeySchema);
      expect(
        [...properties.AttributeDefinitions].sort(
          (a: { AttributeName: string }, b: { AttributeName: string }) =>
            a.AttributeName.localeCompare(b.AttributeName),
        ),
        role,
      ).toEqual(
        [...(definition.AttributeDefinitions ?? [])].sort((a, b) =>
          (a.AttributeName ?? '').localeCompare(b.AttributeName ?? ''),
        ),
      );
      const indexes = (properties.GlobalSecondaryIndexes ?? []).map(
        (gsi: { IndexName: string; KeySchema: unknown; Projection: unknown }) => ({
          IndexName: gsi.IndexName,
          KeySchema: gsi.KeySchema,
          Projection: gsi.Projection,
        }),
      );
      expect(indexes, role).toEqual(definition.GlobalSecondaryIndexes ?? []);
    }
  });

  it('makes every table on-demand, with TTL on the adapter attribute, PITR, KMS encryption, deletion protection', () => {
    built.template.allResourcesProperties('AWS::DynamoDB::Table', {
      BillingMode: 'PAY_PER_REQUEST',
      TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      // SSEEnabled true without a key: the account's AWS managed key (aws/dynamodb).
      SSESpecification: { SSEEnabled: true, KMSMasterKeyId: Match.absent() },
      DeletionProtectionEnabled: true,
    });
    built.template.allResources('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
  });

  it('takes deletion protection, PITR and encryption as props', () => {
    const { template } = build({
      deletionProtection: false,
      pointInTimeRecovery: false,
      encryption: 'aws-owned',
    });
    template.allResourcesProperties('AWS::DynamoDB::Table', {
      DeletionProtectionEnabled: false,
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: false },
      SSESpecification: { SSEEnabled: false },
    });
  });

  it('names the tables from a prefix exactly as the adapter does', () => {
    const { template } = build({ tableNamePrefix: 'prod-' });
    for (const name of Object.values(tableNames('prod-'))) {
      template.hasResourceProperties('AWS::DynamoDB::Table', { TableName: name });
    }
  });

  it('hands out the variables DynamoStore reads its table names from', () => {
    const env = built.stack.resolve(built.tables.environment) as Record<string, unknown>;
    expect(Object.keys(env).sort()).toEqual(Object.values(TABLE_ENV).sort());
    // The adapter's own parser picks every one of them up.
    const names = Object.fromEntries(TableRoles.map((role) => [TABLE_ENV[role], `t-${role}`]));
    expect(dynamoOptionsFromEnv(names).tables).toEqual(
      Object.fromEntries(TableRoles.map((role) => [role, `t-${role}`])),
    );
  });

  it('grants the store exactly the item actions its source sends, on the tables and the lease index', () => {
    const source = readdirSync(join(REPO_ROOT, 'shared/store/dynamo'))
      .map((file) => readFileSync(join(REPO_ROOT, 'shared/store/dynamo', file), 'utf8'))
      .join('\n');
    const sent = new Set(
      [...source.matchAll(/new (\w+)Command\(/g)].map((match) => `dynamodb:${match[1]}`),
    );
    // createTables() is for tests and first runs; deployed tables come from the stack.
    for (const management of ['CreateTable', 'DescribeTable', 'UpdateTimeToLive']) {
      sent.delete(`dynamodb:${management}`);
    }
    expect([...STORE_TABLE_ACTIONS].sort()).toEqual([...sent].sort());
    const policy = Object.values(built.template.findResources('AWS::IAM::Policy'))[0] as {
      Properties: {
        PolicyDocument: { Statement: Array<{ Action: string[]; Resource: unknown[] }> };
      };
    };
    const [statement] = policy.Properties.PolicyDocument.Statement;
    expect(statement!.Action.sort()).toEqual([...STORE_TABLE_ACTIONS].sort());
    expect(statement!.Action.some((action) => action.includes('*'))).toBe(false);
    const resources = JSON.stringify(statement!.Resource);
    expect(resources).toContain('/index/byLease');
    expect(resources).not.toContain('*');
    expect(statement!.Resource).toHaveLength(5);
  });
});
