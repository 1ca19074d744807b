/**
 * The browser entry (`streamheal/client`) must load in a browser: its whole import graph may
 * use no Node built-in and no package (the Node entry adds `ws` separately).
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** Value imports (type-only imports vanish at compile time) of a module and everything it reaches. */
function runtimeImports(entry: string, seen = new Set<string>()): string[] {
  if (seen.has(entry)) return [];
  seen.add(entry);
  const source = readFileSync(entry, 'utf8');
  const specifiers = [
    ...source.matchAll(/^(?:import|export)\s+(?!type\b)[^;]*?from\s+'([^']+)'/gms),
  ].map((m) => m[1]!);
  return specifiers.flatMap((specifier) =>
    specifier.startsWith('.')
      ? [
          specifier,
          ...runtimeImports(join(dirname(entry), specifier.replace(/\.js$/, '.ts')), seen),
        ]
      : [specifier],
  );
}

describe('client SDK in browsers', () => {
  it('imports nothing from Node or npm from the browser entry', () => {
    const imports = runtimeImports(join(root, 'shared/client/index.ts'));
    expect(imports.length).toBeGreaterThan(0);
    expect(imports.filter((specifier) => !specifier.startsWith('.'))).toEqual([]);
  });

  it('would notice a Node import (the check itself works)', () => {
    expect(runtimeImports(join(root, 'shared/client/node.ts'))).toContain('ws');
  });
});
