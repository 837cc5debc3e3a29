import { z } from 'zod';
import { RESERVED_LABEL_PREFIX } from '../../runtime/runtime.js';

/** The one error shape every endpoint returns. */
export const ErrorResponse = z
  .object({
    error: z.object({
      code: z.string().meta({ description: 'Stable machine-readable code, e.g. AGENT_NOT_FOUND' }),
      message: z.string().meta({ description: 'What went wrong and what to fix' }),
      details: z.unknown().optional(),
      requestId: z.string().optional(),
    }),
  })
  .meta({ id: 'Error' });

export const LabelKey = z
  .string()
  .max(253)
  .regex(/^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/, 'must be a label key like "team" or "example.com/team"');
export const LabelValue = z
  .string()
  .max(63)
  .regex(/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/, 'must be at most 63 characters of letters, digits, "-", "_" or "." and start and end with a letter or digit');
export const Labels = z
  .record(LabelKey, LabelValue)
  .superRefine((labels, ctx) => {
    // The platform's own labels (agent id, tenant, egress policy) select containers and Pods:
    // a user label under that prefix could put an agent under another one's policy.
    for (const key of Object.keys(labels)) {
      if (key.startsWith(RESERVED_LABEL_PREFIX)) {
        ctx.addIssue({ code: 'custom', path: [key], message: `label keys starting with "${RESERVED_LABEL_PREFIX}" are reserved for the platform; use another key, e.g. "example.com/${key.slice(RESERVED_LABEL_PREFIX.length) || 'name'}"` });
      }
    }
  })
  .meta({ description: `Key/value labels, Kubernetes syntax; keys starting with "${RESERVED_LABEL_PREFIX}" are reserved` });

export const Id = z.string().regex(/^[a-z0-9]{8,40}$/, 'must be an id as returned by the API');

/** Matches a positive integer in a query string. */
export const QueryInt = (min: number, max: number) =>
  z
    .string()
    .regex(/^[0-9]+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));
