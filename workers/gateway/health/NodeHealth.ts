/**
 * Node-level conditions of this gateway (seed 1 and 3.2): its process over CPU or event-loop
 * thresholds for a duration. Evaluated with the shared rule engine on every process sample;
 * only transitions are reported, so the bus sees "began" and "ended", not every tick.
 */
import { HealthEvents } from '../../../shared/health/events.js';
import {
  compileRules,
  createRuleState,
  evaluate,
  observe,
  type RuleSet,
} from '../../../shared/rules/index.js';
import type { HealthReporter } from './HealthReporter.js';
import type { ProcessSample } from './ProcessMonitor.js';

export const GATEWAY_NODE_RULES: RuleSet = {
  match: 'all',
  rules: [
    {
      name: 'cpu-overload',
      description: "the seed's rule: CPU > 95 % for 30 s",
      when: { type: 'thresholdFor', fact: 'cpuUtilisation', op: '>', value: 0.95, forMs: 30_000 },
      then: { action: 'report', reason: 'CPU > 95% for 30s' },
    },
    {
      name: 'event-loop-lag',
      description: 'event-loop p99 delay > 100 ms for 5 s: every client of this node waits',
      when: { type: 'thresholdFor', fact: 'eventLoopDelayMs', op: '>', value: 100, forMs: 5_000 },
      then: { action: 'report', reason: 'event loop delay > 100ms for 5s' },
    },
  ],
};

export class NodeHealth {
  private readonly plan;
  private readonly state;
  /** Names of the rules matching now. */
  readonly active = new Set<string>();

  constructor(
    private readonly reporter: HealthReporter,
    rules: RuleSet = GATEWAY_NODE_RULES,
    private readonly now: () => number = Date.now,
  ) {
    this.plan = compileRules(rules);
    this.state = createRuleState(this.plan);
  }

  onSample(sample: ProcessSample): void {
    const facts = { cpuUtilisation: sample.cpu, eventLoopDelayMs: sample.eventLoopDelayP99Ms };
    const now = this.now();
    observe(this.plan, this.state, facts, now);
    const matching = new Set(evaluate(this.plan, this.state, facts, now).map((rule) => rule.name));
    for (const rule of this.plan.ruleSet.rules) {
      const was = this.active.has(rule.name);
      const is = matching.has(rule.name);
      if (was === is) continue;
      if (is) this.active.add(rule.name);
      else this.active.delete(rule.name);
      this.reporter.report(is ? HealthEvents.nodeOverloaded : HealthEvents.nodeRecovered, {
        rule: rule.name,
        reason: rule.then.reason ?? rule.name,
        ...facts,
      });
    }
  }
}
