import { parseAllDocuments } from 'yaml';
import { InputError } from '../domain/errors.js';
import type { CreateAgentBody } from './api-types.js';

/**
 * Reads agent manifests from YAML or JSON text (JSON is valid YAML 1.2, so one parser
 * serves both). Accepted shapes, in any number of `---` documents:
 * - a plain create body: `{name, image, ...}`
 * - a kubectl-style object: `{kind: Agent, metadata: {name, labels}, spec: {image, ...}}`
 * - a list: a YAML/JSON array, or `{items: [...]}` / `kind: List`, of either of the above.
 * Only the shape is checked here; the server validates fields and says what is wrong.
 */
export function parseAgentManifests(text: string, source: string): CreateAgentBody[] {
  const docs = parseAllDocuments(text);
  const out: CreateAgentBody[] = [];
  // parseAllDocuments returns an EmptyStream (not an array) for empty input
  const list = Array.isArray(docs) ? docs : [];
  list.forEach((doc, docIndex) => {
    const where = list.length > 1 ? `${source} (document ${docIndex + 1})` : source;
    if (doc.errors.length) throw new InputError(`${where} is not valid YAML or JSON: ${doc.errors[0]!.message}`, { source, document: docIndex + 1 }, 'INVALID_MANIFEST');
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return; // empty document, e.g. a trailing ---
    for (const [i, item] of unwrapList(value).entries()) {
      const label = Array.isArray(value) || isListObject(value) ? `${where} item ${i + 1}` : where;
      out.push(toCreateBody(item, label));
    }
  });
  if (out.length === 0) throw new InputError(`${source} holds no agents`, { source }, 'INVALID_MANIFEST');
  return out;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isListObject(value: unknown): value is { items: unknown[] } {
  return isRecord(value) && Array.isArray(value.items) && (value.kind === undefined || value.kind === 'List' || value.kind === 'AgentList');
}

function unwrapList(value: unknown): unknown[] {
  if (Array.isArray(value)) return value;
  if (isListObject(value)) return value.items;
  return [value];
}

function toCreateBody(item: unknown, where: string): CreateAgentBody {
  if (!isRecord(item)) throw new InputError(`${where}: an agent must be a mapping with at least "name" and "image"`, { source: where }, 'INVALID_MANIFEST');
  const { kind, apiVersion, metadata, spec, ...rest } = item;
  if (kind !== undefined && kind !== 'Agent') throw new InputError(`${where}: kind "${String(kind)}" is not supported by create; only Agent`, { source: where, kind }, 'INVALID_MANIFEST');
  void apiVersion; // accepted for kubectl-style files, not sent: the API is versioned by URL
  let body: Record<string, unknown>;
  if (metadata !== undefined || spec !== undefined) {
    if (metadata !== undefined && !isRecord(metadata)) throw new InputError(`${where}: "metadata" must be a mapping`, { source: where }, 'INVALID_MANIFEST');
    if (spec !== undefined && !isRecord(spec)) throw new InputError(`${where}: "spec" must be a mapping`, { source: where }, 'INVALID_MANIFEST');
    body = { ...rest, ...(spec ?? {}) };
    if (metadata?.name !== undefined) body.name = metadata.name;
    if (metadata?.labels !== undefined) body.labels = metadata.labels;
  } else {
    body = rest;
  }
  for (const field of ['name', 'image'] as const) {
    if (typeof body[field] !== 'string' || body[field] === '') {
      throw new InputError(`${where}: "${field}" is required and must be a string`, { source: where, field }, 'INVALID_MANIFEST');
    }
  }
  return body as CreateAgentBody;
}
