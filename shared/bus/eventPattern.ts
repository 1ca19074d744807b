/**
 * EventBridge event-pattern matching, so the in-process router selects exactly the events an
 * EventBridge rule with the same pattern would
 * (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html,
 * https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html).
 *
 * Fields in a pattern are AND, the values in a field's array are OR, `$or` lists alternative
 * patterns. Where the event holds an array, the field matches if any element does; a nested
 * pattern must match within one element of an array of objects (EventBridge's array-consistent
 * matching).
 *
 * Known differences from EventBridge:
 * - `cidr` is not supported: `validatePattern` rejects it (no streamheal event carries addresses).
 * - Numbers compare by value: JSON.parse has already made 300 and 3.0e2 the same number, which
 *   EventBridge's exact matching would tell apart; EventBridge's numeric range limit is not enforced.
 *
 * `matchesPattern` expects a pattern that passed `validatePattern`; validate once, match often.
 */
import { StreamhealError } from '../errors.js';
import type { EventPattern } from './EventBus.js';

export class InvalidPatternError extends StreamhealError {
  constructor(path: string, problem: string) {
    super('invalid_event_pattern', `invalid event pattern at ${path}: ${problem}`);
  }
}

type Leaf = string | number | boolean | null;
type ValueMatcher = (argument: unknown, value: Leaf) => boolean;

export function matchesPattern(pattern: EventPattern, event: unknown): boolean {
  return matchesObject(pattern, isRecord(event) ? event : {});
}

function matchesObject(pattern: EventPattern, object: Record<string, unknown>): boolean {
  return Object.entries(pattern).every(([key, condition]) => {
    if (key === '$or') {
      return (condition as EventPattern[]).some((alternative) =>
        matchesObject(alternative, object),
      );
    }
    // Own properties only: what an event inherits is not part of its JSON.
    const value = Object.hasOwn(object, key) ? object[key] : undefined;
    if (Array.isArray(condition)) return matchesAnyCondition(condition, leafValues(value));
    return nestedObjects(value).some((nested) => matchesObject(condition as EventPattern, nested));
  });
}

/** The scalar values a field holds: arrays are flattened, objects are not leaves. */
function leafValues(value: unknown): Leaf[] {
  if (Array.isArray(value)) return value.flatMap(leafValues);
  return isLeaf(value) ? [value] : [];
}

/** The objects a nested pattern is tried against, one array element at a time. */
function nestedObjects(value: unknown): Record<string, unknown>[] {
  const objects = Array.isArray(value)
    ? value.flat(Infinity).filter(isRecord)
    : [value].filter(isRecord);
  // A missing object has no fields, yet `exists: false` inside the nested pattern must still match.
  return objects.length > 0 ? objects : [{}];
}

function matchesAnyCondition(conditions: unknown[], values: Leaf[]): boolean {
  return conditions.some((condition) => {
    if (!isRecord(condition)) return values.includes(condition as Leaf);
    const [operator, argument] = onlyEntry(condition);
    if (operator === 'exists') return matchesExists(argument, values);
    const matcher = valueMatchers[operator];
    return matcher !== undefined && values.some((value) => matcher(argument, value));
  });
}

/** Exists looks at presence, not at a value: a field holding only objects or `[]` has no leaf. */
function matchesExists(argument: unknown, values: Leaf[]): boolean {
  const present = values.length > 0;
  return present === argument;
}

function matchesPrefix(argument: unknown, value: Leaf): boolean {
  if (typeof value !== 'string') return false;
  const { text, ignoreCase } = textOperand(argument);
  return ignoreCase ? foldCase(value).startsWith(foldCase(text)) : value.startsWith(text);
}

function matchesSuffix(argument: unknown, value: Leaf): boolean {
  if (typeof value !== 'string') return false;
  const { text, ignoreCase } = textOperand(argument);
  return ignoreCase ? foldCase(value).endsWith(foldCase(text)) : value.endsWith(text);
}

function matchesEqualsIgnoreCase(argument: unknown, value: Leaf): boolean {
  return typeof value === 'string' && foldCase(value) === foldCase(argument as string);
}

function matchesWildcard(argument: unknown, value: Leaf): boolean {
  return typeof value === 'string' && wildcardRegExp(argument as string).test(value);
}

function matchesNumeric(argument: unknown, value: Leaf): boolean {
  if (typeof value !== 'number') return false;
  return comparisonPairs(argument as unknown[]).every(([operator, bound]) =>
    comparisons[operator](value, bound),
  );
}

