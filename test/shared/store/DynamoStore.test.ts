import { afterAll, beforeAll } from 'vitest';
import { DynamoStore } from '../../../shared/store/DynamoStore.js';
import { startDynalite, type Dynalite } from '../../support/dynalite.js';
import { stateStoreContract } from './stateStoreContract.js';

const limits = { maxCount: 5, maxAgeMs: 400 };
const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
const region = 'us-east-1';

let dynalite: Dynalite;
const tables = `contract-${process.pid}-`;

beforeAll(async () => {
  dynalite = await startDynalite();
  const store = new DynamoStore({ endpoint: dynalite.endpoint, region, credentials, tables });
  await store.createTables();
  await store.close();
});

afterAll(async () => {
  await dynalite?.stop();
});

stateStoreContract(
  'DynamoStore',
  async () => {
    const store = new DynamoStore({
      endpoint: dynalite.endpoint,
      region,
      credentials,
      tables,
      limits,
    });
    return { store, cleanup: () => store.close() };
  },
  { limits },
);
