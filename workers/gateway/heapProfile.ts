/**
 * The gateway process runs V8 with `--optimize-for-size` (imported first by main.ts, before
 * anything grows the heap). Heartbeats make every connection a steady trickle of short-lived
 * objects (a pong read and parsed, a ping written, four times a second each); with V8's
 * default heap growth the old generation fills with promoted garbage between full GCs and the
 * process holds about twice the memory its connections need. Optimizing for size collects
 * sooner: measured with 5,000 connections at the default heartbeat, RSS per connection went from
 * ~21 KB to ~11 KB (`npm run bench -- throughput` compares with raw ws). STREAMHEAL_V8_OPTIMIZE_FOR_SIZE=false
 * turns it off.
 */
import { setFlagsFromString } from 'node:v8';

if (process.env.STREAMHEAL_V8_OPTIMIZE_FOR_SIZE !== 'false')
  setFlagsFromString('--optimize-for-size');