/** Anything-but is the negation of an exact value, a value list, or one nested operator. */
function matchesAnythingBut(argument: unknown, value: Leaf): boolean {
  if (Array.isArray(argument)) return !argument.includes(value);
  if (!isRecord(argument)) return value !== argument;
  const [operator, operands] = onlyEntry(argument);
  const matcher = valueMatchers[operator];
  // equals-ignore-case and wildcard take one operand or a list of them here.
  return matcher !== undefined && ![operands].flat().some((operand) => matcher(operand, value));
}

const valueMatchers: Partial<Record<string, ValueMatcher>> = {
  prefix: matchesPrefix,
  suffix: matchesSuffix,
  'equals-ignore-case': matchesEqualsIgnoreCase,
  wildcard: matchesWildcard,
  numeric: matchesNumeric,
  'anything-but': matchesAnythingBut,
};

const comparisons = {
  '=': (value: number, bound: number) => value === bound,
  '<': (value: number, bound: number) => value < bound,
  '<=': (value: number, bound: number) => value <= bound,
  '>': (value: number, bound: number) => value > bound,
  '>=': (value: number, bound: number) => value >= bound,
};
type Comparison = keyof typeof comparisons;

/** `[">", 0, "<=", 5]` becomes `[[">", 0], ["<=", 5]]`. */
function comparisonPairs(terms: unknown[]): [Comparison, number][] {
  const pairs: [Comparison, number][] = [];
  for (let index = 0; index < terms.length; index += 2) {
    pairs.push([terms[index] as Comparison, terms[index + 1] as number]);
  }
  return pairs;
}

/** `"x"` or `{"equals-ignore-case": "x"}`, the two operand shapes of prefix and suffix. */
function textOperand(argument: unknown): { text: string; ignoreCase: boolean } {
  return typeof argument === 'string'
    ? { text: argument, ignoreCase: false }
    : {
        text: (argument as { 'equals-ignore-case': string })['equals-ignore-case'],
        ignoreCase: true,
      };
}

function foldCase(text: string): string {
  return text.toLowerCase();
}

/** Splits a wildcard into escapes (`\*`, `\\`, or a malformed lone `\x`), stars, and literal runs. */
const WILDCARD_TOKEN = /\\[\s\S]?|\*|[^*\\]+/g;

