export * from './validation.js';
export * from './meta.js';
export * from './phases.js';
export * from './failoverPolicy.js';
export * from './streamSession.js';
export * from './repository.js';
export * from './policyFile.js';
