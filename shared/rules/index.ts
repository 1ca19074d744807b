export * from './types.js';
export * from './schema.js';
export * from './engine.js';
export * from './defaults.js';