function wildcardRegExp(wildcard: string): RegExp {
  const source = (wildcard.match(WILDCARD_TOKEN) ?? [])
    .map((token) => (token === '*' ? '.*' : escapeRegExp(token.replace(/^\\/, ''))))
    .join('');
  return new RegExp(`^${source}$`, 's');
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function onlyEntry(object: Record<string, unknown>): [string, unknown] {
  return Object.entries(object)[0] ?? ['', undefined];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isLeaf(value: unknown): value is Leaf {
  return value === null || ['string', 'number', 'boolean'].includes(typeof value);
}

// ---------------------------------------------------------------------------------------------
// Validation: every malformed pattern is reported with the JSON path of the offending part.

export function validatePattern(pattern: unknown): asserts pattern is EventPattern {
  validateObject(pattern, '$');
}

function validateObject(pattern: unknown, path: string): void {
  if (!isRecord(pattern)) fail(path, `expected a pattern object, got ${describe(pattern)}`);
  const entries = Object.entries(pattern);
  if (entries.length === 0) fail(path, 'empty objects are not allowed');
  for (const [key, condition] of entries) {
    const at = childPath(path, key);
    if (key === '$or') validateOr(condition, at);
    else if (Array.isArray(condition)) validateConditions(condition, at);
    else if (isRecord(condition)) validateObject(condition, at);
    else fail(at, `expected an array of values or a nested pattern, got ${describe(condition)}`);
  }
}

function validateOr(alternatives: unknown, path: string): void {
  // EventBridge reads "$or" as OR only with two or more alternatives, else as a field name.
  if (!Array.isArray(alternatives) || alternatives.length < 2) {
    fail(path, 'expected an array of at least two alternative patterns');
  }
  alternatives.forEach((alternative, index) => validateObject(alternative, `${path}[${index}]`));
}

function validateConditions(conditions: unknown[], path: string): void {
  if (conditions.length === 0) fail(path, 'empty arrays are not allowed (they never match)');
  conditions.forEach((condition, index) => validateCondition(condition, `${path}[${index}]`));
}

function validateCondition(condition: unknown, path: string): void {
  if (isLeaf(condition)) return;
  if (!isRecord(condition)) {
    fail(path, `expected a value or an operator, got ${describe(condition)}`);
  }
  const operators = Object.keys(condition);
  if (operators.length !== 1) {
    fail(path, `an operator object holds exactly one operator, got ${describe(operators)}`);
  }
  const [operator, argument] = onlyEntry(condition);
  const validate = operatorValidators[operator];
  if (validate === undefined) fail(path, `unknown operator ${describe(operator)}`);
  validate(argument, childPath(path, operator));
}

const operatorValidators: Partial<Record<string, (argument: unknown, path: string) => void>> = {
  prefix: validateTextOperand,
  suffix: validateTextOperand,
  'equals-ignore-case': validateString,
  wildcard: validateWildcard,
  numeric: validateNumeric,
  exists: (argument, path) => {
    if (typeof argument !== 'boolean') {
      fail(path, `expected true or false, got ${describe(argument)}`);
    }
  },
  'anything-but': validateAnythingBut,
  cidr: (_argument, path) => fail(path, 'cidr matching is not supported by this matcher'),
};

function validateString(argument: unknown, path: string): void {
  if (typeof argument !== 'string') fail(path, `expected a string, got ${describe(argument)}`);
}

function validateTextOperand(argument: unknown, path: string): void {
  if (typeof argument === 'string') return;
  const ignoringCase =
    isRecord(argument) &&
    Object.keys(argument).length === 1 &&
    typeof argument['equals-ignore-case'] === 'string';
  if (!ignoringCase) {
    fail(path, `expected a string or {"equals-ignore-case": string}, got ${describe(argument)}`);
  }
}

function validateWildcard(argument: unknown, path: string): void {
  validateString(argument, path);
  const tokens = (argument as string).match(WILDCARD_TOKEN) ?? [];
  tokens.forEach((token, index) => {
    if (token.startsWith('\\') && token !== '\\*' && token !== '\\\\') {
      fail(path, `only "*" and "\\" may follow a backslash, got ${describe(token)}`);
    }
    if (token === '*' && tokens[index - 1] === '*') {
      fail(path, 'consecutive wildcard characters are not allowed');
    }
  });
}

function validateNumeric(argument: unknown, path: string): void {
  const shape = 'expected [operator, number] or [">"|">=", number, "<"|"<=", number]';
  if (!Array.isArray(argument) || (argument.length !== 2 && argument.length !== 4)) {
    fail(path, `${shape}, got ${describe(argument)}`);
  }
  argument.forEach((term, index) => {
    const valid =
      index % 2 === 0
        ? typeof term === 'string' && Object.hasOwn(comparisons, term)
        : Number.isFinite(term);
    if (!valid) fail(`${path}[${index}]`, `${shape}, got ${describe(term)}`);
  });
  const [lower, upper] = comparisonPairs(argument);
  if (lower === undefined || upper === undefined) return;
  if (!['>', '>='].includes(lower[0]) || !['<', '<='].includes(upper[0])) {
    fail(path, 'a range is a lower bound (">" or ">=") followed by an upper bound ("<" or "<=")');
  }
  if (lower[1] >= upper[1]) fail(path, 'the lower bound must be below the upper bound');
}

function validateAnythingBut(argument: unknown, path: string): void {
  if (typeof argument === 'string' || typeof argument === 'number') return;
  if (Array.isArray(argument)) {
    const allStrings = argument.every((item) => typeof item === 'string');
    const allNumbers = argument.every((item) => typeof item === 'number');
    if (argument.length === 0 || !(allStrings || allNumbers)) {
      fail(
        path,
        `expected a non-empty list of only strings or only numbers, got ${describe(argument)}`,
      );
    }
    return;
  }
  const accepted =
    'a string, a number, a list, or one of prefix, suffix, equals-ignore-case, wildcard';
  if (!isRecord(argument) || Object.keys(argument).length !== 1) {
    fail(path, `expected ${accepted}, got ${describe(argument)}`);
  }
  const [operator, operands] = onlyEntry(argument);
  const at = childPath(path, operator);
  if (operator === 'prefix' || operator === 'suffix') {
    validateString(operands, at);
  } else if (operator === 'equals-ignore-case' || operator === 'wildcard') {
    // These two also take a list of operands under anything-but.
    if (Array.isArray(operands) && operands.length === 0) fail(at, 'empty arrays are not allowed');
    const validateOperand = operator === 'wildcard' ? validateWildcard : validateString;
    if (Array.isArray(operands)) {
      operands.forEach((operand, index) => validateOperand(operand, `${at}[${index}]`));
    } else {
      validateOperand(operands, at);
    }
  } else {
    fail(path, `expected ${accepted}, got ${describe(argument)}`);
  }
}

function fail(path: string, problem: string): never {
  throw new InvalidPatternError(path, problem);
}

function childPath(path: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

function describe(value: unknown): string {
  return JSON.stringify(value) ?? String(value);
}
