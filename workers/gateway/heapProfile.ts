/**
 * V8 flags for the gateway process, set before anything grows the heap (main.ts imports this
 * module first). Default: `--no-allocation-site-pretenuring`.
 *
 * Heartbeats make every connection a steady stream of short-lived objects (a pong read and
 * parsed, a ping written, four times a second each). V8 sees the same allocation sites
 * allocate again and again and starts pretenuring them, placing their objects straight in the
 * old generation, where they die and wait for the next full GC: the old generation then holds
 * about as much garbage as live data. Measured in one process with 5,000 connections at the
 * default heartbeat: RSS per connection 20.5 KB with V8's defaults, 14–16 KB without
 * pretenuring (CPU the same, 0.32–0.37 cores), 11.6 KB with `--optimize-for-size` (but 0.52
 * cores, and 0.75x raw ws in `npm run bench -- throughput`). STREAMHEAL_V8_FLAGS replaces the
 * default; set it empty for V8's own behaviour.
 */
import { setFlagsFromString } from 'node:v8';

const flags = process.env.STREAMHEAL_V8_FLAGS ?? '--no-allocation-site-pretenuring';
if (flags.trim()) setFlagsFromString(flags);
