import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  defaultPolicy,
  formatProblem,
  parsePolicyFile,
  type PolicyFileResult,
} from '../../../shared/records/index.js';
import { ROOT } from '../../support/processes.js';

function problems(result: PolicyFileResult): string[] {
  if (result.ok) throw new Error('expected problems');
  return result.problems.map((p) => formatProblem('p.yaml', p));
}

describe('policy files', () => {
  it('examples/policies/default.yaml is valid and is exactly the default policy', () => {
    // Arrange
    const text = readFileSync(join(ROOT, 'examples/policies/default.yaml'), 'utf8');

    // Act
    const result = parsePolicyFile(text);

    // Assess
    expect(result).toEqual({ ok: true, policies: [defaultPolicy()] });
  });

  it('places every content problem by line, column and record path', () => {
    const text = [
      'apiVersion: streamheal.io/v2', // 1
      'kind: FailoverPolicy', // 2
      'metadata:', // 3
      '  name: strict', // 4
      'spec:', // 5
      '  autoRejoin: false', // 6
      '  timeoutSeconds: 4000', // 7
      '  colour: red', // 8
      '  nodeRules:', // 9
      '    match: all', // 10
      '    rules:', // 11
      '      - name: x', // 12
      '        when: { type: consecutive, count: 0, of: { type: fact, fact: a } }', // 13
      '        then: { action: isolate }', // 14
    ].join('\n');
    expect(problems(parsePolicyFile(text))).toEqual([
      'p.yaml:7:19: spec.timeoutSeconds: must be ≤ 3600',
      'p.yaml:13:43: spec.nodeRules.rules[0].when.count: must be ≥ 1',
      'p.yaml:8:11: spec.colour: unknown field',
    ]);
    // A missing field is placed at the object that lacks it.
    expect(
      problems(
        parsePolicyFile(
          'apiVersion: streamheal.io/v2\nkind: FailoverPolicy\nmetadata:\n  uid: x\n',
        ),
      ),
    ).toEqual(['p.yaml:4:3: metadata.name: required']);
  });

  it('reads JSON and several documents, and refuses duplicates, syntax errors and empty files', () => {
    const json = JSON.stringify({
      apiVersion: 'streamheal.io/v1',
      kind: 'FailoverPolicy',
      metadata: { name: 'from-json' },
      spec: { timeoutSeconds: 60 },
    });
    const fromJson = parsePolicyFile(json);
    expect(fromJson.ok && fromJson.policies[0]?.spec).toMatchObject({
      timeoutSeconds: 60,
      maxFailoverAttempts: 3,
    });
    const two =
      'apiVersion: streamheal.io/v2\nkind: FailoverPolicy\nmetadata: {name: a}\n---\n' +
      'apiVersion: streamheal.io/v2\nkind: FailoverPolicy\nmetadata: {name: b}\n---\n';
    const both = parsePolicyFile(two);
    expect(both.ok && both.policies.map((p) => p.metadata.name)).toEqual(['a', 'b']);
    expect(problems(parsePolicyFile(two.replace('{name: b}', '{name: a}')))).toEqual([
      'p.yaml:7:18: metadata.name: "a" is already defined by document 1 of this file',
    ]);
    expect(problems(parsePolicyFile('spec:\n  a: 1\n  a: 2\n'))[0]).toMatch(
      /^p\.yaml:3:3: Map keys must be unique/,
    );
    expect(problems(parsePolicyFile('{"apiVersion": '))[0]).toMatch(/^p\.yaml:1:\d+: /);
    expect(problems(parsePolicyFile('# nothing\n'))).toEqual(['p.yaml: holds no policy']);
    expect(problems(parsePolicyFile('- 1\n- 2\n'))).toEqual([
      'p.yaml:1:1: $: must be an object, got an array',
    ]);
  });
});
