import { afterAll, beforeAll } from 'vitest';
import { EtcdStore } from '../../../shared/store/EtcdStore.js';
import { EtcdCluster } from '../../support/etcd.js';
import { stateStoreContract } from './stateStoreContract.js';

const limits = { maxCount: 5, maxAgeMs: 1_500 };

let single: EtcdCluster;
beforeAll(async () => {
  single = await EtcdCluster.start();
});
afterAll(async () => {
  await single?.stop();
});

stateStoreContract(
  'EtcdStore',
  async () => {
    const store = await EtcdStore.connect({
      endpoints: single.endpoints,
      prefix: `c${Date.now()}/`,
      limits,
    });
    return { store, cleanup: () => store.close() };
  },
  { limits },
);
