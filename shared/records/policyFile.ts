/**
 * Policy files: YAML or JSON (JSON is read as the YAML it also is), one or more documents
 * separated by `---`, each a FailoverPolicy of either schema version. Problems come with the
 * record path and, where the file has it, the line and column:
 *
 *   policy.yaml:7:19: spec.timeoutSeconds: must be ≤ 3600
 *
 * Pure: text in, records or problems out. Reading the file is the caller's business.
 */
import { LineCounter, isNode, parseAllDocuments, type Document } from 'yaml';
import { safeParseFailoverPolicy, type FailoverPolicy } from './failoverPolicy.js';
import { formatPath, type IssuePath } from './validation.js';

export interface FileProblem {
  /** 1-based, when the problem can be placed in the file. */
  line?: number;
  column?: number;
  /** Record path, when the problem is in a record's content (not its YAML syntax). */
  path?: IssuePath;
  message: string;
  /** 0-based index of the document in the file. */
  document: number;
}

export type PolicyFileResult =
  { ok: true; policies: FailoverPolicy[] } | { ok: false; problems: FileProblem[] };

/** Parses and validates every document of a policy file; all problems, or all policies as v2. */
export function parsePolicyFile(text: string): PolicyFileResult {
  const lineCounter = new LineCounter();
  const parsed = parseAllDocuments(text, { lineCounter, prettyErrors: false });
  const documents: Document[] = Array.isArray(parsed) ? parsed : [];
  const problems: FileProblem[] = [];
  const policies: FailoverPolicy[] = [];
  const names = new Map<string, number>();
  documents.forEach((doc, index) => {
    if (doc.errors.length > 0) {
      for (const error of doc.errors) {
        const at = lineCounter.linePos(error.pos[0]);
        problems.push({
          line: at.line,
          column: at.col,
          message: error.message.split('\n')[0]!,
          document: index,
        });
      }
      return;
    }
    let data: unknown;
    try {
      data = doc.toJS({ maxAliasCount: 100 }); // bounds alias expansion ("billion laughs")
    } catch (error) {
      problems.push({ message: (error as Error).message, document: index });
      return;
    }
    if (data === null || data === undefined) return; // empty, e.g. after a trailing `---`
    const result = safeParseFailoverPolicy(data);
    if (!result.ok) {
      for (const issue of result.issues) {
        problems.push({ ...locate(doc, lineCounter, issue.path), ...issue, document: index });
      }
      return;
    }
    const name = result.value.metadata.name;
    const first = names.get(name);
    if (first !== undefined) {
      problems.push({
        ...locate(doc, lineCounter, ['metadata', 'name']),
        path: ['metadata', 'name'],
        message: `"${name}" is already defined by document ${first + 1} of this file`,
        document: index,
      });
      return;
    }
    names.set(name, index);
    policies.push(result.value);
  });
  if (problems.length === 0 && policies.length === 0) {
    problems.push({ message: 'holds no policy', document: 0 });
  }
  return problems.length ? { ok: false, problems } : { ok: true, policies };
}

/** `file:line:col: path: message`, leaving out what is unknown. */
export function formatProblem(file: string, problem: FileProblem): string {
  const where =
    problem.line === undefined ? file : `${file}:${problem.line}:${problem.column ?? 1}`;
  const path = problem.path === undefined ? '' : `${formatPath(problem.path)}: `;
  return `${where}: ${path}${problem.message}`;
}

/** Line and column of the deepest node of `path` that the document has. */
function locate(
  doc: Document,
  lineCounter: LineCounter,
  path: IssuePath,
): { line?: number; column?: number } {
  for (let n = path.length; n >= 0; n--) {
    const node: unknown = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
    if (isNode(node) && node.range) {
      const at = lineCounter.linePos(node.range[0]);
      return { line: at.line, column: at.col };
    }
  }
  return {};
}
