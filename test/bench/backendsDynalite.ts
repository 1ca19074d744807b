/**
 * dynalite (the DynamoDB API in memory) as its own process for the backends benchmark, so its
 * CPU is counted apart from the benchmark's: `node backendsDynalite.js <port>`; stops on SIGTERM.
 */
import { createRequire } from 'node:module';
import type { Server } from 'node:http';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) throw new Error('usage: backendsDynalite.js <port>');
const require = createRequire(import.meta.url);
const dynalite = require('dynalite') as (options: Record<string, number>) => Server;
const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
server.listen(port, '127.0.0.1', () => process.stdout.write(`dynalite listening on ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
