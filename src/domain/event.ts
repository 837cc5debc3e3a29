/** Something that happened to an object, as Kubernetes events: type, reason, message. */
export interface PlatformEvent {
  id: number;
  tenantId: string;
  /** Kind of object the event is about. */
  objectKind: 'Agent' | 'Node' | 'Tenant';
  objectId: string;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  /** Optional structured data (e.g. per-node scheduling scores). */
  data?: unknown;
  time: number;
}

export type NewPlatformEvent = Omit<PlatformEvent, 'id'>;
