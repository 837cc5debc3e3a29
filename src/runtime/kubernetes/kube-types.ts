/**
 * The wire (JSON) shapes the Kubernetes adapter reads, as the API server sends them:
 * times are RFC 3339 strings. client-node's generated V1* types describe the objects its
 * own serializer produces (Date objects, renamed fields), which is not what a plain JSON
 * request returns, so the adapter reads through these narrower types instead.
 */

export interface KubeObjectMeta {
  name: string;
  namespace?: string | undefined;
  uid?: string | undefined;
  resourceVersion?: string | undefined;
  creationTimestamp?: string | undefined;
  deletionTimestamp?: string | undefined;
  labels?: Record<string, string> | undefined;
  annotations?: Record<string, string> | undefined;
}

export interface KubeContainerState {
  waiting?: { reason?: string; message?: string } | undefined;
  running?: { startedAt?: string } | undefined;
  terminated?: { exitCode: number; signal?: number; reason?: string; message?: string; startedAt?: string; finishedAt?: string } | undefined;
}

export interface KubeContainerStatus {
  name: string;
  image?: string | undefined;
  ready?: boolean | undefined;
  restartCount?: number | undefined;
  state?: KubeContainerState | undefined;
  lastState?: KubeContainerState | undefined;
}

export interface KubePodCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string | undefined;
  message?: string | undefined;
}

export interface KubeContainer {
  name: string;
  image: string;
  command?: string[] | undefined;
  args?: string[] | undefined;
  env?: { name: string; value?: string }[] | undefined;
  resources?: { limits?: Record<string, string>; requests?: Record<string, string> } | undefined;
  [field: string]: unknown;
}

export interface KubePod {
  apiVersion?: string | undefined;
  kind?: string | undefined;
  metadata: KubeObjectMeta;
  spec: {
    containers: KubeContainer[];
    nodeName?: string | undefined;
    schedulerName?: string | undefined;
    schedulingGates?: { name: string }[] | undefined;
    activeDeadlineSeconds?: number | undefined;
    terminationGracePeriodSeconds?: number | undefined;
    restartPolicy?: string | undefined;
    runtimeClassName?: string | undefined;
    [field: string]: unknown;
  };
  status?:
    | {
        phase?: 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Unknown' | undefined;
        reason?: string | undefined;
        message?: string | undefined;
        startTime?: string | undefined;
        conditions?: KubePodCondition[] | undefined;
        containerStatuses?: KubeContainerStatus[] | undefined;
      }
    | undefined;
}

export interface KubeNode {
  metadata: KubeObjectMeta;
  spec?: { unschedulable?: boolean; taints?: { key: string; value?: string; effect: string }[] } | undefined;
  status?:
    | {
        capacity?: Record<string, string>;
        allocatable?: Record<string, string>;
        conditions?: { type: string; status: string }[];
        nodeInfo?: { operatingSystem?: string; architecture?: string; kubeletVersion?: string; containerRuntimeVersion?: string };
      }
    | undefined;
}

export interface KubeList<T> {
  apiVersion?: string | undefined;
  kind?: string | undefined;
  metadata: { resourceVersion?: string | undefined; continue?: string | undefined };
  items: T[];
}

/** metav1.Status, the body of every API error (and of a watch ERROR event). */
export interface KubeStatus {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Success' | 'Failure';
  message: string;
  reason: string;
  details?: { name?: string; kind?: string; group?: string } | undefined;
  code: number;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface KubeWatchEvent<T> {
  type: WatchEventType;
  object: T | KubeStatus;
}
